"""Every recipe, with its own settings and nothing overridden, parses into LLaMA-Factory's argument classes."""

import json
import os
import socket
import subprocess
import sys

import pytest
from recipe_helpers import RECIPES, REPO, config

HELPER = REPO / "tests" / "recipes" / "parse_recipes.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict[str, dict]:
    """All recipes parsed in one subprocess, launched the way FORCE_TORCHRUN=1 launches one worker."""
    out = tmp_path_factory.mktemp("parsed") / "parsed.json"
    torchrun = {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
    torchrun |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    env = {**os.environ, **torchrun, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    paths = [str(path.relative_to(REPO)) for path in RECIPES]
    result = subprocess.run(
        [sys.executable, str(HELPER), str(out), *paths], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("path", RECIPES, ids=[path.name for path in RECIPES])
def test_recipe_parses(path, parsed):
    args = parsed[str(path.relative_to(REPO))]
    assert "error" not in args, args.get("error")
    recipe = config(path)
    suffix = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
    method = {"pmt": "prefixmemory", "pmt4bit": "prefixmemory", "loraplus": "lora"}.get(suffix, suffix)
    assert (args["finetuning_type"], args["stage"], args["dataset"]) == (method, recipe["stage"], [recipe["dataset"]])
    assert args["deepspeed"] == recipe.get("deepspeed")
    assert args["loraplus_lr_ratio"] == (16.0 if suffix == "loraplus" else None)
    assert args["zero3"] == ("ds_z3" in str(recipe.get("deepspeed")))
    assert args["quantization"] == ([4, "bnb", "nf4"] if suffix == "pmt4bit" else [None, "bnb", "nf4"])
    # DPO keeps a reference (the model with its adapter off); SimPO has none.
    assert args["use_ref_model"] == (recipe["stage"] == "dpo" and recipe.get("pref_loss") == "sigmoid")
    if recipe.get("bf16"):
        assert args["compute_dtype"] == "torch.bfloat16"
    if not path.name.startswith("demo_"):  # appendix C's optimizer reached the TrainingArguments as written
        assert args["optim"] == "adamw_torch"
        assert (args["adam_betas"], args["weight_decay"], args["lr_scheduler_type"]) == ([0.9, 0.95], 0.1, "constant")
