"""Arguments and validation.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| hparams.finetuning_args.FinetuningArguments | subclass: prefixmemory + pmt_* keys | its Literal: argparse choices |
| hparams.parser._verify_model_args | PMT adapter allowed; vllm, sglang, 4/8-bit refused | upstream: LoRA-only |
| hparams.parser.get_train_args | ddp_find_unused_parameters=False, label_names | as upstream does for LoRA |
"""

import functools
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Literal

from prefixmemory.llamafactory import PrefixMemoryArguments

from . import PMT, mark_patched

FinetuningType = Literal["lora", "oft", "freeze", "full", "prefixmemory"]


def patch_finetuning_args(module) -> None:
    """Replace FinetuningArguments before parser.py and hparams/__init__.py bind the name."""
    if not mark_patched(module, "finetuning_args"):
        return
    upstream = module.FinetuningArguments
    foreign = [f for cls in (module.LoraArguments, module.OFTArguments, module.FreezeArguments) for f in fields(cls)]
    foreign += [f for f in fields(upstream) if f.name in ("use_galore", "use_apollo", "use_badam", "use_llama_pro")]

    @dataclass
    class FinetuningArguments(upstream, PrefixMemoryArguments):
        __doc__ = upstream.__doc__
        finetuning_type: FinetuningType = field(default="lora", metadata={"help": "Which fine-tuning method to use."})

        def __post_init__(self):
            if self.finetuning_type != PMT:
                changed = self.changed_pmt_keys()
                if changed:
                    raise ValueError(f"`{changed[0]}` is only valid with finetuning_type: prefixmemory.")
                return upstream.__post_init__(self)
            for f in foreign:
                if getattr(self, f.name) != f.default:
                    raise ValueError(
                        f"`{f.name}` does not apply to finetuning_type: prefixmemory (got {getattr(self, f.name)!r})."
                    )
            if self.stage == "ppo":
                raise ValueError(
                    "`stage: ppo` is not supported with finetuning_type: prefixmemory: LLaMA-Factory 0.9.5's PPO "
                    "trainer needs trl<=0.9.6, but it installs trl 0.24."
                )
            self.prefixmemory_config()  # validates the pmt_* keys before any model is loaded
            with _as_finetuning_type(self, "full"):  # upstream asserts its own list; its other checks still run
                upstream.__post_init__(self)

    FinetuningArguments.__module__ = upstream.__module__
    FinetuningArguments.__qualname__ = upstream.__qualname__
    module.FinetuningArguments = FinetuningArguments


def patch_parser(parser) -> None:
    """Wrap the two parser functions PrefixMemory needs different from LoRA."""
    if not mark_patched(parser, "parser"):
        return
    verify_model_args = parser._verify_model_args
    get_train_args = parser.get_train_args

    @functools.wraps(verify_model_args)
    def _verify_model_args(model_args, data_args, finetuning_args):
        if finetuning_args.finetuning_type != PMT:
            return verify_model_args(model_args, data_args, finetuning_args)
        backend = str(getattr(model_args.infer_backend, "value", model_args.infer_backend))
        if backend != "huggingface":
            raise ValueError(
                f"`infer_backend: {backend}` cannot serve finetuning_type: prefixmemory (vLLM and SGLang serve LoRA "
                "adapters only); use infer_backend: huggingface."
            )
        if model_args.quantization_bit is not None:
            raise ValueError(
                f"`quantization_bit: {model_args.quantization_bit}` is not supported with finetuning_type: "
                "prefixmemory; train on a bf16/fp16 base."
            )
        if model_args.adapter_name_or_path is not None and len(model_args.adapter_name_or_path) != 1:
            raise ValueError(
                f"`adapter_name_or_path` takes one prefixmemory adapter, got {len(model_args.adapter_name_or_path)}."
            )
        if model_args.adapter_name_or_path is not None:
            _check_adapter_type(model_args.adapter_name_or_path[0])
        with _as_finetuning_type(finetuning_args, "lora"):  # upstream accepts adapters for LoRA only
            verify_model_args(model_args, data_args, finetuning_args)

    @functools.wraps(get_train_args)
    def patched_get_train_args(*args, **kwargs):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(*args, **kwargs)
        if finetuning_args.finetuning_type == PMT:
            training_args.label_names = training_args.label_names or ["labels"]
            if training_args.ddp_find_unused_parameters is None:
                training_args.ddp_find_unused_parameters = False  # every memory is used in every step
        return model_args, data_args, training_args, finetuning_args, generating_args

    parser._verify_model_args = _verify_model_args
    parser.get_train_args = patched_get_train_args


def _check_adapter_type(path: str) -> None:
    """Read adapter_config.json (not the weights) so a wrong adapter fails before the model loads."""
    from peft import PeftConfig

    peft_type = PeftConfig.from_pretrained(path).peft_type
    if peft_type != "PREFIXMEMORY":
        name = getattr(peft_type, "value", peft_type)
        raise ValueError(f"`adapter_name_or_path` {path} holds a {name} adapter, not a prefixmemory one.")


@contextmanager
def _as_finetuning_type(finetuning_args, name: str):
    """Let an upstream check that knows only its own method names run unchanged."""
    real = finetuning_args.finetuning_type
    finetuning_args.finetuning_type = name
    try:
        yield
    finally:
        finetuning_args.finetuning_type = real
