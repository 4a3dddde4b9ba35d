"""Bends ``llamafactory.hparams.parser``: arguments read as written, and our checks before the model loads.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| _parse_{train,infer,eval}_args | type case; other methods' keys; an export gets its adapter | defaults hide them |
| _verify_model_args | adapters, geometry checked; sglang, unsloth refused; vllm: exports; 4/8-bit: bnb | LoRA-only |
| get_last_checkpoint | skips checkpoints without trainer_state.json | a killed save |
| get_train_args | folders, resume (`true` too); ddp_find_unused_parameters, label_names; PT limits | as for LoRA |

The checks themselves are ours, in ``checks/``; our refusals print in one line (errors.py).
"""

from ...errors import PrefixMemoryError, report_refusals_in_one_line
from ...seams import Seam, bends
from .. import OUR_TYPES, as_finetuning_type, wraps_original
from ..checks.checkpoints import WRITTEN_LAST, choose_checkpoint, last_complete_checkpoint
from ..checks.given_keys import check_method_keys, given_values, normalize_finetuning_type
from ..checks.kernels import check_kernels
from ..checks.outputs import check_output_dir, expand_output_paths
from ..checks.quantization import check_quantization
from ..checks.run import (
    check_adapter,
    check_foreign_adapter,
    check_geometry,
    check_prefix_tuning_limits,
    check_serving,
    check_training_folders,
    serve_export,
)


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
        check_serving(model_args, method)
        check_quantization(model_args, method)
        check_kernels(model_args, method)
        adapter = None
        if model_args.adapter_name_or_path is not None:
            if len(model_args.adapter_name_or_path) != 1:
                raise PrefixMemoryError(
                    f"`adapter_name_or_path` takes one {method} adapter, got {len(model_args.adapter_name_or_path)}."
                )
            adapter = check_adapter(model_args.adapter_name_or_path[0], finetuning_args)
        check_geometry(model_args, finetuning_args, adapter, parser.logger)
        with as_finetuning_type(finetuning_args, "lora"):  # upstream accepts adapters for LoRA only
            verify_model_args(model_args, data_args, finetuning_args)

    @wraps_original(parser, "get_train_args")
    def patched_get_train_args(get_train_args, *args, **kwargs):
        model_args, data_args, training_args, finetuning_args, generating_args = get_train_args(*args, **kwargs)
        if finetuning_args.finetuning_type == "prefix":
            check_prefix_tuning_limits(model_args, data_args, finetuning_args)
        choose_checkpoint(training_args, finetuning_args, parser.logger)
        check_training_folders(model_args, training_args, finetuning_args)
        if finetuning_args.finetuning_type in OUR_TYPES:
            check_output_dir(data_args, training_args)  # last: it takes the lock when training
            training_args.label_names = training_args.label_names or ["labels"]
            if training_args.ddp_find_unused_parameters is None:
                training_args.ddp_find_unused_parameters = False  # every adapter weight is used in every step
        return model_args, data_args, training_args, finetuning_args, generating_args


def _read_keys_as_written(parser, name: str) -> None:
    """Check the keys as the user wrote them (an export folder's adapter added), then parse; the parsed
    FinetuningArguments keep ``given_keys``."""

    @wraps_original(parser, name)
    def parse_checked(parse, args=None):
        args = serve_export(normalize_finetuning_type(parser.read_args(args)), parser.logger)
        args = expand_output_paths(args)
        given = given_values(args)
        check_method_keys(given)
        parsed = parse(args)
        for arguments in parsed:
            if hasattr(arguments, "finetuning_type"):
                arguments.given_keys = frozenset(given)
        return parsed
