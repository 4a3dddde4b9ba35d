"""The few-shot study's outputs (section 6.1): the summary over rounds, Table 1 in Markdown, the Pareto plots, the
growing-data plots.

Input: the ``evaluations`` of fewshot_results.json, one row per (model, method, task, round, checkpoint) with IID
and OOD scores. Table 1 reports, per round, the last checkpoint (the highest step), averaged over the rounds.
The Pareto plots (Figure 4, appendix A.2) put every checkpoint on IID accuracy (x) vs OOD accuracy (y). The
growing-data plots (Figures 5, 8, 9) put the last checkpoint of each ``growing`` run (rounds 1..k combined) on
training examples (x) vs IID accuracy (y); those runs stay out of Table 1.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ..diagnostics.metrics import pareto_front
from ..diagnostics.plots import HEADER_INCHES, color, header, plt

METHOD_ORDER = ("PMT", "Full", "LoRA", "LoRA+", "Prefix")  # Table 1's columns; others follow, ICL last
TASK_NAMES = {"goemotions": "GoEmotions", "dbpedia": "DBpedia", "bbh_date": "BigBench"}  # Table 1's rows, in order


def _order(values, preferred) -> list:
    preferred = list(preferred)
    return sorted(set(values), key=lambda v: (v == "ICL", preferred.index(v) if v in preferred else len(preferred), v))


def step_order(step: int | None) -> float:
    return float("inf") if step is None else step  # a final save of unknown step is the last


def split_protocols(evaluations: list[dict]) -> tuple[list[dict], list[dict]]:
    """(single-round rows, growing-data rows); rows written before the growing protocol existed are single-round."""
    growing = [row for row in evaluations if row.get("protocol") == "growing"]
    return [row for row in evaluations if row.get("protocol") != "growing"], growing


def final_rows(evaluations: list[dict]) -> list[dict]:
    """Per (model, method, task, round), the evaluation of the last checkpoint (ICL: its only row)."""
    last: dict[tuple, dict] = {}
    for row in evaluations:
        key = (row["model"], row["method"], row["task"], row["round"])
        if key not in last or step_order(row["step"]) > step_order(last[key]["step"]):
            last[key] = row
    return list(last.values())


def summarize(evaluations: list[dict]) -> list[dict]:
    """Mean and standard deviation over rounds of the final checkpoints' IID and OOD accuracy (single rounds)."""
    groups = defaultdict(list)
    for row in final_rows(split_protocols(evaluations)[0]):
        groups[(row["model"], row["method"], row["task"])].append(row)
    summary = []
    for (model, method, task), rows in sorted(groups.items()):
        entry = {"model": model, "method": method, "task": task, "rounds": sorted(r["round"] for r in rows)}
        for split in ("iid", "ood"):
            values = [r[split]["accuracy"] for r in rows if r.get(split)]
            entry[f"{split}_mean"] = statistics.fmean(values) if values else None
            entry[f"{split}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def markdown_table(summary: list[dict], split: str = "iid") -> str:
    """Table 1's layout: one row per dataset, one column group per model, one column per method; best in bold."""
    models = sorted({s["model"] for s in summary})
    methods = {m: _order([s["method"] for s in summary if s["model"] == m], METHOD_ORDER) for m in models}
    tasks = _order([s["task"] for s in summary], TASK_NAMES)
    cells = {(s["model"], s["method"], s["task"]): s for s in summary}
    first = "Dataset" if split == "iid" else "Trained on"
    header = [first] + [f"{model}: {method}" if k == 0 else method for model in models for k, method in
                        enumerate(methods[model])]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        row = [TASK_NAMES.get(task, task)]
        for model in models:
            values = {m: cells.get((model, m, task), {}).get(f"{split}_mean") for m in methods[model]}
            best = max((v for v in values.values() if v is not None), default=None)
            for method in methods[model]:
                entry, value = cells.get((model, method, task)), values[method]
                if value is None:
                    row.append("–")
                    continue
                text = f"{value:.1f}" + (f" ± {entry[f'{split}_std']:.1f}" if len(entry["rounds"]) > 1 else "")
                row.append(f"**{text}**" if value == best else text)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_tables(summary: list[dict], path: str | Path) -> Path:
    rounds = sorted({len(s["rounds"]) for s in summary})
    text = (
        "### IID accuracy (%), the layout of the paper's Table 1\n\n"
        + markdown_table(summary, "iid")
        + "\n\n### OOD accuracy (%) on Banking77, same checkpoints\n\n"
        + markdown_table(summary, "ood")
        + f"\n\nMean ± standard deviation over {', '.join(map(str, rounds))} round(s), last checkpoint of each round;"
        " best per dataset and model in bold. ICL: the round's examples as in-context demonstrations, no training.\n"
    )
    Path(path).write_text(text)
    return Path(path)


def _mean_points(rows: list[dict]) -> list[tuple[int | None, float, float]]:
    """(step, mean IID, mean OOD) per step over the rounds, by increasing step."""
    by_step = defaultdict(list)
    for row in rows:
        by_step[row["step"]].append(row)
    return [
        (
            step,
            statistics.fmean(r["iid"]["accuracy"] for r in group),
            statistics.fmean(r["ood"]["accuracy"] for r in group),
        )
        for step, group in sorted(by_step.items(), key=lambda item: step_order(item[0]))
    ]


def plot_pareto(evaluations: list[dict], task: str, path: str | Path) -> Path:
    """IID vs OOD accuracy of every checkpoint, one panel per model (Figure 4 for BigBench, Figures 6-7 otherwise)."""
    rows = [row for row in evaluations if row["task"] == task and row.get("iid") and row.get("ood")]
    models = sorted({row["model"] for row in rows})
    height = 4.8
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.5, 5.6 * len(models)), height), squeeze=False)
    name = TASK_NAMES.get(task, task)
    header(fig, f"{name} (IID) vs Banking77 (OOD), every checkpoint",
           "up and right is better | dots: single rounds | discs: mean over rounds, faint = early | dashed: Pareto "
           "front")  # fmt: skip
    for ax, model in zip(axes[0], models, strict=True):
        model_rows = [row for row in rows if row["model"] == model]
        means = []
        for order, method in enumerate(_order([row["method"] for row in model_rows], METHOD_ORDER)):
            size = 140 / (1 + order) ** 1.2  # later methods smaller and on top: coinciding points stay visible
            method_rows = [row for row in model_rows if row["method"] == method]
            col = color(method)
            ax.scatter([r["iid"]["accuracy"] for r in method_rows], [r["ood"]["accuracy"] for r in method_rows],
                       s=10, color=col, alpha=0.3, linewidths=0)  # fmt: skip
            points = _mean_points(method_rows)
            means += [(x, y) for _step, x, y in points]
            if method == "ICL":
                ax.scatter([p[1] for p in points], [p[2] for p in points], marker="*", s=220, color=col, label="ICL",
                           edgecolors="white", zorder=20, clip_on=False)  # fmt: skip
                continue
            ax.plot([p[1] for p in points], [p[2] for p in points], "-", color=col, alpha=0.35, linewidth=1)
            shades = [0.3 + 0.7 * (k + 1) / len(points) for k in range(len(points))]
            for (_step, x, y), alpha in zip(points, shades, strict=True):
                ax.scatter(
                    [x], [y], s=size, color=col, alpha=alpha, edgecolors="white", zorder=3 + order, clip_on=False
                )
            step, x, y = points[-1]
            ax.annotate(f"step {step}" if step else "final", (x, y), textcoords="offset points", xytext=(5, 4),
                        fontsize=7, color=col)  # fmt: skip
            ax.scatter([], [], s=size, color=col, label=method)
        front = pareto_front(means)
        if len(front) > 1:
            ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="#888888", linewidth=1, zorder=1)
        top_x, top_y = (max(max(values), 1.0) for values in zip(*[(r["iid"]["accuracy"], r["ood"]["accuracy"])
                                                                   for r in model_rows], strict=True))  # fmt: skip
        ax.set(xlim=(0, min(100, top_x * 1.15 + 1)), ylim=(0, min(100, top_y * 1.15 + 1)))  # accuracies start at 0
        ax.set(title=model, xlabel=f"IID accuracy on {name} (%)", ylabel="OOD accuracy on Banking77 (%)")
    return _save(fig, axes[0], height, path)


def plot_growth(evaluations: list[dict], task: str, path: str | Path) -> Path:
    """IID accuracy vs training examples of the growing-data runs, one line per method, one panel per model."""
    rows = [row for row in final_rows(evaluations) if row["task"] == task and row.get("iid")]
    models = sorted({row["model"] for row in rows})
    height = 4.4
    fig, axes = plt.subplots(1, len(models), figsize=(max(7.0, 5.2 * len(models)), height), squeeze=False)
    name = TASK_NAMES.get(task, task)
    header(fig, f"{name}: accuracy as the training data grows", "run k trains on rounds 1..k combined | last "
           "checkpoint of each run | up is better")  # fmt: skip
    for ax, model in zip(axes[0], models, strict=True):
        for method in _order([row["method"] for row in rows if row["model"] == model], METHOD_ORDER):
            points = sorted((row["train_examples"] or row["round"], row["iid"]["accuracy"]) for row in rows
                            if row["model"] == model and row["method"] == method)  # fmt: skip
            ax.plot([x for x, _ in points], [y for _, y in points], "o-", color=color(method), label=method)
        unit = "training examples" if all(row["train_examples"] for row in rows) else "rounds combined"
        ax.set(title=model, xlabel=f"{unit}", ylabel=f"IID accuracy on {name} (%)", ylim=(0, 100))
    return _save(fig, axes[0], height, path)


def _save(fig, axes, height: float, path: str | Path) -> Path:
    """The study's panel style on every axis, the header kept clear, the figure written to ``path``."""
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - HEADER_INCHES / height))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return Path(path)
