"""PrefixMemoryModel: the PEFT tuner that puts one PrefixMemory layer in each selected attention block."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import partial

from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from .architectures import AttentionLayout, attention_layout, text_config
from .config import PrefixMemoryConfig
from .layer import NO_MERGE_MESSAGE, MemoryInjector, MemorySlot, PrefixMemoryLayer
from .loading import attention_blocks, check_state_dict, model_geometry, with_adapter_name


class PrefixMemoryModel(BaseTuner):
    """Adds ``phi(q) @ M`` to the attention output of every selected decoder layer (arXiv 2506.13674).

    The base model stays frozen; only the memories (and the mlp kernels) train. Nothing is merged:
    ``merge_and_unload`` raises, ``unload`` restores the original modules.

    Example:
        >>> import prefixmemory
        >>> from peft import get_peft_model
        >>> model = get_peft_model(base_model, prefixmemory.PrefixMemoryConfig(feature_map="elu"))
        >>> model.print_trainable_parameters()
    """

    prefix: str = "prefixmemory_"
    tuner_layer_cls = PrefixMemoryLayer
    target_module_mapping: dict[str, list[str]] = {}  # targets come from the architecture table
    _row_adapters: list[str] | None = None  # the adapter of each batch row during a mixed-adapter call

    def _prepare_adapter_config(self, peft_config: PrefixMemoryConfig, model_config: dict) -> PrefixMemoryConfig:
        attention_layout(model_config.get("model_type"))  # unsupported architecture: ValueError, before any change
        num_layers = text_config(model_config).get("num_hidden_layers")
        out_of_range = [i for i in peft_config.layers or () if num_layers is not None and i >= num_layers]
        if out_of_range:
            raise ValueError(f"`layers` {out_of_range} out of range: the model has {num_layers} decoder layers.")
        return peft_config

    def _prepare_model(self, peft_config: PrefixMemoryConfig, model: nn.Module) -> None:
        """Before any layer is wrapped: the layout, the layers checked, the adapter's recorded base model checked (or
        recorded)."""
        model_config = self.get_model_config(model)
        self._layout: AttentionLayout = attention_layout(model_config.get("model_type"))
        attentions = attention_blocks(model, self._layout)
        without = sorted(set(peft_config.layers or ()) - set(attentions))
        if without:
            raise ValueError(
                f"`layers` {without}: those decoder layers of this {self._layout.family} model have no softmax "
                f"attention to add a memory to; its attention layers are {sorted(attentions)}."
            )
        peft_config.fit_base_model(**model_geometry(model_config, attentions, self._layout))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Every load_state_dict of the model (PEFT's loaders too) passes here first: refuse weights that don't fit."""
        check_state_dict(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def _get_adapter_state_dict(cls, model, config, adapter_name, state_dict, unwanted_adapter_names):
        """The adapter's weights are the ``prefixmemory_`` ones, as PEFT 0.18 selected them by ``prefix``.

        PEFT 0.21 takes everything on a tuner layer but its base layer, which would save the frozen reference
        copies (reference.py) as adapter weights too.
        """
        selected = super()._get_adapter_state_dict(model, config, adapter_name, state_dict, unwanted_adapter_names)
        return {key: value for key, value in selected.items() if f".{cls.prefix}" in key}

    @classmethod
    def _remap_adapter_state_dict_for_load(cls, model, config, adapter_name, state_dict):
        """Every saved memory key gets the adapter's name, as PEFT 0.18 named them, so check_state_dict sees it.

        PEFT 0.21 names only the keys the model has a memory for and passes the rest through unnamed, which
        load_state_dict then drops: an adapter with more layers than the model would load with no error.
        """
        remapped = super()._remap_adapter_state_dict_for_load(model, config, adapter_name, state_dict)
        return {with_adapter_name(key, adapter_name): value for key, value in remapped.items()}

    def _check_target_module_exists(self, peft_config: PrefixMemoryConfig, key: str) -> bool:
        match = self._layout.attention_key().search(key)
        return match is not None and (peft_config.layers is None or int(match.group(1)) in peft_config.layers)

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        layout = self._layout
        query_module = layout.query_module_of(target)
        query_layer = getattr(target, query_module)
        if not isinstance(query_layer, PrefixMemoryLayer):
            slot = MemorySlot()
            query_layer = PrefixMemoryLayer(
                query_layer,
                slot,
                num_heads=target.config.num_attention_heads,
                head_dim=getattr(target, layout.query_head_dim),
                key=f"{current_key}.{query_module}",
                value_dim=getattr(target, layout.value_head_dim),
                query_layout=layout.query_layout,
            )
            setattr(target, query_module, query_layer)
            setattr(target, layout.output_module, MemoryInjector(getattr(target, layout.output_module), slot))
        query_layer.update_layer(
            adapter_name, peft_config.feature_map, peft_config.feature_dim, peft_config.memory_bias
        )

    @contextmanager
    def _enable_peft_forward_hooks(self, *args, **kwargs):
        """``model(..., adapter_names=[...])`` / ``generate``: row b of the batch uses adapter ``adapter_names[b]``.

        PeftModel calls this around every forward and generate; without ``adapter_names`` it adds nothing. With
        them, each PrefixMemory layer gets the names as a forward argument for the duration of the call.
        """
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        layers = [module for module in self.model.modules() if isinstance(module, PrefixMemoryLayer)]
        _check_adapter_names(adapter_names, layers, self.training)
        self._row_adapters = list(adapter_names)  # generate() repeats them in place as it repeats the rows
        hook = partial(_pass_adapter_names, adapter_names=self._row_adapters)
        handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in layers]
        try:
            yield
        finally:
            self._row_adapters = None
            for handle in handles:
                handle.remove()

    def generate(self, *args, **kwargs):
        """In a mixed-adapter call, repeat each row's adapter name as generate repeats the row (beams, samples).

        PeftModelForCausalLM.generate calls this inside ``_enable_peft_forward_hooks``, a forward never does.
        """
        if self._row_adapters:
            repeat = _rows_per_input(self.model, args, kwargs)
            self._row_adapters[:] = [name for name in self._row_adapters for _ in range(repeat)]
        return self.model.generate(*args, **kwargs)

    def _cast_adapter_dtype(self, adapter_name: str, autocast_adapter_dtype: bool = True) -> None:
        """Memories are created in fp32 on the base layer's device and stay so; nothing to cast."""

    def _check_merge_allowed(self):
        raise ValueError(NO_MERGE_MESSAGE)

    def _unload_and_optionally_merge(self, merge=True, progressbar=False, safe_merge=False, adapter_names=None):
        if merge:
            raise ValueError(NO_MERGE_MESSAGE)
        for module in list(self.model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, (PrefixMemoryLayer, MemoryInjector)):
                    setattr(module, name, child.base_layer)
        return self.model


def _check_adapter_names(adapter_names, layers: list[PrefixMemoryLayer], training: bool) -> None:
    """The errors PEFT's LoRA gives for a mixed-adapter batch, before any forward work."""
    if training:
        raise ValueError("Cannot pass `adapter_names` when the model is in training mode.")
    if not isinstance(adapter_names, (list, tuple)) or not all(isinstance(name, str) for name in adapter_names):
        raise TypeError(f"Got adapter names of type {type(adapter_names)}, expected a list of str.")
    known = set().union(*(layer.prefixmemory_memory.keys() for layer in layers))
    unknown = {name for name in adapter_names if name != "__base__"} - known
    if unknown:
        raise ValueError(f"Trying to infer with non-existing adapter(s): {', '.join(sorted(unknown))}")


def _rows_per_input(model, args, kwargs) -> int:
    """Rows generate runs per input row: max(num_beams, num_return_sequences), as transformers expands the inputs.

    The generation config is merged by transformers itself (call kwargs, a passed ``generation_config``, then the
    model's ``generation_config`` and the defaults), so every way of asking for beams or samples counts.
    """
    bound = inspect.signature(model.generate).bind_partial(*args, **kwargs).arguments
    config, _ = model._prepare_generation_config(bound.get("generation_config"), **bound.get("kwargs", {}))
    return max(config.num_beams or 1, config.num_return_sequences or 1)


def _pass_adapter_names(module, args, kwargs, adapter_names):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs
