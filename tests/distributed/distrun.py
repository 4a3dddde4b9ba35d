"""Launch the unmodified llamafactory-cli across CPU processes (torchrun, DeepSpeed, accelerate) and read the runs.

Every distributed run here goes through LLaMA-Factory's own launcher: ``FORCE_TORCHRUN=1 NPROC_PER_NODE=N
llamafactory-cli train <yaml>`` (which runs torchrun) or ``accelerate launch``. On a machine without GPUs
transformers/accelerate pick the gloo backend for DDP, and DeepSpeed's CPU accelerator falls back to gloo when
oneCCL is absent, so nothing here selects a backend.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from lfcli import OFFLINE_ENV, failure_report
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEEPSPEED = {
    "zero2": REPO / "recipes" / "deepspeed" / "ds_z2_config.json",
    "zero3": REPO / "recipes" / "deepspeed" / "ds_z3_config.json",
    "zero3_offload": REPO / "recipes" / "deepspeed" / "ds_z3_offload_config.json",
}
TIMEOUT = 900
STEPS = 6  # per run; checkpoints every SAVE_EVERY steps
SAVE_EVERY = 2
GLOBAL_BATCH = 2
# tiny qwen2: 4 query heads, head_dim 16; M and its bias in each of the 2 layers
MEMORY_SHAPES = {
    f"base_model.model.model.layers.{i}.self_attn.q_proj.prefixmemory_memory.{part}": shape
    for i in range(2)
    for part, shape in (("weight", (4, 16, 16)), ("bias", (4, 1, 16)))
}
MEMORY_KEYS = sorted(MEMORY_SHAPES)
MEMORY_NUMEL = sum(math.prod(shape) for shape in MEMORY_SHAPES.values())
RTOL = {"loss": 1e-5}  # relative, per logged value; the rest (grad_norm, rewards): RTOL_OTHER
RTOL_OTHER = 1e-4  # tolerances: see test_dist_equivalence.py
ATOL_MEMORY = 1e-5
RELAUNCHES = 2  # of a job that died in teardown after saving its end (died_after_saving)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(config: dict, workdir: Path, name: str) -> Path:
    path = Path(workdir) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launcher_env(**extra: str) -> dict:
    env = {**os.environ, **OFFLINE_ENV}
    env.pop("FORCE_TORCHRUN", None)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def start(argv: list[str], env: dict, workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, what: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        raise AssertionError(failure_report(f"{what} (timed out after {TIMEOUT}s)", result)) from None
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(failure_report(what, result))
    return result


def single_train(config: dict, workdir: Path):
    """``llamafactory-cli train <yaml>`` in one process, with one thread as torchrun gives each of its workers."""
    path = write_config(config, workdir, Path(config["output_dir"]).name)
    process = start(["llamafactory-cli", "train", str(path)], launcher_env(OMP_NUM_THREADS=1), workdir)
    return finish(process, f"single process {path.name}")


def torchrun_train(config: dict, workdir: Path, *overrides: str, nproc: int = 2, check: bool = True, **env: str):
    """``FORCE_TORCHRUN=1 NPROC_PER_NODE=nproc llamafactory-cli train <yaml> key=value...``; env vars as keywords.

    With ``check``, a job whose worker died by a signal after the job saved its end is launched again (at most
    RELAUNCHES times, see ``died_after_saving``); any other failure fails at once.
    """
    path = write_config(config, workdir, Path(config["output_dir"]).name)
    what = f"torchrun x{nproc} {path.name}"
    env = launcher_env(FORCE_TORCHRUN=1, NPROC_PER_NODE=nproc, MASTER_ADDR="127.0.0.1", PYTHONFAULTHANDLER=1, **env)
    fixed_port = "MASTER_PORT" in env
    for _ in range(RELAUNCHES + 1):
        env["MASTER_PORT"] = env["MASTER_PORT"] if fixed_port else str(free_port())
        result = finish(start(["llamafactory-cli", "train", str(path), *overrides], env, workdir), what, check=False)
        if not (check and died_after_saving(Path(config["output_dir"]), [result])):
            break
    if check and result.returncode != 0:
        raise AssertionError(failure_report(what, result))
    return result


def died_after_saving(output_dir: Path, results: list[subprocess.CompletedProcess]) -> bool:
    """Some worker was killed by a signal (torchrun reports a negative exit code), yet the job saved its end.

    Jobs of gloo processes on one machine now and then abort in teardown ("terminate called without an active
    exception", SIGABRT) after the final save: the run itself is complete, its exit code is not.
    """
    signalled = [re.search(r"exitcode\s*: -\d+", result.stderr) for result in results if result.returncode != 0]
    saved = (output_dir / "adapter_model.safetensors").exists() and (output_dir / "trainer_state.json").exists()
    return bool(signalled) and all(signalled) and saved and len(history(output_dir)) == STEPS


def history(output_dir: Path) -> list[dict]:
    """The Trainer's per-step log rows (loss, grad_norm, ...), from trainer_state.json."""
    state = json.loads((Path(output_dir) / "trainer_state.json").read_text())
    return [row for row in state["log_history"] if "loss" in row]


def adapter(folder: Path) -> dict:
    return load_file(Path(folder) / "adapter_model.safetensors")


def assert_same_training(run: Path, reference: Path, keys=("loss", "grad_norm")) -> None:
    """Same per-step values and same full-size saved memories as ``reference``."""
    got, want = history(run), history(reference)
    assert len(got) == len(want) == STEPS
    for key in keys:
        rel = RTOL.get(key, RTOL_OTHER)
        assert [row[key] for row in got] == pytest.approx([row[key] for row in want], rel=rel), key
    assert_same_memories(adapter(run), adapter(reference))


def assert_same_memories(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want) == MEMORY_KEYS
    for key in MEMORY_KEYS:
        assert tuple(got[key].shape) == MEMORY_SHAPES[key], f"{key}: {tuple(got[key].shape)} is not the full memory"
        assert want[key].abs().max() > 0.05  # trained well away from zero: the comparison means something
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=ATOL_MEMORY, msg=key)


def ray_train(python, config: dict, workdir: Path):
    """``USE_RAY=1 llamafactory-cli train <yaml>`` (through cpu_ray.py), run by ``python``, an environment with Ray."""
    path = write_config(config, workdir, Path(config["output_dir"]).name)
    pythonpath = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    # Ray gives each worker OMP_NUM_THREADS = its CPUs (10) unless set; torchrun gives 1, as here.
    env = launcher_env(USE_RAY=1, OMP_NUM_THREADS=1, PYTHONPATH=pythonpath, RAY_USAGE_STATS_ENABLED=0)
    process = start([str(python), "-m", "cpu_ray", "train", str(path)], env, workdir)
    return finish(process, f"ray x{config['ray_num_workers']} {path.name}")
