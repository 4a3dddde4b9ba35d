"""A 4-bit bitsandbytes base (QLoRA's setting) across two CPU processes, as LLaMA-Factory allows it for LoRA.

DDP, DeepSpeed ZeRO-3 and FSDP train exactly what one process trains, with the tolerances of test_dist_equivalence.py:
the frozen 4-bit layers dequantize the same way in every process (LLaMA-Factory stores them in the compute dtype
under ZeRO-3, `bnb_4bit_quant_storage`), so only the order of the gradient sums differs.
"""

import os
from pathlib import Path

import pytest
from distrun import HERE, REPO, assert_same_training, finish, free_port, launcher_env, start, write_config
from test_dist_fsdp import cpu_variant

pytest.importorskip("bitsandbytes")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "zero3"])
def test_4bit_base_matches_single_process(engine, runs):
    run = runs.distributed(engine, "sft", "4bit", quantization_bit=4)
    assert_same_training(run, runs.single("sft", "4bit", quantization_bit=4))


@pytest.mark.slow
def test_fsdp_with_a_4bit_base_matches_single_process(runs):
    """FSDP + QLoRA's setting through LLaMA-Factory's accelerate route (the CPU variant of recipes/accelerate)."""
    name = "fsdp_sft_4bit"
    workdir = runs.workdir(name)
    accelerate_config = cpu_variant(REPO / "recipes" / "accelerate" / "fsdp_config.yaml", workdir)
    config = runs.config(name, "sft", quantization_bit=4)
    path = write_config(config, workdir, name)
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    argv = ["accelerate", "launch", "--config_file", str(accelerate_config), "--main_process_port", str(free_port())]
    finish(start([*argv, "-m", "cpu_fsdp", str(path)], launcher_env(PYTHONPATH=pythonpath), workdir), name)
    assert_same_training(Path(config["output_dir"]), runs.single("sft", "4bit", quantization_bit=4))
