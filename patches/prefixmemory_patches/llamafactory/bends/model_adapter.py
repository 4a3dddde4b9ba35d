"""Bends ``llamafactory.model.adapter``: model loading.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| model.adapter.init_adapter | builds or loads our models; prefixmemory on a 4/8-bit base too | upstream: LoRA only |

Patched in model/adapter.py itself, before model/loader.py binds ``init_adapter`` by name. On a quantized base
LLaMA-Factory's kbit preparation (gradient checkpointing, `upcast_layernorm`) has run in ``patch_model`` already; the
memories are created in fp32 whatever the base's dtype, which is what upstream's fp32 upcast does for LoRA.
"""

from __future__ import annotations

import copy

from ...errors import PrefixMemoryError
from ...seams import Seam, bends
from .. import OUR_TYPES, PMT, needs_reference, wraps_original


@bends(
    Seam("init_adapter", params=("config", "model", "model_args", "finetuning_args", "is_trainable")),
    Seam("logger"),
)
def patch_adapter(adapter) -> None:
    @wraps_original(adapter, "init_adapter")
    def patched_init_adapter(init_adapter, config, model, model_args, finetuning_args, is_trainable):
        if finetuning_args.finetuning_type not in OUR_TYPES:
            return init_adapter(config, model, model_args, finetuning_args, is_trainable)
        return setup_adapter(model, model_args, finetuning_args, is_trainable, adapter.logger)


def setup_adapter(model, model_args, finetuning_args, is_trainable: bool, logger):
    """A new adapter to train, or the one in ``adapter_name_or_path`` (to train on, or to serve)."""
    from peft import PeftModel, get_peft_model

    from prefixmemory import attach_reference

    if not model_args.adapter_name_or_path:
        if not is_trainable:
            return model
        logger.info_rank0(f"Fine-tuning method: {finetuning_args.finetuning_type}")
        # The config built with the arguments; a copy, as PEFT writes the model's name (and geometry) into it.
        return get_peft_model(model, copy.deepcopy(finetuning_args.peft_config))

    path = model_args.adapter_name_or_path[0]  # one adapter of the right type: checked by _verify_model_args
    try:
        model = PeftModel.from_pretrained(model, path, is_trainable=is_trainable)
    except RuntimeError as err:
        mismatch = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), None)
        if mismatch is None:
            raise
        raise PrefixMemoryError(
            f"`adapter_name_or_path` {path}: its weights were trained for another model shape ({mismatch})."
        ) from None
    logger.info_rank0(f"Loaded {finetuning_args.finetuning_type} adapter: {path}")
    reference = finetuning_args.ref_model is None and needs_reference(finetuning_args)
    if is_trainable and finetuning_args.finetuning_type == PMT and reference:
        attach_reference(model)
        logger.info_rank0(f"Reference model: {path} (frozen copy of its memories), not the bare base model.")
    return model
