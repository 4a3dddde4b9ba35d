"""The models a benchmark run compares: the run's settings (Spec), the frozen base model, and each method's wrapper."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import peft
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from prefixmemory import PrefixMemoryConfig

from .presets import METHODS, QUANTIZED_PREFIX


@dataclass
class Spec:
    """Everything a run needs to build one method's model and batch."""

    preset: str
    model: dict | None
    model_path: str | None
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    seq_len: int
    decode_tokens: int
    seed: int = 0
    clock: str = "wall"
    cpu_heap: str | None = None  # "cached" once memory.cache_cpu_heap is in force
    quantize_from: str | None = None  # the folder the nf4-* methods load their base from (see with_saved_base)


def build_base_model(spec: Spec, quantized: bool = False):
    """A fresh frozen causal LM: the preset's geometry with random weights (seeded), or ``--model``'s checkpoint;
    ``quantized``: the same weights loaded in 4-bit as LLaMA-Factory's `quantization_bit: 4` loads them."""
    torch.manual_seed(spec.seed)
    if quantized:
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=spec.dtype,
            bnb_4bit_quant_storage=spec.dtype,
        )
        path = spec.model_path or spec.quantize_from
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=spec.dtype, quantization_config=config, device_map={"": spec.device}
        )
    elif spec.model_path:
        model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=spec.dtype).to(spec.device)
    else:
        settings = dict(spec.model)
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        with torch.device(spec.device):
            model = AutoModelForCausalLM.from_config(config, dtype=spec.dtype)
    model.generation_config.pad_token_id = model.generation_config.eos_token_id = None
    return model.requires_grad_(False)


def with_saved_base(spec: Spec, methods: list[str], folder: str) -> Spec:
    """``spec`` whose nf4-* methods load the preset's random weights from ``folder``, written here once (outside any
    measurement): bitsandbytes quantizes as a checkpoint loads."""
    if spec.model_path or not any(method.startswith(QUANTIZED_PREFIX) for method in methods):
        return spec
    build_base_model(spec).save_pretrained(folder)
    return dataclasses.replace(spec, quantize_from=folder)


def peft_config(method: str):
    """The PEFT config of a ``pmt-*``, ``lora-[qv-]r*`` or ``prefix-*[-mlp]`` method name."""
    kind, _, value = method.partition("-")
    if kind == "pmt":
        return PrefixMemoryConfig(feature_map=value)
    if kind == "lora":
        targets, _, rank = value.rpartition("-")
        rank = int(rank.removeprefix("r"))
        # "all-linear": q, k, v, o, gate, up and down of every block (not the LM head); "qv": the paper's setting.
        return peft.LoraConfig(
            r=rank,
            lora_alpha=2 * rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "v_proj"] if targets == "qv" else "all-linear",
            task_type="CAUSAL_LM",
        )
    if kind == "prefix":
        tokens, _, projection = value.partition("-")
        return peft.PrefixTuningConfig(
            num_virtual_tokens=int(tokens), prefix_projection=projection == "mlp", task_type="CAUSAL_LM"
        )
    raise ValueError(f"`--methods`: unknown method {method!r}; known: {', '.join(METHODS)}.")


def apply_method(model, method: str):
    """Wrap ``model`` for ``method``: base and floor stay transformers models, the others become PeftModels."""
    if method == "base":
        return model
    if method == "floor":
        # A zero scalar added to the embeddings' output: the loss depends on a trainable leaf below every layer,
        # so backward runs through all of them, computing input gradients only. One AdamW parameter.
        model.floor_scalar = torch.nn.Parameter(torch.zeros((), device=model.device, dtype=model.dtype))
        model.get_input_embeddings().register_forward_hook(lambda module, args, out: out + model.floor_scalar)
        return model
    return peft.get_peft_model(model, peft_config(method)).to(model.device)
