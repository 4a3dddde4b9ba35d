"""Fixtures for the multi-process runs: a tiny model, toy data and a cache of single- and multi-process runs.

Equivalence is checked at a fixed global batch: one process with ``per_device_train_batch_size: 2`` against two
processes with 1 each, same seed, shuffling on (LLaMA-Factory's default). The Trainer's sampler draws one
permutation of the data set from the seed, and accelerate deals consecutive per-device batches to the ranks in
turn, so step s sees the same two rows in both runs (checked: the losses agree to 1e-7 with shuffling on and off).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from distrun import DEEPSPEED, GLOBAL_BATCH, SAVE_EVERY, STEPS, single_train, torchrun_train

from prefixmemory_study.toydata import toy_train_config

STAGES = {
    "sft": dict(stage="sft", dataset="toy_sft"),
    "dpo": dict(stage="dpo", dataset="toy_pref", pref_beta=0.1, pref_loss="sigmoid"),
}


class Runs:
    """Builds configs and runs each (engine, stage, variant) once per session; tests share the results."""

    def __init__(self, root: Path, model: Path, data: Path):
        self.root, self.model, self.data = root, model, data
        self._done: dict[str, Path] = {}

    def config(self, name: str, stage: str = "sft", world_size: int = 2, **overrides) -> dict:
        return toy_train_config(
            self.model,
            self.data,
            self.root / name,
            per_device_train_batch_size=GLOBAL_BATCH // world_size,
            max_steps=STEPS,
            save_steps=SAVE_EVERY,
            **{**STAGES[stage], **overrides},
        )

    def single(self, stage: str = "sft", variant: str = "", **overrides) -> Path:
        """One process, per-device batch 2: the reference every distributed run is compared with."""
        name = "_".join(filter(None, ["single", stage, variant]))
        if name not in self._done:
            config = self.config(name, stage, world_size=1, **overrides)
            single_train(config, self.workdir(name))
            self._done[name] = Path(config["output_dir"])
        return self._done[name]

    def distributed(self, engine: str, stage: str = "sft", variant: str = "", **overrides) -> Path:
        """Two processes through FORCE_TORCHRUN=1; engine is ddp or a recipes/deepspeed config."""
        name = "_".join(filter(None, [engine, stage, variant]))
        if name not in self._done:
            config = self.config(name, stage, **overrides)
            # The DeepSpeed config as docs/distributed.md writes it: a key=value override after the recipe.
            deepspeed = [] if engine == "ddp" else [f"deepspeed={DEEPSPEED[engine]}"]
            torchrun_train(config, self.workdir(name), *deepspeed)
            self._done[name] = Path(config["output_dir"])
        return self._done[name]

    def workdir(self, name: str) -> Path:
        folder = self.root / f"{name}_cwd"
        folder.mkdir(exist_ok=True)
        return folder


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_qwen2, toy_data) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"), tiny_qwen2, toy_data)
