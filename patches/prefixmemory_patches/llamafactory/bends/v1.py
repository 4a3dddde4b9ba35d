"""LLaMA-Factory v1 (``USE_V1=1``): ``peft_config: {name: prefixmemory, ...}`` through v1's plugin registry.

| LLaMA-Factory name | change | why |
| --- | --- | --- |
| v1.plugins.model_plugins.peft.PeftPlugin | + "prefixmemory" | v1's model engine builds adapters by plugin name |

v1's DPO trainer takes the reference pass under ``model.disable_adapter()``; continuing from a saved adapter, the
plugin attaches a frozen copy of its memories, so the reference is that adapter rather than the bare base model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..seams import Seam, bends
from . import PMT, mark_patched


@dataclass
class PrefixMemoryParams:
    """The keys of ``peft_config`` (v1 refuses unknown ones)."""

    name: str = PMT
    feature_map: str = "elu"
    layers: list[int] | int | None = None
    feature_dim: int | None = None
    adapter_name_or_path: str | None = None  # a saved adapter to train on or to serve (never merged)


@bends(Seam("PeftPlugin.register"), Seam("PeftPlugin.parse_params", params=("config", "params_cls")), Seam("logger"))
def register_peft_plugin(peft_plugins) -> None:
    if not mark_patched(peft_plugins, "v1_plugin"):
        return
    PeftPlugin = peft_plugins.PeftPlugin

    @PeftPlugin(PMT).register()
    def get_prefixmemory_model(model, peft_config, is_train: bool = False):
        from peft import PeftModel, get_peft_model

        from prefixmemory import PrefixMemoryConfig, attach_reference

        params = PeftPlugin.parse_params(peft_config, PrefixMemoryParams)
        if params.adapter_name_or_path:
            model = PeftModel.from_pretrained(model, params.adapter_name_or_path, is_trainable=is_train)
            if is_train:
                attach_reference(model)
            peft_plugins.logger.info_rank0(f"Loaded prefixmemory adapter: {params.adapter_name_or_path}")
            return model
        config = PrefixMemoryConfig(
            feature_map=params.feature_map,
            layers=params.layers,
            feature_dim=params.feature_dim,
            inference_mode=not is_train,
        )
        peft_plugins.logger.info_rank0(f"Fine-tuning method: prefixmemory ({config.feature_map})")
        return get_peft_model(model, config)
