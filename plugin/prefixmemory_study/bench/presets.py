"""What the benchmark measures: the methods, the figures, and the presets (model geometry and batch shape)."""

from __future__ import annotations

from dataclasses import dataclass

# What each method is, as the report and the plot say it.
METHOD_NOTES = {
    "base": "the frozen model, inference only",
    "floor": "frozen model that backpropagates through every layer: the least any adapter of every layer costs",
    "pmt-elu": "PrefixMemory, phi = elu (the paper's main setting)",
    "pmt-gelu": "PrefixMemory, phi = gelu",
    "pmt-mlp": "PrefixMemory, phi = the MLP kernel",
    "lora-r32": "LoRA rank 32 on every linear layer of every block (all-linear)",
    "lora-qv-r32": "LoRA rank 32 on q_proj and v_proj only: the paper's LoRA setting (Table 5, Table 8 counts)",
    "lora-r64": "LoRA rank 64 on every linear layer of every block (all-linear)",
    "prefix-32": "prefix tuning, 32 virtual tokens, no reparameterisation (PEFT's default)",
    "prefix-32-mlp": "prefix tuning, 32 virtual tokens, through PEFT's two-layer MLP (hidden size: the prefix's "
    "width, PEFT's default): Li & Liang's reparameterisation, the paper's baseline (prefix_projection: true)",
}
METHODS = tuple(METHOD_NOTES)
# On a 4-bit base, as LLaMA-Factory's `quantization_bit: 4` loads it (bitsandbytes NF4, double quantization, compute
# in the run's dtype); asked for by name only, as they need bitsandbytes: "nf4-" + any method above but base.
QUANTIZED_PREFIX = "nf4-"
_QUANTIZED_NOTES = {QUANTIZED_PREFIX + method: f"{note}; 4-bit NF4 base" for method, note in METHOD_NOTES.items()}
QUANTIZED_METHODS = tuple(method for method in _QUANTIZED_NOTES if method != QUANTIZED_PREFIX + "base")
METHOD_NOTES.update({method: _QUANTIZED_NOTES[method] for method in QUANTIZED_METHODS})
# Latency at batch 1 (one prompt) and at the preset's batch ("bN"): time to the first generated token, mean time
# between the later tokens, generated tokens per second (first token included).
LATENCY_FIGURES = ("ttft_b1_s", "tbt_b1_s", "tps_b1", "ttft_bN_s", "tbt_bN_s", "tps_bN")
FIGURES = (
    "train_step_s",
    "train_tokens_per_s",
    "peak_mem_bytes",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "prefill_b1_tokens_per_s",
    "decode_b1_tokens_per_s",
    *LATENCY_FIGURES,
    "trainable_params",
)


@dataclass(frozen=True)
class Preset:
    """A model geometry (AutoConfig.for_model keywords, random weights) and a batch shape."""

    model: dict
    seq_len: int
    batch_size: int
    decode_tokens: int
    dtype: str
    warmup: int
    repeats: int


def _small_qwen2(hidden_size: int, intermediate_size: int, layers: int, heads: int, vocab_size: int) -> dict:
    """A Qwen2 geometry with 2 KV heads; the rest of its config is transformers' default."""
    return dict(
        model_type="qwen2",
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=2,
        vocab_size=vocab_size,
    )


_QWEN25 = dict(
    model_type="qwen2",
    vocab_size=151936,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    max_position_embeddings=32768,
    num_key_value_heads=2,
)
_LLAMA2_7B = dict(
    model_type="llama",
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)
_TINY = _small_qwen2(64, 128, 2, 4, 640)
# The geometry of the CPU prototype the speed targets were set on (d_model 512, 8 layers). Chosen here:
# intermediate_size 3 x hidden, and an 8000-token vocabulary, so that the LM head (common to all methods) does not
# hide the layers and the (batch*seq, vocab) fp32 logits stay under 32 MiB, glibc's largest heap block
# (memory.cache_cpu_heap).
_CPU_SMALL = _small_qwen2(512, 1536, 8, 8, 8000)
_CPU_RUN = dict(dtype="float32", warmup=1)
# What the GPU presets share: sequence, decode length, dtype and repeats; only the batch size differs.
_GPU_RUN = dict(seq_len=1024, decode_tokens=64, dtype="bfloat16", warmup=3, repeats=10)
PRESETS = {
    "tiny": Preset(_TINY, seq_len=32, batch_size=2, decode_tokens=4, repeats=2, **_CPU_RUN),
    "cpu-small": Preset(_CPU_SMALL, seq_len=256, batch_size=4, decode_tokens=32, repeats=7, **_CPU_RUN),
    "qwen2.5-0.5b": Preset(
        dict(_QWEN25, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14),
        batch_size=8,
        **_GPU_RUN,
    ),
    "qwen2.5-3b": Preset(
        dict(_QWEN25, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16),
        batch_size=4,
        **_GPU_RUN,
    ),
    "llama2-7b": Preset(_LLAMA2_7B, batch_size=4, **_GPU_RUN),
}
