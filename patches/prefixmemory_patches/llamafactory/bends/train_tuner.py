"""Bends ``llamafactory.train.tuner``: export.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| train.tuner.export_model | prefixmemory, prefix: base + adapter + README | neither can be merged into weights |
| (same) | prefixmemory: + memories and config entries vLLM reads | ``vllm serve`` on the folder |
| (same) | written aside, moved in whole; replaces only our export, when asked | a failure left half a folder |
| (same) | `quantization_bit` refused in one line: the export's base is full precision | as upstream refuses a merge |
| train.tuner._training_function | our runs hold `output_dir` (a lock) while they train | two runs wrote one folder |

Upstream export merges LoRA into the weights and aborts on anything that is not a PreTrainedModel. Our export
instead writes a self-contained folder: the base model (in the export dtype) with its tokenizer at the top, the
adapter in ``prefixmemory_adapter/`` (or ``prefix_adapter/``), and a README saying how to load both. A prefixmemory
export of a Qwen2/Qwen3/LLaMA/Mistral model is also made servable by vLLM with the serving package's converter
(``prefixmemory_vllm.convert``: json and safetensors only, no vLLM), so that the folder format is defined once,
beside the vLLM plugin that reads it. The folder is written aside and moved into place once complete
(``checks/outputs.py``), so a failed export leaves nothing behind and an earlier one as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import PrefixMemoryError
from ...seams import Seam, bends
from .. import ADAPTER_SUBFOLDERS, OUR_TYPES, wraps_original
from ..checks.folders import check_writes_apart
from ..checks.outputs import claiming, staged_export

WHY_NOT_MERGED = {
    "prefixmemory": "PrefixMemory-Tuning adds phi(q) @ M to every adapted attention head. phi is non-linear, so "
    "the memory cannot\nbe merged into the base weights",
    "prefix": "Prefix-tuning adds trainable key/value vectors to every attention layer. They are not weights, so "
    "they cannot\nbe merged into the base weights",
}

LOADING_NOTE = """\
# {method} export

{why}: this folder holds the base model (top level) and the adapter (`{adapter}/`).
Load both to reproduce the fine-tuned model:

```python
import prefixmemory  # registers the PEFT method
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{export_dir}")
model = PeftModel.from_pretrained(base, "{export_dir}/{adapter}")
tokenizer = AutoTokenizer.from_pretrained("{export_dir}")
```

With LLaMA-Factory: `model_name_or_path: {export_dir}`, `adapter_name_or_path: {export_dir}/{adapter}`,
`finetuning_type: {method}`, `infer_backend: huggingface`.
{serving}
"""

SERVING_NOTES = {
    True: "With vLLM (the `prefixmemory_vllm` plugin installed, see the project's docs/serving.md): "
    "`vllm serve {export_dir}`.",
    False: "vLLM and SGLang cannot serve this adapter.",
}


@bends(
    Seam("export_model", params=("args",)),
    Seam("get_infer_args", params=("args",)),
    Seam("load_tokenizer", params=("model_args",)),
    Seam("get_template_and_fix_tokenizer", params=("tokenizer", "data_args")),
    Seam("load_model", params=("tokenizer", "model_args", "finetuning_args")),
    Seam("logger"),
    Seam("_training_function", params=("config",)),
)
def patch_tuner(tuner) -> None:
    @wraps_original(tuner, "export_model")
    def patched_export_model(export_model, args=None):
        model_args, data_args, finetuning_args, _ = tuner.get_infer_args(args)
        if finetuning_args.finetuning_type not in OUR_TYPES:
            return export_model(args)
        return export_unmerged(tuner, model_args, data_args, finetuning_args)

    @wraps_original(tuner, "_training_function")
    def training_function_holding_output_dir(training_function, config):
        with claiming():  # parsing elsewhere (web UI, recipe checks) locks nothing
            return training_function(config)


def export_unmerged(tuner, model_args, data_args, finetuning_args) -> None:
    """Write base model + tokenizer + adapter + README to ``export_dir``, whole or not at all; refuses to write into
    the inputs, or over files that are not an earlier export of ours."""
    method = finetuning_args.finetuning_type
    if model_args.adapter_name_or_path is None:
        raise PrefixMemoryError(f"`adapter_name_or_path` is required to export a {method} model.")
    export_dir = _checked_export_dir(model_args)
    with staged_export(export_dir, method) as staging:
        _write_export(tuner, model_args, data_args, finetuning_args, staging, export_dir)
    adapter_folder = ADAPTER_SUBFOLDERS[method]
    tuner.logger.info_rank0(
        f"Exported base model and {adapter_folder} to {export_dir} (not merged: see {export_dir}/README.md)."
    )


def _write_export(tuner, model_args, data_args, finetuning_args, staging: str, export_dir: str) -> None:
    """Base model + tokenizer + adapter + README into ``staging``; the README names ``export_dir``, where it goes."""
    import torch

    method = finetuning_args.finetuning_type
    tokenizer_module = tuner.load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    tuner.get_template_and_fix_tokenizer(tokenizer, data_args)
    model = tuner.load_model(tokenizer, model_args, finetuning_args)

    dtype = model_args.infer_dtype
    dtype = model.config.dtype if dtype == "auto" else getattr(torch, dtype)
    adapter_folder = ADAPTER_SUBFOLDERS[method]
    model.save_pretrained(os.path.join(staging, adapter_folder))  # adapter weights stay in fp32
    base = model.get_base_model() if model.active_peft_config.is_prompt_learning else model.unload()
    base.config.dtype = dtype
    base.to(dtype).save_pretrained(staging, max_shard_size=f"{model_args.export_size}GB")
    tokenizer.save_pretrained(staging)
    if tokenizer_module["processor"] is not None:
        tokenizer_module["processor"].save_pretrained(staging)
    servable = method == "prefixmemory" and _make_vllm_ready(staging, tuner.logger)
    note = LOADING_NOTE.format(
        method=method,
        why=WHY_NOT_MERGED[method],
        export_dir=export_dir,
        adapter=adapter_folder,
        serving=SERVING_NOTES[servable].format(export_dir=export_dir),
    )
    Path(staging, "README.md").write_text(note)


def _make_vllm_ready(export_dir: str, logger) -> bool:
    """Add what vLLM needs when the plugin supports the architecture; False (and a log line) when it does not."""
    import json

    from prefixmemory_vllm import ARCHITECTURES
    from prefixmemory_vllm.convert import make_vllm_ready

    architectures = json.loads(Path(export_dir, "config.json").read_text()).get("architectures") or []
    if not set(architectures) & set(ARCHITECTURES):
        logger.info_rank0(
            f"vLLM serving supports {', '.join(ARCHITECTURES)}; {architectures} serves with transformers."
        )
        return False
    make_vllm_ready(export_dir)
    return True


def _checked_export_dir(model_args) -> str:
    if model_args.export_dir is None:
        raise PrefixMemoryError("Please specify `export_dir` to save model.")
    if model_args.export_quantization_bit is not None:
        raise PrefixMemoryError("`export_quantization_bit` is not supported for prefixmemory or prefix exports.")
    if model_args.quantization_bit is not None:
        raise PrefixMemoryError(
            f"`quantization_bit: {model_args.quantization_bit}` cannot be exported: the export holds the "
            "full-precision base and the adapter (LLaMA-Factory refuses a LoRA merge into a quantized base too); drop "
            "it here and give it when serving the export."
        )
    if model_args.export_hub_model_id is not None:
        raise PrefixMemoryError("`export_hub_model_id` is not supported for these exports; push the folder yourself.")
    reads = {"model_name_or_path": [model_args.model_name_or_path]}
    reads["adapter_name_or_path"] = list(model_args.adapter_name_or_path or [])
    check_writes_apart("export_dir", model_args.export_dir, reads, replaces=True)
    return os.path.abspath(model_args.export_dir)
