"""The study's table (mean and spread over seeds per method, task and round) and its plots, from the JSON lines."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from .methods import LEARNING_RATE_GRID, METHODS

TABLE = "results.md"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: list[float]) -> str:
    if not values:
        return "—"
    mean, spread = mean_spread(values)
    return f"{mean:.1f} ± {spread:.1f}" if len(values) > 1 else f"{mean:.1f}"


def accuracy_table(results: list[dict]) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in results))
    rounds = sorted({r["round"] for r in results if r["method"] != "zero-shot"})
    columns = [(task, round_) for task in tasks for round_ in rounds]
    header = "| method | trainable | lr | " + " | ".join(f"{t} r{k}" for t, k in columns) + " | mean |"
    lines = [header, "|" + " --- |" * 3 + " ---: |" * (len(columns) + 1)]
    for name, spec in METHODS.items():
        mine = [r for r in results if r["method"] == name]
        if not mine:
            continue
        cells, means = [], []
        for task, round_ in columns:
            values = [
                r["accuracy"] for r in mine if r["task"] == task and (r["round"] == round_ or name == "zero-shot")
            ]
            cells.append(_cell(values))
            means += [mean_spread(values)[0]] if values else []
        trainable = f"{mine[0]['trainable']:,}" if spec.trains else "0"
        lr = f"{mine[0]['lr']:g}" if spec.trains else ""
        overall = f"{statistics.fmean(means):.1f}" if means else "—"
        lines.append(f"| {spec.label} | {trainable} | {lr} | " + " | ".join(cells) + f" | {overall} |")
    return "\n".join(lines)


def sweep_table(sweep: list[dict]) -> str:
    lines = [
        "| method | " + " | ".join(["lr", "validation accuracy", "last training loss"]) + " |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in LEARNING_RATE_GRID:
        for entry in sorted((e for e in sweep if e["method"] == name), key=lambda e: e["lr"]):
            lines.append(
                f"| {METHODS[name].label} | {entry['lr']:g} | {entry['accuracy']:.1f} | {entry['last_loss']:.3f} |"
            )
    return "\n".join(lines)


def mechanism_table(entries: list[dict]) -> str:
    counts = sorted({e["fillers"] for e in entries})
    lines = ["| method | " + " | ".join(f"{c} fillers" for c in counts) + " |", "|---|" + "---:|" * len(counts)]
    tokens = [statistics.fmean(e["tokens"] for e in entries if e["fillers"] == c) for c in counts]
    lines.append("| prompt tokens | " + " | ".join(f"{t:.0f}" for t in tokens) + " |")
    for name in dict.fromkeys(e["method"] for e in entries):
        accuracy = [
            _cell([e["accuracy"] for e in entries if e["method"] == name and e["fillers"] == c]) for c in counts
        ]
        lines.append(f"| {METHODS[name].label}: accuracy | " + " | ".join(accuracy) + " |")
        shares = [[e["share"] for e in entries if e["method"] == name and e["fillers"] == c and e["share"] is not None]
                  for c in counts]  # fmt: skip
        if any(shares):
            lines.append(
                f"| {METHODS[name].label}: share | " + " | ".join(_cell([100 * s for s in v]) for v in shares) + " |"
            )
    return "\n".join(lines)


def plot_accuracy(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    rounds = sorted({r["round"] for r in results})
    for axis, task in zip(axes[0], tasks, strict=True):
        for name, spec in METHODS.items():
            points = []
            for round_ in rounds:
                values = [r["accuracy"] for r in results if r["task"] == task and r["method"] == name
                          and (r["round"] == round_ or name == "zero-shot")]  # fmt: skip
                if values:
                    points.append((round_, *mean_spread(values)))
            if points:
                x, mean, spread = zip(*points, strict=True)
                axis.errorbar(x, mean, yerr=spread, marker="o", capsize=3, label=spec.label,
                              linestyle="--" if not spec.trains else "-")  # fmt: skip
        axis.set_title(task)
        axis.set_xlabel("training examples per class")
        axis.set_xticks(rounds)
        axis.set_ylim(-2, 102)
    axes[0][0].set_ylabel("test accuracy (%), mean ± sd over seeds")
    axes[0][-1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_mechanism(entries: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in dict.fromkeys(e["method"] for e in entries):
        counts = sorted({e["fillers"] for e in entries if e["method"] == name})
        mine = [[e for e in entries if e["method"] == name and e["fillers"] == c] for c in counts]
        tokens = [statistics.fmean(e["tokens"] for e in group) for group in mine]
        accuracy = [mean_spread([e["accuracy"] for e in group]) for group in mine]
        left.errorbar(tokens, [a[0] for a in accuracy], yerr=[a[1] for a in accuracy], marker="o", capsize=3,
                      label=METHODS[name].label)  # fmt: skip
        if mine[0][0]["share"] is not None:
            share = [mean_spread([100 * e["share"] for e in group]) for group in mine]
            right.errorbar(tokens, [s[0] for s in share], yerr=[s[1] for s in share], marker="o", capsize=3,
                           label=METHODS[name].label)  # fmt: skip
    left.set(xlabel="prompt tokens", ylabel="test accuracy (%)", title="accuracy as the input grows", ylim=(-2, 102))
    right.set(xlabel="prompt tokens", ylabel="share (%)", title="prefix share: alpha (prefix), |phi(q)M|/|o| (PMT)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(runs_dir: Path, output_dir: Path, args) -> None:
    """results.md, accuracy.png, mechanism.png and copies of the JSON lines in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    results, sweep, mechanism = (_read(runs_dir / n) for n in ("results.jsonl", "sweep.jsonl", "mechanism.jsonl"))
    sections = [
        f"Model: `{args.model}`; budget: {args.steps} steps of batch {args.batch_size} for every trained method."
    ]
    if sweep:
        sections += ["## Learning-rate sweep (topic, validation split, seed 0, round 1)", sweep_table(sweep)]
    if results:
        sections += ["## Test accuracy (%), mean ± sd over seeds; rK = K training examples per class",
                     accuracy_table(results)]  # fmt: skip
        plot_accuracy(results, output_dir / "accuracy.png")
    if mechanism:
        sections += [
            "## Growing input (emotion task, round 3): accuracy (%) and share (%)",
            mechanism_table(mechanism),
        ]
        plot_mechanism(mechanism, output_dir / "mechanism.png")
    (output_dir / TABLE).write_text("\n\n".join(sections) + "\n")
    for name in ("results.jsonl", "sweep.jsonl", "mechanism.jsonl"):
        if (runs_dir / name).is_file() and (runs_dir / name).resolve() != (output_dir / name).resolve():
            shutil.copy(runs_dir / name, output_dir / name)
    print((output_dir / TABLE).read_text())
