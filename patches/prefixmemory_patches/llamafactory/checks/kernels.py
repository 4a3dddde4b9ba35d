"""The speed-ups LLaMA-Factory swaps into the model, against our methods, checked before the model loads.

``enable_liger_kernel: true`` is allowed: liger-kernel replaces module-level functions and classes of the
transformers model file (rotary embedding, RMSNorm, SwiGLU MLP, the loss) and leaves q_proj, q_norm and o_proj,
where the memory reads q and adds its term, as they are. Its rotary kernel rotates q in the q_proj (Qwen3: q_norm)
output's own storage, unseen by autograd; the layer keeps the copy its feature map needs (layer.py, tested by
tests/method/test_inplace_rotary.py). Its kernels are Triton GPU kernels: on a CPU the first forward fails.

``use_unsloth: true`` is refused. LLaMA-Factory uses Unsloth for LoRA only: with ``adapter_name_or_path`` its
loader leaves the model to Unsloth's LoRA loader (model/loader.py, ``lazy_load``; model/adapter.py), so our method
would get no model, and Unsloth's attention kernels need a GPU, untested with the memory.
"""

from __future__ import annotations

from ...errors import PrefixMemoryError


def check_kernels(model_args, method: str) -> None:
    """Unsloth: one line saying why, before LLaMA-Factory asks for the unsloth package."""
    if getattr(model_args, "use_unsloth", False):
        raise PrefixMemoryError(
            f"`use_unsloth: true` is not supported with finetuning_type: {method}: LLaMA-Factory hands Unsloth LoRA "
            "adapters only and Unsloth's GPU kernels are untested with it; set `use_unsloth: false` "
            "(`enable_liger_kernel: true` is supported)."
        )
