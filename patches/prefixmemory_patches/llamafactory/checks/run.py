"""The checks a run gets before its model loads: the adapter it reads, the base model's geometry, the checkpoint
it resumes, the folders it writes, and what cannot serve our adapters. Called from bends/hparams_parser.py."""

from __future__ import annotations

from ...errors import PrefixMemoryError
from .. import OUR_TYPES, PMT, needs_reference
from ..options import PMT_KEYS
from .adapter_files import pmt_disagreements, read_adapter_config
from .checkpoints import check_resumable
from .folders import check_writes_apart
from .geometry import check_model_fits, read_model_config, size_warning

ADAPTER_PEFT_TYPES = {"prefixmemory": "PREFIXMEMORY", "prefix": "PREFIX_TUNING"}


def check_adapter(path: str, finetuning_args) -> dict:
    """The adapter in `adapter_name_or_path` is whole, of our type, and agrees with the `pmt_*` keys given."""
    method = finetuning_args.finetuning_type
    adapter_config = read_adapter_config(path)
    peft_type = adapter_config.get("peft_type")
    if peft_type != ADAPTER_PEFT_TYPES[method]:
        raise PrefixMemoryError(f"`adapter_name_or_path` {path} holds a {peft_type} adapter, not a {method} one.")
    given = [key for key in PMT_KEYS if key in getattr(finetuning_args, "given_keys", ())]
    if method == PMT and (found := pmt_disagreements(finetuning_args.peft_config, adapter_config, given)):
        raise PrefixMemoryError(
            f"`adapter_name_or_path` {path} was trained with other values: {'; '.join(found)} (arguments vs "
            "adapter); drop these keys to use the adapter's, or train a new adapter."
        )
    return adapter_config


def check_foreign_adapter(paths, method: str) -> None:
    """A PrefixMemory or prefix-tuning adapter given with another `finetuning_type` would be trained as ours."""
    for path in paths or ():
        try:
            peft_type = read_adapter_config(path).get("peft_type")
        except ValueError:
            continue  # not a local adapter folder: upstream's loader reports it
        ours = {value: name for name, value in ADAPTER_PEFT_TYPES.items()}.get(peft_type)
        if ours is not None:
            raise PrefixMemoryError(
                f"`adapter_name_or_path` {path} holds a {peft_type} adapter but `finetuning_type` is {method}; "
                f"set `finetuning_type: {ours}`."
            )


def check_geometry(model_args, finetuning_args, adapter_config: dict | None, logger) -> None:
    """Architecture and `pmt_layers` against config.json; warn about an adapter larger than the attention."""
    if finetuning_args.finetuning_type != PMT:
        return
    model_config = read_model_config(model_args.model_name_or_path)
    if model_config is None:
        return
    if adapter_config is None:
        layers = finetuning_args.peft_config.layers
        check_model_fits(model_config, layers, model_args.model_name_or_path, "`pmt_layers`")
        warning = size_warning(model_config, finetuning_args.peft_config)
        if warning:
            logger.warning_rank0(warning)
    else:
        layers = adapter_config.get("layers")
        source = f"`adapter_name_or_path` {model_args.adapter_name_or_path[0]} adapts layers"
        check_model_fits(model_config, layers, model_args.model_name_or_path, source)


def check_training_folders(model_args, training_args, finetuning_args) -> None:
    """`output_dir` apart from the inputs; a resumed checkpoint complete and made with the same `pmt_*` values."""
    reads = {"model_name_or_path": [model_args.model_name_or_path]}
    reads["adapter_name_or_path"] = list(model_args.adapter_name_or_path or [])
    check_writes_apart("output_dir", training_args.output_dir, reads)
    checkpoint = training_args.resume_from_checkpoint
    if finetuning_args.finetuning_type not in OUR_TYPES or not isinstance(checkpoint, str):
        return
    explicit = "resume_from_checkpoint" in getattr(finetuning_args, "given_keys", ())
    if explicit:
        check_resumable(checkpoint)
    if finetuning_args.finetuning_type == PMT:
        key = "resume_from_checkpoint" if explicit else "output_dir"
        adapter_config = read_adapter_config(checkpoint, key)
        found = pmt_disagreements(finetuning_args.peft_config, adapter_config, PMT_KEYS)
        if found:
            where = f"`{key}` {checkpoint}" if explicit else f"`output_dir` holds {checkpoint} (auto-resumed), which"
            raise PrefixMemoryError(
                f"{where} was trained with other values: {'; '.join(found)} (arguments vs checkpoint); resume "
                "with the checkpoint's values, or set a new `output_dir` (or `overwrite_output_dir: true`)."
            )


def check_serving(model_args, method: str) -> None:
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


def check_prefix_tuning_limits(model_args, data_args, finetuning_args) -> None:
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
