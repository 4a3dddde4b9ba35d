"""Loading for the diagnostics: the base model, one adapter at a time (any PEFT type), and texts as token ids.

Adapters are read with ``PeftModel.from_pretrained``, so PrefixMemory (registered by ``import prefixmemory``), LoRA
and classic prefix-tuning (PEFT's PREFIX_TUNING: learned keys/values handed to the model as past_key_values) load
alike, whether LLaMA-Factory or plain PEFT wrote them. Each adapter gets a freshly loaded base model, so
no adapter can leave a trace on the next one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import prefixmemory  # noqa: F401  (registers PeftType.PREFIXMEMORY, so its adapters load)

from ..labels import method_label


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter to diagnose: its label in plots and JSON, its folder, its PEFT type and prefix length."""

    name: str
    path: Path
    peft_type: str
    num_virtual_tokens: int = 0

    @property
    def kind(self) -> str:
        return method_label(self.peft_type)


def parse_adapters(values: list[str]) -> list[AdapterSpec]:
    """``[NAME=]PATH`` strings -> specs; the name defaults to the kind (PMT, LoRA, Prefix), made unique."""
    specs = []
    for value in values:
        name, path = _split_name(value)
        config_file = Path(path) / "adapter_config.json"
        if not config_file.is_file():
            raise ValueError(f"`--adapter` {path}: no adapter_config.json there (a PEFT adapter folder is expected).")
        config = json.loads(config_file.read_text())
        peft_type = str(config.get("peft_type", "")).upper()
        prefix_length = int(config.get("num_virtual_tokens") or 0) if peft_type == "PREFIX_TUNING" else 0
        spec = AdapterSpec(name, Path(path), peft_type, prefix_length)
        if not name:
            label = spec.kind + (f" (p={spec.num_virtual_tokens})" if spec.num_virtual_tokens else "")
            taken = sum(s.name == label or s.name.startswith(label + " #") for s in specs)
            spec = replace(spec, name=label if not taken else f"{label} #{taken + 1}")
        specs.append(spec)
    return specs


def _split_name(value: str) -> tuple[str, str]:
    """``NAME=PATH`` -> (NAME, PATH) at the first ``=`` followed by an existing path (names may hold ``=``: p=16)."""
    for index, char in enumerate(value):
        if char == "=" and Path(value[index + 1 :]).exists():
            return value[:index], value[index + 1 :]
    return "", value


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_base(path: str | Path, device: str = "cpu", dtype: str = "auto", eager: bool = False):
    """The base model in eval mode. ``eager``: attention weights are materialised (needed to read alpha_i)."""
    kwargs = {"attn_implementation": "eager"} if eager else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype, device), **kwargs)
    return model.to(device).eval()


def load_tuned(base_path: str | Path, adapter: AdapterSpec, device: str = "cpu", dtype: str = "auto", eager=False):
    """A fresh base model with ``adapter`` attached (PeftModel), in eval mode."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base(base_path, device, dtype, eager), str(adapter.path))
    return model.to(device).eval()


def load_tokenizer(path: str | Path):
    return AutoTokenizer.from_pretrained(path)


def encode_texts(tokenizer, texts: list[str], max_length: int, chat_template: bool = False) -> list[torch.Tensor]:
    """One (1, T) id tensor per text; a longer text keeps its last ``max_length`` tokens, where the example is (the
    task instruction comes first and is the same for every record). ``chat_template``: wrap each text as a user turn
    with the tokenizer's chat template and the generation prompt, as the tuned model saw it in training."""
    encoded = []
    for text in texts:
        if chat_template:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            ids = tokenizer(text, return_tensors="pt").input_ids
        encoded.append(ids[:, -max_length:])
    return encoded


def token_stream(tokenizer, texts: list[str], length: int, sequences: int) -> list[torch.Tensor]:
    """``sequences`` (1, length) id tensors cut from the texts joined end to end (eos between them): long inputs
    from short examples, as appendix B.1 concatenates GoEmotions comments."""
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text).input_ids + separator
    if not stream:
        raise ValueError("no tokens: the text set is empty.")
    while len(stream) < length * sequences:
        stream = stream + stream  # a short text set is repeated rather than refused
    return [torch.tensor([stream[k * length : (k + 1) * length]]) for k in range(sequences)]
