"""Arguments and validation, for ``finetuning_type: prefixmemory`` and ``finetuning_type: prefix``.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| hparams.finetuning_args.FinetuningArguments | subclass: two more types + their keys | its Literal: argparse choices |
| hparams.parser._verify_model_args | our adapters allowed; vllm (exports only), sglang, 4/8-bit refused | LoRA-only |
| hparams.parser.get_train_args | ddp_find_unused_parameters=False, label_names; PT limits | as upstream for LoRA |
"""

from . import OUR_TYPES, as_finetuning_type, mark_patched, needs_reference, wraps_original

ADAPTER_PEFT_TYPES = {"prefixmemory": "PREFIXMEMORY", "prefix": "PREFIX_TUNING"}


def patch_finetuning_args(module) -> None:
    """Replace FinetuningArguments before parser.py and hparams/__init__.py bind the name."""
    if not mark_patched(module, "finetuning_args"):
        return
    from .finetuning_args import FinetuningArguments  # a module-level subclass of upstream's, which exists only now

    module.FinetuningArguments = FinetuningArguments


def patch_parser(parser) -> None:
    """Wrap the two parser functions our methods need different from LoRA."""

    @wraps_original(parser, "_verify_model_args")
    def _verify_model_args(verify_model_args, model_args, data_args, finetuning_args):
        method = finetuning_args.finetuning_type
        if method not in OUR_TYPES:
            return verify_model_args(model_args, data_args, finetuning_args)
        _check_serving(model_args, method)
        if model_args.adapter_name_or_path is not None:
            if len(model_args.adapter_name_or_path) != 1:
                raise ValueError(
                    f"`adapter_name_or_path` takes one {method} adapter, got {len(model_args.adapter_name_or_path)}."
                )
            _check_adapter_type(model_args.adapter_name_or_path[0], method)
        with as_finetuning_type(finetuning_args, "lora"):  # upstream accepts adapters for LoRA only
            verify_model_args(model_args, data_args, finetuning_args)

    @wraps_original(parser, "get_train_args")
    def patched_get_train_args(get_train_args, *args, **kwargs):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(*args, **kwargs)
        if finetuning_args.finetuning_type == "prefix":
            _check_prefix_tuning_limits(model_args, data_args, finetuning_args)
        if finetuning_args.finetuning_type in OUR_TYPES:
            training_args.label_names = training_args.label_names or ["labels"]
            if training_args.ddp_find_unused_parameters is None:
                training_args.ddp_find_unused_parameters = False  # every adapter weight is used in every step
        return model_args, data_args, training_args, finetuning_args, generating_args


def _check_serving(model_args, method: str) -> None:
    """What cannot load our adapters: vLLM / SGLang, and a quantized base. vLLM serves a PrefixMemory export."""
    backend = str(getattr(model_args.infer_backend, "value", model_args.infer_backend))
    if backend == "vllm" and method == "prefixmemory":
        if model_args.adapter_name_or_path is not None:
            raise ValueError(
                "`infer_backend: vllm` cannot load a prefixmemory adapter: export it first (`llamafactory-cli "
                "export`) and give the export folder as `model_name_or_path`, without `adapter_name_or_path`."
            )
    elif backend != "huggingface":
        raise ValueError(
            f"`infer_backend: {backend}` cannot serve finetuning_type: {method} (vLLM and SGLang serve LoRA "
            "adapters only); use infer_backend: huggingface."
        )
    if model_args.quantization_bit is not None:
        raise ValueError(
            f"`quantization_bit: {model_args.quantization_bit}` is not supported with finetuning_type: "
            f"{method}; train on a bf16/fp16 base."
        )


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
    if needs_reference(finetuning_args) and model_args.adapter_name_or_path and finetuning_args.ref_model is None:
        raise ValueError(
            "`adapter_name_or_path` with finetuning_type: prefix and a DPO/KTO reference is not supported: the "
            "reference would be the bare base model. Start from the base model, or use prefixmemory."
        )
