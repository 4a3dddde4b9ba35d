"""``USE_RAY=1 llamafactory-cli train``: two Ray workers train exactly what one process trains.

The run goes through LLaMA-Factory's own Ray launcher, with one gate opened for CPU-only clusters (cpu_ray.py:
LLaMA-Factory asks for ten times the cluster's CPUs there and would wait forever). Ray lives in a venv over the
default environment (venvs.overlay_python): installed in the environment itself, LLaMA-Factory would import it on
every ``llamafactory-cli train``. Same global batch, seed and tolerances as the torchrun engines
(test_dist_equivalence.py).
"""

import subprocess
from pathlib import Path

from distrun import assert_same_training, ray_train
from venvs import overlay_python, versions

RAY = "ray==2.60.0"
WORKERS = 2
# Logical CPUs: LLaMA-Factory's placement group holds 10 per worker, whatever the machine has.
RAY_INIT = {"num_cpus": 10 * WORKERS, "include_dashboard": False}


def node_address(python) -> str:
    """The address Ray gives this machine's node. LLaMA-Factory looks the head node up through Ray's state API,
    which needs the dashboard (ray[default]); given `master_addr`, it checks that against ray.nodes() instead."""
    code = "import ray; print(ray.util.get_node_ip_address())"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_sft_on_ray_workers_matches_single_process(runs):
    python = overlay_python([RAY])
    assert versions(python, ["ray"]) == {"ray": RAY.split("==")[1]}
    name = "ray_sft"
    ray_args = dict(ray_num_workers=WORKERS, ray_init_kwargs=RAY_INIT, master_addr=node_address(python))
    config = runs.config(name, "sft", world_size=WORKERS, **ray_args)
    result = ray_train(python, config, runs.workdir(name))
    assert f"Using ray.remote mode with {WORKERS} workers" in result.stdout + result.stderr
    assert_same_training(Path(config["output_dir"]), runs.single("sft"))
