"""Two nodes x one process on one machine, over loopback, with LLaMA-Factory's multi-node variables."""

from pathlib import Path

import pytest
from distrun import (
    DEEPSPEED,
    RELAUNCHES,
    assert_same_training,
    died_after_saving,
    finish,
    free_port,
    launcher_env,
    start,
    write_config,
)
from lfcli import failure_report


@pytest.mark.parametrize("engine", ["zero3", pytest.param("ddp", marks=pytest.mark.slow)])
def test_two_nodes_train_and_save_like_one_process(engine, runs):
    """NNODES=2, NODE_RANK=0/1, MASTER_ADDR/MASTER_PORT: each node runs its own llamafactory-cli, as on a cluster.

    Both "nodes" share this machine, so their torchrun agents and workers tear down side by side over loopback. Now
    and then the second node's worker aborts there ("terminate called without an active exception") after the job
    has trained and saved, while the first node finishes cleanly. Such a job is launched again, at most RELAUNCHES
    times; any other failure fails the test at once. The workers run with Python's fault handler on, so an abort
    that survives the relaunches shows where each thread was.
    """
    name = f"two_nodes_{engine}_sft"
    output_dir, results = two_node_job(runs, name, engine)
    for attempt in range(1, RELAUNCHES + 1):
        if not died_after_saving(output_dir, results):
            break
        output_dir, results = two_node_job(runs, f"{name}_relaunch{attempt}", engine)
    for rank, result in enumerate(results):
        assert result.returncode == 0, failure_report(f"node {rank}", result)
    assert "Multi-node training enabled: num nodes: 2, node rank: 0" in results[0].stdout + results[0].stderr
    for rank, result in enumerate(results):  # one job of two processes, one on each "node"
        assert f"Process rank: {rank}, world size: 2" in result.stdout + result.stderr
    assert_same_training(output_dir, runs.single("sft"))


def two_node_job(runs, name: str, engine: str):
    """Start both nodes' ``llamafactory-cli train`` at once; (output_dir, their completed processes)."""
    config = runs.config(name, "sft")
    workdir = runs.workdir(name)
    path = write_config(config, workdir, name)
    cluster = dict(
        FORCE_TORCHRUN=1,
        NNODES=2,
        NPROC_PER_NODE=1,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=free_port(),
        PYTHONFAULTHANDLER=1,
    )
    argv = ["llamafactory-cli", "train", str(path)]
    if engine != "ddp":
        argv.append(f"deepspeed={DEEPSPEED[engine]}")  # as in the two-node example of docs/distributed.md
    nodes = [start(argv, launcher_env(NODE_RANK=rank, **cluster), workdir) for rank in (0, 1)]
    return Path(config["output_dir"]), [finish(node, f"node {rank}", check=False) for rank, node in enumerate(nodes)]
