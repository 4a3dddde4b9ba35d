"""The checks a run gets before its model loads: the adapter it reads, the base model's geometry, the checkpoint
it resumes, the folders it writes, and what cannot serve our adapters. Called from bends/hparams_parser.py."""

from __future__ import annotations

from ...errors import PrefixMemoryError
from .. import OUR_TYPES, PMT, needs_reference
from ..options import PMT_KEYS
from .adapter_files import (
    ADAPTER_PEFT_TYPES,
    AdapterFiles,
    check_adapter_type,
    check_finite,
    export_adapter,
    pmt_disagreements,
    read_adapter,
    read_adapter_config,
    saved_config,
)
from .checkpoints import check_resumable, check_state_files
from .folders import check_writes_apart
from .geometry import (
    check_adapter_fits,
    check_adapter_size,
    check_model_fits,
    check_recorded_model,
    read_model_config,
    size_warning,
)
from .given_keys import given_values


def check_adapter(path: str, finetuning_args) -> AdapterFiles:
    """The adapter in `adapter_name_or_path` is whole, of our type, valid, finite, and agrees with the `pmt_*` keys
    given."""
    method, key = finetuning_args.finetuning_type, "adapter_name_or_path"
    adapter = read_adapter(path)
    check_adapter_type(adapter, method, key)
    given = [key for key in PMT_KEYS if key in getattr(finetuning_args, "given_keys", ())]
    if method == PMT:
        saved_config(adapter, key)
        if found := pmt_disagreements(finetuning_args.peft_config, adapter.config, given):
            raise PrefixMemoryError(
                f"`adapter_name_or_path` {path} was trained with other values: {'; '.join(found)} (arguments vs "
                "adapter); drop these keys to use the adapter's, or train a new adapter."
            )
    check_finite(adapter, key)
    return adapter


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


def check_geometry(model_args, finetuning_args, adapter: AdapterFiles | None, logger) -> None:
    """Architecture and `pmt_layers` against config.json, or the adapter's tensors; refuse an adapter larger than the
    model, warn about one larger than the attention."""
    if finetuning_args.finetuning_type != PMT:
        return
    model_path = model_args.model_name_or_path
    model_config = read_model_config(model_path)
    if model_config is None:
        return
    if adapter is None:
        check_model_fits(model_config, finetuning_args.peft_config.layers, model_path, "`pmt_layers`")
        check_adapter_size(model_config, finetuning_args.peft_config, model_path)
        warning = size_warning(model_config, finetuning_args.peft_config)
        if warning:
            logger.warning_rank0(warning)
    else:
        _check_fits(model_config, model_path, adapter, "adapter_name_or_path")


def _check_fits(model_config: dict, model_path: str, adapter: AdapterFiles, key: str) -> None:
    """The adapter's layers and (from its safetensors header) its tensors against the model's config.json."""
    where = f"`{key}` {adapter.path}"
    check_model_fits(model_config, adapter.config.get("layers"), model_path, f"{where} adapts layers")
    check_recorded_model(model_config, adapter.config, model_path, where)
    if adapter.header is not None:
        check_adapter_fits(model_config, saved_config(adapter, key), adapter.header, model_path, where)


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
    key = "resume_from_checkpoint" if explicit else "output_dir"
    adapter = read_adapter(checkpoint, key)
    check_adapter_type(adapter, finetuning_args.finetuning_type, key)
    check_state_files(checkpoint, key)
    if finetuning_args.finetuning_type == PMT:
        saved_config(adapter, key)
        found = pmt_disagreements(finetuning_args.peft_config, adapter.config, PMT_KEYS)
        if found:
            where = f"`{key}` {checkpoint}" if explicit else f"`output_dir` holds {checkpoint} (auto-resumed), which"
            raise PrefixMemoryError(
                f"{where} was trained with other values: {'; '.join(found)} (arguments vs checkpoint); resume "
                "with the checkpoint's values, or set a new `output_dir` (or `overwrite_output_dir: true`)."
            )
        model_config = read_model_config(model_args.model_name_or_path)
        if model_config is not None:
            _check_fits(model_config, model_args.model_name_or_path, adapter, key)
    check_finite(adapter, key)


def serve_export(args, logger):
    """The arguments, with an export folder given as `model_name_or_path` (and no `adapter_name_or_path`) read as
    what it is, base model + adapter: its prefixmemory_adapter/ (or prefix_adapter/) is loaded with it, so chat, api,
    webchat, predict and a second export serve the memories instead of the bare base model."""
    given = given_values(args)
    model, chosen = given.get("model_name_or_path"), given.get("finetuning_type")
    found = export_adapter(model) if model and not given.get("adapter_name_or_path") else None
    if found is None:
        return args
    method, folder = found
    if chosen in OUR_TYPES and chosen != method:
        raise PrefixMemoryError(
            f"`model_name_or_path` {model} is a {method} export ({folder}) but `finetuning_type` is {chosen}; set "
            f"`finetuning_type: {method}` or leave it out."
        )
    if chosen not in (None, method):
        logger.warning_rank0(
            f"`model_name_or_path` {model} is a {method} export: with `finetuning_type: {chosen}` its adapter "
            f"{folder} is not loaded and the bare base model runs; leave `finetuning_type` out to load it."
        )
        return args
    added = {"finetuning_type": method}
    if str(given.get("infer_backend", "huggingface")).lower() == "huggingface":  # vLLM serves the folder itself
        added["adapter_name_or_path"] = folder
        logger.info_rank0(f"`model_name_or_path` {model} is a {method} export: loading its adapter {folder}.")
    if isinstance(args, dict):
        return {**args, **added}
    return [*args, *(item for key, value in added.items() for item in (f"--{key}", value))]


def check_serving(model_args, method: str) -> None:
    """What cannot load our adapters: vLLM / SGLang. vLLM serves a PrefixMemory export."""
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
