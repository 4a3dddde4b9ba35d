"""Tiny random-weight models and a locally trained tokenizer, for offline demos, tests and benchmarks.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in a second on a built-in text, and the
models are built from configs of the real architectures with small sizes. A folder is written once: building is
deterministic, so a folder whose marker (``prefixmemory_source.json``) records the same architecture and settings
is left as it is, and any other folder that holds files is refused untouched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from .marker import mark, written_before

# Every special token the qwen, qwen3, llama2, llama3 and mistral chat templates of LLaMA-Factory use, so that no
# template has to add tokens (which would need resize_vocab).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[INST]", "[/INST]", "<think>", "</think>",
]  # fmt: skip

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A memory is a small matrix added to every attention head.
Prefix tuning prepends trainable vectors; PrefixMemory moves them out of the softmax. What is 12 plus 30?
The answer is 42. Translate "good morning" into French: bonjour. Classify the sentiment: I love it -> positive.
Question: Which date is one week after 2024-03-01? Options: (A) 03/08/2024 (B) 03/07/2024. Answer: (A)
Write a short poem about the sea. The sea is wide, the sea is deep, it sings the sailors into sleep.
def add(a, b):\n    return a + b\nprint(add(1, 2))\nSystem: You are a helpful assistant. User: hello! Assistant: hi.
0 1 2 3 4 5 6 7 8 9 10 100 1000 x y z + - * / = ( ) [ ] { } < > , . ; : ! ? ' " # $ % & @ ^ _ ` | ~
"""

ARCHITECTURES: dict[str, dict] = {
    # GQA with q/k/v bias, like Qwen2.5.
    "qwen2": dict(model_type="qwen2", num_attention_heads=4, num_key_value_heads=2),
    # Multi-head attention, like LLaMA-2-7B.
    "llama": dict(model_type="llama", num_attention_heads=4, num_key_value_heads=4),
    # GQA, like LLaMA-3.
    "llama-gqa": dict(model_type="llama", num_attention_heads=4, num_key_value_heads=2),
    # q_norm / k_norm, and head_dim != hidden_size / num_attention_heads.
    "qwen3": dict(model_type="qwen3", num_attention_heads=4, num_key_value_heads=2, head_dim=24),
    "mistral": dict(model_type="mistral", num_attention_heads=4, num_key_value_heads=2),
}


def build_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in text; deterministic."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )


def build_model(architecture: str = "qwen2", vocab_size: int = 640, seed: int = 0, **overrides):
    """A tiny random-weight causal LM of ``architecture`` (a key of ARCHITECTURES), in fp32."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"`architecture` must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}.")
    settings = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        **ARCHITECTURES[architecture],
    )
    settings.update(overrides)
    model_type = settings.pop("model_type")
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32)


def save_tiny(path: str | Path, architecture: str = "qwen2", **overrides) -> Path:
    """Write a tiny model and its tokenizer to ``path`` (a folder LLaMA-Factory loads as model_name_or_path), unless
    it holds that model already; ValueError if it holds anything else."""
    path = Path(path)
    identity = {"command": "prefixmemory-tiny", "architecture": architecture, "settings": overrides}
    settings = ", ".join(f"{key}={value}" for key, value in overrides.items()) or "default settings"
    if written_before(path, identity, f"a tiny {architecture} model ({settings}) written by prefixmemory-tiny"):
        return path
    tokenizer = build_tokenizer()
    model = build_model(architecture, vocab_size=len(tokenizer) + 40 - len(tokenizer) % 8, **overrides)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    mark(path, identity)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a new or empty folder for the model and tokenizer")
    parser.add_argument("--architecture", default="qwen2", choices=sorted(ARCHITECTURES))
    parser.add_argument("--num-layers", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        path = save_tiny(args.output_dir, args.architecture, num_hidden_layers=args.num_layers)
    except ValueError as error:
        raise SystemExit(f"error: output_dir: {error}") from None
    print(f"tiny {args.architecture} model in {path}")


if __name__ == "__main__":
    main()
