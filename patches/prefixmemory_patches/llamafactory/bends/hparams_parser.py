"""Arguments and validation, for ``finetuning_type: prefixmemory`` and ``finetuning_type: prefix``.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| hparams.finetuning_args.FinetuningArguments | subclass: two more types + their keys | its Literal: argparse choices |
| hparams.parser._parse_{train,infer,eval}_args | type case; other methods' keys | defaults hide them |
| hparams.parser._verify_model_args | adapters, geometry checked; sglang, 4/8-bit refused; vllm: exports | LoRA-only |
| hparams.parser.get_last_checkpoint | skips checkpoints without trainer_state.json | a killed save |
| hparams.parser.get_train_args | folders, resume; ddp_find_unused_parameters, label_names; PT limits | as for LoRA |

Our refusals are PrefixMemoryErrors, printed in one line (errors.py).
"""

from ..errors import PrefixMemoryError, report_refusals_in_one_line
from ..seams import Seam, bends, require
from . import OUR_TYPES, as_finetuning_type, mark_patched, needs_reference, wraps_original
from .checkpoints import WRITTEN_LAST, last_complete_checkpoint
from .raw_args import check_method_keys, given_values, normalize_finetuning_type
from .run_checks import check_adapter, check_foreign_adapter, check_geometry, check_training_folders


@bends(
    Seam("FinetuningArguments", fields=("finetuning_type",)),
    Seam("FinetuningArguments.__post_init__", params=("self",)),
)
def guard_finetuning_args(module) -> None:
    """Stop our methods with one line when a seam is missing, even if the subclass below cannot be installed."""

    @wraps_original(module, "FinetuningArguments.__post_init__")
    def guarded_post_init(post_init, self):
        if self.finetuning_type in OUR_TYPES:
            require(self.finetuning_type)
        return post_init(self)


@bends(
    Seam(
        "FinetuningArguments",
        fields=("stage", "ref_model", "pref_loss", "use_galore", "use_apollo", "use_badam", "use_llama_pro"),
    ),
    Seam("LoraArguments", fields=("lora_rank", "lora_target")),
    Seam("OFTArguments", fields=("oft_rank",)),
    Seam("FreezeArguments", fields=("freeze_trainable_layers",)),
)
def patch_finetuning_args(module) -> None:
    """Replace FinetuningArguments before parser.py and hparams/__init__.py bind the name."""
    if not mark_patched(module, "finetuning_args"):
        return
    from .finetuning_args import FinetuningArguments  # a module-level subclass of upstream's, which exists only now

    module.FinetuningArguments = FinetuningArguments


@bends(
    Seam("_verify_model_args", params=("model_args", "data_args", "finetuning_args")),
    Seam("get_train_args", params=("args",)),
    Seam("_parse_train_args", params=("args",)),
    Seam("_parse_infer_args", params=("args",)),
    Seam("_parse_eval_args", params=("args",)),
    Seam("get_last_checkpoint", params=("folder",)),
)
def patch_parser(parser) -> None:
    """Wrap the parser functions our methods need different from LoRA; our refusals print in one line."""
    report_refusals_in_one_line()
    for name in ("_parse_train_args", "_parse_infer_args", "_parse_eval_args"):
        _read_keys_as_written(parser, name)

    @wraps_original(parser, "get_last_checkpoint")
    def get_last_complete_checkpoint(get_last_checkpoint, output_dir):
        return last_complete_checkpoint(output_dir, WRITTEN_LAST)

    @wraps_original(parser, "_verify_model_args")
    def _verify_model_args(verify_model_args, model_args, data_args, finetuning_args):
        method = finetuning_args.finetuning_type
        if method not in OUR_TYPES:
            check_foreign_adapter(model_args.adapter_name_or_path, method)
            return verify_model_args(model_args, data_args, finetuning_args)
        _check_serving(model_args, method)
        adapter_config = None
        if model_args.adapter_name_or_path is not None:
            if len(model_args.adapter_name_or_path) != 1:
                raise PrefixMemoryError(
                    f"`adapter_name_or_path` takes one {method} adapter, got {len(model_args.adapter_name_or_path)}."
                )
            adapter_config = check_adapter(model_args.adapter_name_or_path[0], finetuning_args)
        check_geometry(model_args, finetuning_args, adapter_config, parser.logger)
        with as_finetuning_type(finetuning_args, "lora"):  # upstream accepts adapters for LoRA only
            verify_model_args(model_args, data_args, finetuning_args)

    @wraps_original(parser, "get_train_args")
    def patched_get_train_args(get_train_args, *args, **kwargs):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(*args, **kwargs)
        if finetuning_args.finetuning_type == "prefix":
            _check_prefix_tuning_limits(model_args, data_args, finetuning_args)
        check_training_folders(model_args, training_args, finetuning_args)
        if finetuning_args.finetuning_type in OUR_TYPES:
            training_args.label_names = training_args.label_names or ["labels"]
            if training_args.ddp_find_unused_parameters is None:
                training_args.ddp_find_unused_parameters = False  # every adapter weight is used in every step
        return model_args, data_args, training_args, finetuning_args, generating_args


def _read_keys_as_written(parser, name: str) -> None:
    """Check the keys as the user wrote them, then parse; the parsed FinetuningArguments keep ``given_keys``."""

    @wraps_original(parser, name)
    def parse_checked(parse, args=None):
        args = normalize_finetuning_type(parser.read_args(args))
        given = given_values(args)
        check_method_keys(given)
        parsed = parse(args)
        for arguments in parsed:
            if hasattr(arguments, "finetuning_type"):
                arguments.given_keys = frozenset(given)
        return parsed


def _check_serving(model_args, method: str) -> None:
    """What cannot load our adapters: vLLM / SGLang, and a quantized base. vLLM serves a PrefixMemory export."""
    backend = str(getattr(model_args.infer_backend, "value", model_args.infer_backend))
    if backend == "vllm" and method == "prefixmemory":
        if model_args.adapter_name_or_path is not None:
            raise PrefixMemoryError(
                "`infer_backend: vllm` cannot load a prefixmemory adapter: export it first (`llamafactory-cli "
                "export`) and give the export folder as `model_name_or_path`, without `adapter_name_or_path`."
            )
    elif backend != "huggingface":
        raise PrefixMemoryError(
            f"`infer_backend: {backend}` cannot serve finetuning_type: {method} (vLLM and SGLang serve LoRA "
            "adapters only); use infer_backend: huggingface."
        )
    if model_args.quantization_bit is not None:
        raise PrefixMemoryError(
            f"`quantization_bit: {model_args.quantization_bit}` is not supported with finetuning_type: "
            f"{method}; train on a bf16/fp16 base."
        )


def _check_prefix_tuning_limits(model_args, data_args, finetuning_args) -> None:
    """What PEFT's prefix-tuning cannot do, said before the model loads."""
    if not model_args.disable_gradient_checkpointing:
        raise PrefixMemoryError(
            "finetuning_type: prefix needs `disable_gradient_checkpointing: true` (PEFT's prefix-tuning does not "
            "support gradient checkpointing)."
        )
    if data_args.packing or data_args.neat_packing:
        raise PrefixMemoryError(
            "finetuning_type: prefix needs `packing: false` (packed samples would share one prefix and one cache)."
        )
    if needs_reference(finetuning_args) and model_args.adapter_name_or_path and finetuning_args.ref_model is None:
        raise PrefixMemoryError(
            "`adapter_name_or_path` with finetuning_type: prefix and a DPO/KTO reference is not supported: the "
            "reference would be the bare base model. Start from the base model, or use prefixmemory."
        )
