"""Arguments and validation, for ``finetuning_type: prefixmemory`` and ``finetuning_type: prefix``.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| hparams.finetuning_args.FinetuningArguments | subclass: two more types + their keys | its Literal: argparse choices |
| hparams.parser._verify_model_args | our adapters allowed; vllm, sglang, 4/8-bit refused | upstream: LoRA-only |
| hparams.parser.get_train_args | ddp_find_unused_parameters=False, label_names; PT limits | as upstream for LoRA |
"""

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Literal

from prefixmemory.llamafactory import METHOD_ARGUMENTS, PrefixMemoryArguments, PrefixTuningArguments, changed_keys

from . import OUR_TYPES, mark_patched

FinetuningType = Literal["lora", "oft", "freeze", "full", "prefixmemory", "prefix"]
ADAPTER_PEFT_TYPES = {"prefixmemory": "PREFIXMEMORY", "prefix": "PREFIX_TUNING"}


def patch_finetuning_args(module) -> None:
    """Replace FinetuningArguments before parser.py and hparams/__init__.py bind the name."""
    if not mark_patched(module, "finetuning_args"):
        return
    upstream = module.FinetuningArguments
    foreign = [f for cls in (module.LoraArguments, module.OFTArguments, module.FreezeArguments) for f in fields(cls)]
    foreign += [f for f in fields(upstream) if f.name in ("use_galore", "use_apollo", "use_badam", "use_llama_pro")]

    @dataclass
    class FinetuningArguments(upstream, PrefixMemoryArguments, PrefixTuningArguments):
        __doc__ = upstream.__doc__
        finetuning_type: FinetuningType = field(default="lora", metadata={"help": "Which fine-tuning method to use."})

        def __post_init__(self):
            for method, arguments in METHOD_ARGUMENTS.items():
                changed = changed_keys(self, arguments) if self.finetuning_type != method else []
                if changed:
                    raise ValueError(f"`{changed[0]}` is only valid with finetuning_type: {method}.")
            if self.finetuning_type not in OUR_TYPES:
                return upstream.__post_init__(self)
            for f in foreign:
                if getattr(self, f.name) != f.default:
                    raise ValueError(
                        f"`{f.name}` does not apply to finetuning_type: {self.finetuning_type} "
                        f"(got {getattr(self, f.name)!r})."
                    )
            if self.stage == "ppo":
                raise ValueError(
                    f"`stage: ppo` is not supported with finetuning_type: {self.finetuning_type}: LLaMA-Factory "
                    "0.9.5's PPO trainer needs trl<=0.9.6, but it installs trl 0.24."
                )
            self.peft_config()  # validates the method's keys before any model is loaded
            with _as_finetuning_type(self, "full"):  # upstream asserts its own list; its other checks still run
                upstream.__post_init__(self)

        def peft_config(self):
            """The PEFT config of this run's method (prefixmemory or prefix)."""
            if self.finetuning_type == "prefix":
                return self.prefix_tuning_config()
            return self.prefixmemory_config()

    FinetuningArguments.__module__ = upstream.__module__
    FinetuningArguments.__qualname__ = upstream.__qualname__
    module.FinetuningArguments = FinetuningArguments


def patch_parser(parser) -> None:
    """Wrap the two parser functions our methods need different from LoRA."""
    if not mark_patched(parser, "parser"):
        return
    verify_model_args = parser._verify_model_args
    get_train_args = parser.get_train_args

    @functools.wraps(verify_model_args)
    def _verify_model_args(model_args, data_args, finetuning_args):
        method = finetuning_args.finetuning_type
        if method not in OUR_TYPES:
            return verify_model_args(model_args, data_args, finetuning_args)
        backend = str(getattr(model_args.infer_backend, "value", model_args.infer_backend))
        if backend != "huggingface":
            raise ValueError(
                f"`infer_backend: {backend}` cannot serve finetuning_type: {method} (vLLM and SGLang serve LoRA "
                "adapters only); use infer_backend: huggingface."
            )
        if model_args.quantization_bit is not None:
            raise ValueError(
                f"`quantization_bit: {model_args.quantization_bit}` is not supported with finetuning_type: "
                f"{method}; train on a bf16/fp16 base."
            )
        if model_args.adapter_name_or_path is not None:
            if len(model_args.adapter_name_or_path) != 1:
                raise ValueError(
                    f"`adapter_name_or_path` takes one {method} adapter, got {len(model_args.adapter_name_or_path)}."
                )
            _check_adapter_type(model_args.adapter_name_or_path[0], method)
        with _as_finetuning_type(finetuning_args, "lora"):  # upstream accepts adapters for LoRA only
            verify_model_args(model_args, data_args, finetuning_args)

    @functools.wraps(get_train_args)
    def patched_get_train_args(*args, **kwargs):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(*args, **kwargs)
        if finetuning_args.finetuning_type == "prefix":
            _check_prefix_tuning_limits(model_args, data_args, finetuning_args)
        if finetuning_args.finetuning_type in OUR_TYPES:
            training_args.label_names = training_args.label_names or ["labels"]
            if training_args.ddp_find_unused_parameters is None:
                training_args.ddp_find_unused_parameters = False  # every adapter weight is used in every step
        return model_args, data_args, training_args, finetuning_args, generating_args

    parser._verify_model_args = _verify_model_args
    parser.get_train_args = patched_get_train_args


def _check_adapter_type(path: str, method: str) -> None:
    """Read adapter_config.json (not the weights) so a wrong adapter fails before the model loads."""
    from peft import PeftConfig

    peft_type = PeftConfig.from_pretrained(path).peft_type
    if peft_type != ADAPTER_PEFT_TYPES[method]:
        name = getattr(peft_type, "value", peft_type)
        raise ValueError(f"`adapter_name_or_path` {path} holds a {name} adapter, not a {method} one.")


def _check_prefix_tuning_limits(model_args, data_args, finetuning_args) -> None:
    """What PEFT's prefix-tuning cannot do, said before the model loads."""
    if not model_args.disable_gradient_checkpointing:
        raise ValueError(
            "finetuning_type: prefix needs `disable_gradient_checkpointing: true` (PEFT's prefix-tuning does not "
            "support gradient checkpointing)."
        )
    if data_args.packing or data_args.neat_packing:
        raise ValueError(
            "finetuning_type: prefix needs `packing: false` (packed samples would share one prefix and one cache)."
        )
    needs_reference = finetuning_args.stage == "kto" or (
        finetuning_args.stage == "dpo" and finetuning_args.use_ref_model
    )
    if needs_reference and model_args.adapter_name_or_path and finetuning_args.ref_model is None:
        raise ValueError(
            "`adapter_name_or_path` with finetuning_type: prefix and a DPO/KTO reference is not supported: the "
            "reference would be the bare base model. Start from the base model, or use prefixmemory."
        )


@contextmanager
def _as_finetuning_type(finetuning_args, name: str):
    """Let an upstream check that knows only its own method names run unchanged."""
    real = finetuning_args.finetuning_type
    finetuning_args.finetuning_type = name
    try:
        yield
    finally:
        finetuning_args.finetuning_type = real
