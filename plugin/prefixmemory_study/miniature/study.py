"""prefixmemory-miniature: the paper's few-shot comparison (section 6.1) in miniature, on a real pretrained model.

    prefixmemory-smollm2                                     # once: the real model, models/smollm2-135m-instruct
    prefixmemory-miniature all --jobs 2                      # sweep, run, mechanism, report: 88 min on 2 CPU cores

``sweep`` picks each trained method's learning rate on the ``topic`` task's validation split (seed 0, round 1);
``run`` trains every method on every task, round and seed with the same budget and scores the held-out test split;
``mechanism`` grows the ``emotion`` task's input and measures accuracy and the prefix's share (section 4);
``report`` writes the table and the plots. Every result is one JSON line in ``<runs-dir>``, written as soon as it
is known: a stopped study continues where it stopped. ``--jobs N`` runs each step in N one-thread processes that
take the next unclaimed job as they become free; ``--shard i/n`` gives a process every n-th job (for several machines
sharing one runs folder).

Rounds are the paper's growing data: round k trains on k examples of every class (round 1's examples are part of
round 3's, as in the paper's incremental rounds). ``icl`` puts the same examples before each test question as
earlier chat turns; ``zero-shot`` is the base model as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import loop, report
from .methods import LEARNING_RATE_GRID, METHODS, method
from .tasks import TASKS

DEFAULT_MODEL = "models/smollm2-135m-instruct"
TEMPLATE = "smollm2"
RESULTS = "results.jsonl"
SWEEP = "sweep.jsonl"
MECHANISM = "mechanism.jsonl"
MECHANISM_TASK, MECHANISM_ROUND = "emotion", 3
MECHANISM_METHODS = ("pmt-elu", "prefix", "lora")
FILLERS = (0, 2, 4, 8, 16, 32)  # training uses 4 (the task's default)


class Study:
    """The model, tokenizer and template, loaded once; runs append their records to ``runs_dir``."""

    def __init__(self, args):
        from transformers import AutoTokenizer

        self.args = args
        self.model_dir = args.model
        self.tokenizer = AutoTokenizer.from_pretrained(args.model)
        self.template = loop.load_template(self.tokenizer, TEMPLATE)
        self.budget = loop.Budget(args.steps, args.batch_size)
        self.runs_dir = Path(args.runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> set[str]:
        path = self.runs_dir / name
        return {json.loads(line)["key"] for line in path.read_text().splitlines()} if path.is_file() else set()

    def record(self, name: str, entry: dict) -> None:
        with open(self.runs_dir / name, "a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def one_run(self, task_name: str, method_name: str, round_: int, seed: int, lr: float | None, split="test"):
        """Train (if the method trains) and score one configuration; returns (record, model)."""
        task, chosen = TASKS[task_name], method(method_name)
        examples = task.rows("train", round_, seed)
        held_out = task.rows(split, task.test_per_class, 0)  # one held-out set for every seed and method
        model = loop.build_model(self.model_dir, chosen, seed)
        started, losses = time.time(), []
        if chosen.trains:
            encoded = [loop.encode(self.template, self.tokenizer, row) for row in examples]
            losses = loop.train(model, encoded, lr, self.budget, seed, self.tokenizer.pad_token_id)
        trained = time.time()
        history = examples if chosen.kind == "icl" else ()
        scores = loop.evaluate(model, self.tokenizer, self.template, held_out, task.labels, history)
        entry = {
            "task": task_name, "method": method_name, "round": round_, "seed": seed, "lr": lr, "split": split,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "train_s": round(trained - started, 1), "eval_s": round(time.time() - trained, 1), **scores,
        }  # fmt: skip
        return entry, model


def _mine(study: Study, index: int, key: str) -> bool:
    """Whether this process does job ``index``: its shard's (every n-th), and with ``--claims`` the first to claim it
    (so ``--jobs`` processes share the work as each becomes free, whatever each job costs)."""
    if index % study.args.shard[1] != study.args.shard[0]:
        return False
    if not study.args.claims:
        return True
    claim = Path(study.args.claims) / key.replace("|", "_").replace("/", "_")
    claim.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def sweep(study: Study) -> None:
    done = study.done(SWEEP)
    jobs = [(name, lr) for name, grid in LEARNING_RATE_GRID.items() if name in study.args.methods for lr in grid]
    for index, (name, lr) in enumerate(jobs):
        key = f"{name}|{lr}"
        if key in done or not _mine(study, index, key):
            continue
        entry, _ = study.one_run("topic", name, 1, 0, lr, split="validation")
        study.record(SWEEP, {"key": key, **entry})
        print(
            f"sweep {name} lr={lr:g}: validation {entry['accuracy']:.1f}%  loss {entry['last_loss']:.3f}", flush=True
        )


def chosen_learning_rates(runs_dir: Path, methods) -> dict[str, float]:
    """Per method, the rate with the best validation accuracy (ties: the lower final training loss)."""
    path = runs_dir / SWEEP
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    best = {}
    for name in (m for m in LEARNING_RATE_GRID if m in methods):
        tried = [e for e in entries if e["method"] == name]
        if len(tried) < len(LEARNING_RATE_GRID[name]):
            raise ValueError(f"the sweep of {name} is not finished in {runs_dir / SWEEP}: run `sweep` first.")
        best[name] = max(tried, key=lambda e: (e["accuracy"], -e["last_loss"]))["lr"]
    return best


def run(study: Study) -> None:
    rates, done = chosen_learning_rates(study.runs_dir, study.args.methods), study.done(RESULTS)
    jobs = [
        (task, name, round_, seed)
        for task in study.args.tasks
        for round_ in study.args.rounds
        for seed in range(study.args.seeds)
        for name in study.args.methods
        if not (name == "zero-shot" and (round_, seed) != (study.args.rounds[0], 0))  # it sees no examples
    ]
    for index, (task, name, round_, seed) in enumerate(jobs):
        key = f"{task}|{name}|{round_}|{seed}"
        if key in done or not _mine(study, index, key):
            continue
        entry, model = study.one_run(task, name, round_, seed, rates.get(name))
        if task == MECHANISM_TASK and round_ == MECHANISM_ROUND and name in MECHANISM_METHODS:
            model.save_pretrained(study.runs_dir / "adapters" / f"{name}-seed{seed}")
        study.record(RESULTS, {"key": key, **entry})
        print(f"{key}: {entry['accuracy']:.1f}% (train {entry['train_s']} s, eval {entry['eval_s']} s)", flush=True)


def mechanism(study: Study) -> None:
    from ..diagnostics import probes
    from .mechanism import measure

    task, done = TASKS[MECHANISM_TASK], study.done(MECHANISM)
    if MECHANISM_TASK not in study.args.tasks or MECHANISM_ROUND not in study.args.rounds:
        print(f"mechanism: skipped (it reads the adapters of {MECHANISM_TASK}, round {MECHANISM_ROUND})", flush=True)
        return
    names = [name for name in MECHANISM_METHODS if name in study.args.methods]
    jobs = [(name, seed) for name in names for seed in range(study.args.seeds)]
    for index, (name, seed) in enumerate(jobs):
        adapter = study.runs_dir / "adapters" / f"{name}-seed{seed}"
        if f"{name}|{seed}" in done or not _mine(study, index, f"mechanism|{name}|{seed}"):
            continue
        if not adapter.is_dir():
            raise ValueError(f"{adapter} is missing: `run` saves it ({MECHANISM_TASK}, round {MECHANISM_ROUND}).")
        for entry in measure(study, task, name, adapter, FILLERS, probes):
            study.record(MECHANISM, {"key": f"{name}|{seed}", "seed": seed, **entry})
        print(f"mechanism {name} seed {seed}: done", flush=True)


def in_parallel(args, argv: list[str]) -> None:
    """Each step of the command in ``args.jobs`` processes of one thread each, one step after another; a worker
    takes the next job no other has claimed."""
    base = [a for i, a in enumerate(argv) if a not in ("--jobs", args.command) and argv[i - 1 : i] != ["--jobs"]]
    claims = Path(args.runs_dir) / ".claims"
    for step in ("sweep", "run", "mechanism") if args.command == "all" else (args.command,):
        shutil.rmtree(claims, ignore_errors=True)  # no worker runs now: claims of a stopped study are stale
        command = [sys.executable, "-m", __spec__.name, step, *base, "--claims", str(claims), "--threads", "1"]
        workers = [subprocess.Popen(command) for _ in range(args.jobs)]
        failed = [worker.wait() for worker in workers]
        shutil.rmtree(claims, ignore_errors=True)
        if any(failed):
            raise SystemExit(f"`{step}` failed in one of its {args.jobs} processes; run it again to continue.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["sweep", "run", "mechanism", "report", "all"])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a transformers folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--runs-dir", default="saves/miniature", help="results as JSON lines, and the adapters")
    parser.add_argument("--output-dir", default="docs/real_model", help="where `report` writes its table and plots")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--rounds", nargs="+", type=int, default=[1, 3], help="examples per class (default: 1 3)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=loop.Budget.steps)
    parser.add_argument("--batch-size", type=int, default=loop.Budget.batch_size)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--shard", default="0/1", help="i/n: this process does every n-th job from the i-th")
    parser.add_argument("--jobs", type=int, default=1, help="processes per step, one thread each (default: 1)")
    parser.add_argument("--claims", help=argparse.SUPPRESS)  # set by --jobs: the folder where workers claim jobs
    args = parser.parse_args(argv)
    try:
        index, count = (int(part) for part in args.shard.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        parser.error(f"`--shard` must be i/n with 0 <= i < n; got {args.shard!r}.")
    args.shard = (index, count)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.jobs > 1 and args.command != "report":
        in_parallel(args, list(argv if argv is not None else sys.argv[1:]))
    elif args.command != "report":
        study = Study(args)
        steps = {"sweep": (sweep,), "run": (run,), "mechanism": (mechanism,), "all": (sweep, run, mechanism)}
        for step in steps[args.command]:
            step(study)
    if args.command in ("report", "all"):
        report.write(Path(args.runs_dir), Path(args.output_dir), args)


if __name__ == "__main__":
    main()
