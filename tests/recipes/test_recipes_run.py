"""Every recipe runs through the real ``llamafactory-cli train <recipe> key=value ...``, in miniature.

Only what makes it small changes: a tiny model of the same architecture family, the ``_sample`` twin of the
dataset, 2 steps, no DeepSpeed file (the CI machine has one process), a short cutoff and a temporary output folder.
A machine without a GPU also gets use_cpu=true, which is how transformers accepts the recipes' bf16 on a CPU.
"""

import json
import os
import subprocess

import pytest
import torch
from lfcli import failure_report
from recipe_helpers import ARCHITECTURE, RECIPES, REPO, config

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def sample_twin(dataset: str) -> str:
    return dataset if dataset.endswith("_sample") else f"{dataset}_sample"  # the demo trains on a sample already


@pytest.mark.parametrize("path", RECIPES, ids=[path.name for path in RECIPES])
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

    adapter = json.loads((out / "adapter_config.json").read_text())
    method = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
    assert adapter["peft_type"] == {"pmt": "PREFIXMEMORY", "lora": "LORA", "prefix": "PREFIX_TUNING"}[method]
    assert (out / "adapter_model.safetensors").stat().st_size > 0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
