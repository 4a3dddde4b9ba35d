"""Every recipe runs through the real ``llamafactory-cli train <recipe> key=value ...``, in miniature.

Only what makes it small changes: a tiny model of the same architecture family, the ``_sample`` twin of the
dataset, 2 steps, no DeepSpeed file (the CI machine has one process), a short cutoff and a temporary output folder.
A machine without a GPU also gets use_cpu=true, which is how transformers accepts the recipes' bf16 on a CPU.
The Full and LoRA+ twins differ from the LoRA ones only in their method block, the 4-bit twins from the PMT ones only
in their quantization keys, output folder and accumulation (test_recipe_files.py), so one task per model family runs
the first two here and one preference recipe the third (a bitsandbytes 4-bit base on the CPU); the other tasks would
add run time and check nothing new.
"""

import json
import os
import subprocess

import pytest
import torch
from lfcli import failure_report
from recipe_helpers import ARCHITECTURE, RECIPES, REPO, config, shipped

TWINS_RUN = ("_fewshot_bbh_full.yaml", "_fewshot_bbh_loraplus.yaml", "qwen2.5_dpo_pmt4bit.yaml")
RUN = [path for path in RECIPES if not path.name.endswith(("_full.yaml", "_loraplus.yaml", "_pmt4bit.yaml")) or
       path.name.endswith(TWINS_RUN)]  # fmt: skip
PEFT_TYPE = {"pmt": "PREFIXMEMORY", "pmt4bit": "PREFIXMEMORY", "lora": "LORA", "loraplus": "LORA",
             "prefix": "PREFIX_TUNING"}  # fmt: skip
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def sample_twin(dataset: str) -> str:
    return dataset if dataset.endswith("_sample") or shipped(dataset) else f"{dataset}_sample"  # demos: small already


def _slow(name: str) -> bool:
    """Runs the slow suite keeps: a 4-bit base in bf16 on a CPU (the DPO twin took 259 s on the shared 2-core
    machine), and the baseline twins whose stage, model family and template a kept run already covers (the LoRA and
    prefix twins of the dbpedia and goemotions few-shot tasks beside bbh's; LoRA for CFT and SimPO beside SFT and
    DPO): each differs from a kept run in its dataset or stage only, and runs none of PrefixMemory's code."""
    redundant_task = "_fewshot_" in name and not name.endswith("_pmt.yaml") and "_bbh_" not in name
    redundant_stage = name in ("qwen2.5_math_cft_lora.yaml", "qwen2.5_simpo_lora.yaml")
    return name.endswith("_pmt4bit.yaml") or redundant_task or redundant_stage


RUN_PARAMS = [pytest.param(path, marks=[pytest.mark.slow] if _slow(path.name) else [], id=path.name) for path in RUN]


@pytest.mark.parametrize("path", RUN_PARAMS)
def test_recipe_runs_in_miniature(path, tiny_models, tmp_path):
    recipe = config(path)
    out = tmp_path / "out"
    overrides = [
        f"model_name_or_path={tiny_models[ARCHITECTURE[recipe['model_name_or_path']]]}",
        f"dataset={sample_twin(recipe['dataset'])}",
        "max_steps=2",
        "deepspeed=null",
        "cutoff_len=256",
        f"output_dir={out}",
    ]
    if recipe.get("bf16") and not torch.cuda.is_available():
        overrides.append("use_cpu=true")
    result = subprocess.run(
        ["llamafactory-cli", "train", str(path.relative_to(REPO)), *overrides],
        cwd=REPO,  # so that dataset_dir: data resolves, as for a user
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, failure_report(path.name, result)

    method = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
    if method == "full":  # the whole model is saved, no adapter
        assert not (out / "adapter_config.json").exists()
        assert (out / "model.safetensors").stat().st_size > 0
    else:
        assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == PEFT_TYPE[method]
        assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
