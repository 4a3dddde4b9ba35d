"""What a quantized base may be for our methods, checked before the model loads.

PrefixMemory reads q from q_proj and adds its term to the o_proj input: it needs no base weight, so a 4/8-bit base
(QLoRA's setting) is no obstacle. What runs and is tested on CPU is bitsandbytes, on the fly (`quantization_bit`) or
as a saved bitsandbytes checkpoint; LLaMA-Factory dequantizes MXFP4 and FP8 checkpoints as they load. The other
methods LLaMA-Factory offers need a GPU or kernels we cannot test here, so they are refused with the reason.
"""

from __future__ import annotations

from ...errors import PrefixMemoryError
from .. import PMT
from .geometry import read_model_config

QUANTIZABLE = (PMT,)  # our methods a quantized base is allowed for (PEFT's prefix-tuning is untested on one)
BNB_BITS = (4, 8)
# quantization_method -> why it is refused (LLaMA-Factory's other on-the-fly methods)
GPU_ONLY = {
    "hqq": "HQQ runs on GPUs only in transformers (a CPU device map is refused) and is untested with PrefixMemory",
    "eetq": "EETQ runs on CUDA GPUs only and is untested with PrefixMemory",
}
# quant_method of a pre-quantized checkpoint's config.json that loads as layers PrefixMemory is tested on
DEQUANTIZED = ("mxfp4", "fp8")  # LLaMA-Factory loads these checkpoints dequantized: plain layers
LOADABLE_CHECKPOINTS = ("bitsandbytes", *DEQUANTIZED)


def check_quantization(model_args, method: str) -> None:
    """A quantized base: bitsandbytes 4/8-bit for prefixmemory; one line for anything else."""
    bits, how = model_args.quantization_bit, str(model_args.quantization_method)
    if bits is not None and method not in QUANTIZABLE:
        raise PrefixMemoryError(
            f"`quantization_bit: {bits}` is not supported with finetuning_type: {method}; use finetuning_type: "
            f"{PMT} (or lora) on a quantized base, or train {method} on a bf16/fp16 base."
        )
    if bits is not None and how in GPU_ONLY:
        raise PrefixMemoryError(
            f"`quantization_method: {how}` is not supported with finetuning_type: {method}: {GPU_ONLY[how]}; use "
            "`quantization_method: bnb`."
        )
    if bits is not None and how == "bnb" and bits not in BNB_BITS:
        raise PrefixMemoryError(f"`quantization_bit` must be 4 or 8 with `quantization_method: bnb`, got {bits}.")
    _check_prequantized(model_args.model_name_or_path, method)


def _check_prequantized(model_path: str, method: str) -> None:
    """A checkpoint saved quantized (GPTQ, AWQ, AQLM...) needs kernels and a GPU that are not tested with ours."""
    config = read_model_config(model_path) or {}
    quant_method = (config.get("quantization_config") or {}).get("quant_method")
    loadable = LOADABLE_CHECKPOINTS if method in QUANTIZABLE else DEQUANTIZED
    if quant_method is None or quant_method in loadable:
        return
    raise PrefixMemoryError(
        f"`model_name_or_path` {model_path} is a {quant_method}-quantized checkpoint, not supported with "
        f"finetuning_type: {method} (its kernels need a GPU and are untested with it); give the full-precision "
        "model with `quantization_bit: 4` (bitsandbytes) instead."
    )
