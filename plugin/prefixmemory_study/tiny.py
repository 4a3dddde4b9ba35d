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
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, PreTrainedTokenizerFast

from .marker import mark, written_before

# Every special token the chat templates of LLaMA-Factory in TEMPLATES use for plain chat (qwen, llama, mistral,
# gemma, phi, glm, olmo, deepseek), so that no template has to add tokens (which would need resize_vocab).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>",
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[INST]", "[/INST]", "<think>", "</think>",
    "<start_of_turn>", "<end_of_turn>", "<eos>", "<|turn>", "<turn|>", "<|think|>",
    "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|im_sep|>", "[gMASK]", "<sop>", "<|observation|>",
    "<|header_start|>", "<|header_end|>", "<|eot|>", "<|eom|>", "<｜User｜>", "<｜Assistant｜>",
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

_GQA = dict(num_attention_heads=4, num_key_value_heads=2)
_MOE = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
_GATED_DELTANET = dict(  # layer 0 Gated DeltaNet, layer 1 gated full attention
    head_dim=16,
    layer_types=["linear_attention", "full_attention"],
    linear_num_value_heads=2,
    linear_num_key_heads=2,
    linear_key_head_dim=16,
    linear_value_head_dim=16,
)
_QWEN_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
_MROPE = dict(rope_parameters=dict(rope_type="default", mrope_section=[2, 3, 3], rope_theta=10000.0))
_SIGLIP = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
_GEMMA4 = dict(head_dim=16, global_head_dim=32, vocab_size_per_layer_input=640, hidden_size_per_layer_input=8)
_LLAMA4 = dict(head_dim=16, intermediate_size_mlp=128, num_local_experts=2)

# Tiny configs keyed by the model_type of prefixmemory.architectures.ATTENTION_LAYOUTS (a test keeps the two key
# sets equal), plus variants of a family (``llama-gqa``). ``template`` is the LLaMA-Factory chat template of the
# family's chat models (SmolLM3, which LLaMA-Factory 0.9.5 does not list, takes SmolLM2's ChatML); the rest is the
# config. ``vision_config`` marks a vision-language model: the shared sizes then go into its ``text_config``.
ARCHITECTURES: dict[str, dict] = {
    "llama": dict(template="llama2", model_type="llama", num_attention_heads=4, num_key_value_heads=4),  # MHA
    "llama-gqa": dict(template="llama3", model_type="llama", **_GQA),  # GQA, LLaMA-3 and SmolLM2
    "mistral": dict(template="mistral", model_type="mistral", **_GQA),
    "mixtral": dict(template="mistral", model_type="mixtral", num_local_experts=4, num_experts_per_tok=2, **_GQA),
    "qwen2": dict(template="qwen", model_type="qwen2", **_GQA),  # q/k/v bias, like Qwen2.5
    "qwen3": dict(template="qwen3", model_type="qwen3", head_dim=24, **_GQA),  # head_dim != hidden_size / heads
    "qwen3_moe": dict(template="qwen3", model_type="qwen3_moe", head_dim=24, **_MOE, **_GQA),
    "qwen3_5_text": dict(template="qwen3_5", model_type="qwen3_5_text", **_GATED_DELTANET, **_GQA),
    "qwen3_5_moe_text": dict(
        template="qwen3_5", model_type="qwen3_5_moe_text", shared_expert_intermediate_size=32, **_MOE,
        **_GATED_DELTANET, **_GQA,
    ),
    "qwen3_5": dict(template="qwen3_5", model_type="qwen3_5", vision_config=_QWEN_VISION, **_GATED_DELTANET, **_GQA),
    "qwen3_5_moe": dict(
        template="qwen3_5", model_type="qwen3_5_moe", vision_config=_QWEN_VISION, shared_expert_intermediate_size=32,
        **_MOE, **_GATED_DELTANET, **_GQA,
    ),
    "qwen2_5_vl": dict(
        template="qwen2_vl", model_type="qwen2_5_vl", vision_config=dict(_QWEN_VISION, fullatt_block_indexes=[0]),
        **_MROPE, **_GQA,
    ),
    "qwen3_vl": dict(
        template="qwen3_vl", model_type="qwen3_vl", vision_config=dict(_QWEN_VISION, deepstack_visual_indexes=[0]),
        head_dim=24, **_MROPE, **_GQA,
    ),
    "gemma2": dict(template="gemma2", model_type="gemma2", head_dim=24, sliding_window=4, **_GQA),  # soft-capping
    "gemma3_text": dict(
        template="gemma2", model_type="gemma3_text", head_dim=24, sliding_window=4, sliding_window_pattern=2, **_GQA,
    ),
    "gemma3": dict(
        template="gemma3", model_type="gemma3", vision_config=dict(_SIGLIP, image_size=28, patch_size=14),
        mm_tokens_per_image=4, head_dim=24, sliding_window=4, **_GQA,
    ),
    "gemma4_text": dict(template="gemma4", model_type="gemma4_text", sliding_window=4, **_GEMMA4, **_GQA),
    "gemma4": dict(
        template="gemma4", model_type="gemma4", vision_config=_SIGLIP, audio_config=None, sliding_window=4,
        **_GEMMA4, **_GQA,
    ),
    "phi3": dict(template="phi4", model_type="phi3", pad_token_id=0, **_GQA),
    "glm4": dict(template="glm4", model_type="glm4", pad_token_id=0, head_dim=16, **_GQA),
    "glm4_moe": dict(
        template="glm4_moe", model_type="glm4_moe", use_qk_norm=True, n_routed_experts=4, num_experts_per_tok=2,
        moe_intermediate_size=32, first_k_dense_replace=1, **_GQA,
    ),
    "olmo2": dict(template="olmo", model_type="olmo2", **_GQA),
    "olmo3": dict(template="olmo", model_type="olmo3", sliding_window=4, **_GQA),
    "smollm3": dict(template="smollm2", model_type="smollm3", pad_token_id=0, no_rope_layer_interval=2, **_GQA),
    "llama4_text": dict(template="llama4", model_type="llama4_text", **_LLAMA4, **_GQA),
    "llama4": dict(
        template="llama4", model_type="llama4", vision_config=dict(
            _SIGLIP, image_size=28, patch_size=14, vision_output_dim=32, projector_input_dim=32,
            projector_output_dim=32,
        ), **_LLAMA4, **_GQA,
    ),
    # MLA expands its keys to every query head: num_key_value_heads must equal num_attention_heads, as in
    # DeepSeek-V3's config (with 2 the base model itself fails whenever an attention mask is passed)
    "deepseek_v3": dict(
        template="deepseek3", model_type="deepseek_v3", q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=16,
        qk_rope_head_dim=8, v_head_dim=12, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        first_k_dense_replace=1, n_group=1, topk_group=1, num_attention_heads=4, num_key_value_heads=4,
    ),
}  # fmt: skip


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
    settings.pop("template")
    model_type = settings.pop("model_type")
    vision = {key: settings.pop(key) for key in ("vision_config", "audio_config") if key in settings}
    if vision:  # a vision-language model: its decoder's settings are its text_config
        settings = dict(text_config=settings, tie_word_embeddings=False, **vision)
    config = AutoConfig.for_model(model_type, **settings)
    torch.manual_seed(seed)
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    return auto.from_config(config, dtype=torch.float32)


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
