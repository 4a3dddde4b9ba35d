"""Bends ``llamafactory.v1.plugins.model_plugins.peft``: ``peft_config: {name: prefixmemory, ...}`` in v1.

LLaMA-Factory v1 (``USE_V1=1``) builds adapters through a plugin registry; the keys of ``peft_config`` are the
options of PrefixMemoryConfig (``prefixmemory.config.options``) under their own names.

| LLaMA-Factory name | change | why |
| --- | --- | --- |
| v1.plugins.model_plugins.peft.PeftPlugin | + "prefixmemory" | v1's model engine builds adapters by plugin name |

v1's DPO trainer takes the reference pass under ``model.disable_adapter()``; continuing from a saved adapter, the
plugin attaches a frozen copy of its memories, so the reference is that adapter rather than the bare base model.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass

from ...seams import Seam, bends
from .. import PMT, mark_patched


def _params_class():
    """The keys of ``peft_config`` (v1 refuses unknown ones): the config's options, a name and a saved adapter."""
    from prefixmemory.config import options

    keys = [(option.name, option.type, field(default=option.default)) for option in options()]
    extra = [("name", str, field(default=PMT)), ("adapter_name_or_path", "str | None", field(default=None))]
    return make_dataclass("PrefixMemoryParams", extra + keys)


@bends(Seam("PeftPlugin.register"), Seam("PeftPlugin.parse_params", params=("config", "params_cls")), Seam("logger"))
def register_peft_plugin(peft_plugins) -> None:
    if not mark_patched(peft_plugins, "v1_plugin"):
        return
    PeftPlugin = peft_plugins.PeftPlugin

    @PeftPlugin(PMT).register()
    def get_prefixmemory_model(model, peft_config, is_train: bool = False):
        from peft import PeftModel, get_peft_model

        from prefixmemory import PrefixMemoryConfig, attach_reference
        from prefixmemory.config import options

        params = PeftPlugin.parse_params(peft_config, _params_class())
        if params.adapter_name_or_path:
            model = PeftModel.from_pretrained(model, params.adapter_name_or_path, is_trainable=is_train)
            if is_train:
                attach_reference(model)
            peft_plugins.logger.info_rank0(f"Loaded prefixmemory adapter: {params.adapter_name_or_path}")
            return model
        chosen = {option.name: getattr(params, option.name) for option in options()}
        config = PrefixMemoryConfig(**chosen, inference_mode=not is_train)
        peft_plugins.logger.info_rank0(f"Fine-tuning method: prefixmemory ({config.feature_map})")
        return get_peft_model(model, config)
