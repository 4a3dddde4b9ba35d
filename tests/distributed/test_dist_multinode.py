"""Two nodes x one process on one machine, over loopback, with LLaMA-Factory's multi-node variables."""

from pathlib import Path

import pytest
from distrun import DEEPSPEED, assert_same_training, finish, free_port, launcher_env, start, write_config


@pytest.mark.parametrize("engine", ["zero3", pytest.param("ddp", marks=pytest.mark.slow)])
def test_two_nodes_train_and_save_like_one_process(engine, runs):
    """NNODES=2, NODE_RANK=0/1, MASTER_ADDR/MASTER_PORT: each node runs its own llamafactory-cli, as on a cluster."""
    name = f"two_nodes_{engine}_sft"
    config = runs.config(name, "sft")
    workdir = runs.workdir(name)
    path = write_config(config, workdir, name)
    cluster = dict(FORCE_TORCHRUN=1, NNODES=2, NPROC_PER_NODE=1, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port())
    argv = ["llamafactory-cli", "train", str(path)]
    if engine != "ddp":
        argv.append(f"deepspeed={DEEPSPEED[engine]}")  # as in the README's two-node example
    nodes = [start(argv, launcher_env(NODE_RANK=rank, **cluster), workdir) for rank in (0, 1)]
    results = [finish(node, f"node {rank}") for rank, node in enumerate(nodes)]
    assert "Multi-node training enabled: num nodes: 2, node rank: 0" in results[0].stdout + results[0].stderr
    for rank, result in enumerate(results):  # one job of two processes, one on each "node"
        assert f"Process rank: {rank}, world size: 2" in result.stdout + result.stderr
    assert_same_training(Path(config["output_dir"]), runs.single("sft"))
