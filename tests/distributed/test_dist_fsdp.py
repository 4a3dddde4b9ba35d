"""FSDP (1 and 2) through LLaMA-Factory's accelerate route, with the configs in recipes/accelerate/, on CPU processes.

The command is the documented one (``accelerate launch --config_file <config> -m llamafactory.launcher <yaml>``)
except for ``-m cpu_fsdp``, which opens accelerate's GPU-only FSDP gate and then runs llamafactory.launcher (see
cpu_fsdp.py). The shipped configs are used with the changes CPU processes need: ``use_cpu``, no mixed precision,
and, for FSDP1 only, no ``sync_module_states`` / ``cpu_ram_efficient_loading`` (accelerate builds FSDP1's
parameter initialisation for an accelerator device only). FSDP2 keeps ``cpu_ram_efficient_loading``: rank 1 loads
zeros and receives rank 0's weights. Untested here, as they need GPUs: bf16 and FSDP1's rank-0 loading.
"""

import os
from pathlib import Path

import pytest
import torch.distributed.tensor  # noqa: F401  FSDP2 saves DTensors: torch.load needs them registered
import yaml
from distrun import (
    HERE,
    MEMORY_KEYS,
    REPO,
    STEPS,
    assert_same_training,
    finish,
    free_port,
    launcher_env,
    start,
    write_config,
)

CPU_CHANGES = {"use_cpu": True, "mixed_precision": "no", "num_processes": 2}
CPU_FSDP_CHANGES = {"fsdp_sync_module_states": False, "fsdp_cpu_ram_efficient_loading": False}


def cpu_variant(recipe: Path, folder: Path) -> Path:
    config = yaml.safe_load(recipe.read_text())
    config.update(CPU_CHANGES)
    config["fsdp_config"].update({k: v for k, v in CPU_FSDP_CHANGES.items() if k in config["fsdp_config"]})
    path = folder / f"cpu_{recipe.name}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("recipe", ["fsdp_config.yaml", pytest.param("fsdp2_config.yaml", marks=pytest.mark.slow)])
def test_fsdp_trains_like_one_process_and_saves_the_adapter(recipe, runs):
    name = f"fsdp_{Path(recipe).stem}_sft"
    workdir = runs.workdir(name)
    accelerate_config = cpu_variant(REPO / "recipes" / "accelerate" / recipe, workdir)
    config = runs.config(name, "sft")
    path = write_config(config, workdir, name)
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    argv = ["accelerate", "launch", "--config_file", str(accelerate_config), "--main_process_port", str(free_port())]
    command = [*argv, "-m", "cpu_fsdp", str(path), "deepspeed=null"]  # as documented: recipes name a DeepSpeed file
    finish(start(command, launcher_env(PYTHONPATH=pythonpath), workdir), name)

    out = Path(config["output_dir"])
    assert_same_training(out, runs.single("sft"))  # the adapter: full tensors, gathered from the FSDP shards
    # Files only the Trainer's FSDP path writes (plain DDP would write optimizer.pt): FSDP really ran, and its
    # model checkpoint holds the memories alone.
    checkpoint = out / f"checkpoint-{STEPS}"
    assert (checkpoint / "optimizer.bin").is_file() and not (checkpoint / "optimizer.pt").exists()
    fsdp_state = torch.load(checkpoint / "pytorch_model_fsdp.bin", weights_only=True)
    assert sorted(fsdp_state) == MEMORY_KEYS
