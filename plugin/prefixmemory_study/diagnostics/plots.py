"""The PNG figures: one function per diagnostic, one colour per method everywhere.

Each figure's title says what to look for; its subtitle says what it was computed on (model, data, layer).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on machines with a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

COLORS = {
    "PMT": "#d1495b",
    "Prefix": "#00798c",
    "LoRA": "#edae49",
    "LoRA+": "#b5651d",
    "Full": "#66a182",
    "ICL": "#2e4057",
    "Base": "#6c6c6c",
}
LINESTYLES = ("-", "--", ":", "-.")


def color(kind: str) -> str:
    return COLORS.get(kind, "#7b5ea7")


HEADER_INCHES = 0.75  # room above the axes for the title and the subtitle


def header(fig, title: str, subtitle: str) -> None:
    height = fig.get_figheight()
    fig.text(0.01, 1 - 0.12 / height, title, fontsize=13, fontweight="bold", ha="left", va="top")
    fig.text(0.01, 1 - 0.42 / height, subtitle, fontsize=9, color="#555555", ha="left", va="top")


def _figure(ncols: int, title: str, subtitle: str, width: float = 5.2, height: float = 4.2):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    header(fig, title, subtitle)
    for ax in axes[0]:
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(True, color="#e6e6e6", linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, axes[0]


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0, 1, 1 - HEADER_INCHES / fig.get_figheight()))
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _styles(entries: list[dict]) -> list[tuple[str, str]]:
    """(colour, linestyle) per entry: the method's colour; a new line style for each repeat of a method."""
    seen: dict[str, int] = {}
    styles = []
    for entry in entries:
        count = seen[entry["kind"]] = seen.get(entry["kind"], -1) + 1
        styles.append((color(entry["kind"]), LINESTYLES[count % len(LINESTYLES)]))
    return styles


def plot_spectrum(entries: list[dict], path, subtitle: str) -> Path:
    """entries: {name, kind, eigenvalues, share} per adapter; eigenvalue decay and cumulative variance share."""
    fig, (left, right) = _figure(
        2, "Spectrum of the attention-output bias: slower decay = more directions used", subtitle
    )
    for entry, (col, ls) in zip(entries, _styles(entries), strict=True):
        ranks = range(1, len(entry["eigenvalues"]) + 1)
        left.plot(ranks, entry["eigenvalues"], ls, color=col, marker="o", markersize=3, label=entry["name"])
        right.plot(
            ranks,
            entry["cumulative_share"],
            ls,
            color=col,
            label=f"{entry['name']} (eff. rank {entry['effective_rank']:.1f})",
        )
    left.set(yscale="log", xlabel="principal component", ylabel="eigenvalue of cov(F_tuned - F_base)")
    right.set(xlabel="number of principal components", ylabel="share of the bias variance", ylim=(0, 1.02))
    left.legend(frameon=False)
    right.legend(frameon=False, loc="lower right")
    return _save(fig, path)


def plot_cka(entries: list[dict], layer: int, path, subtitle: str) -> Path:
    """entries: {name, kind, cka (at layer), per_layer}; a Table 9 bar chart and CKA across depth."""
    fig, (left, right) = _figure(2, "CKA with the base model: lower = representations moved further", subtitle)
    names = [entry["name"] for entry in entries][::-1]
    values = [entry["cka"] for entry in entries][::-1]
    bars = left.barh(names, values, color=[color(entry["kind"]) for entry in entries][::-1], height=0.6)
    for bar, value in zip(bars, values, strict=True):
        left.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.4f}", va="center", fontsize=9)
    low = min(values)
    left.set(xlim=(max(0.0, low - (1 - low) * 0.6 - 0.02), 1.0), xlabel=f"linear CKA at decoder layer {layer}")
    left.grid(axis="y", visible=False)
    for entry, (col, ls) in zip(entries, _styles(entries), strict=True):
        right.plot(
            range(len(entry["per_layer"])),
            entry["per_layer"],
            ls,
            color=col,
            marker="o",
            markersize=3,
            label=entry["name"],
        )
    right.axvline(layer, color="#999999", linewidth=0.8)
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.set(xlabel="decoder layer", ylabel="linear CKA with the base model")
    right.legend(frameon=False)
    return _save(fig, path)


def plot_tradeoff(entries: list[dict], path, subtitle: str) -> Path:
    """entries: {name, kind, quantity, lengths, values[, prefix_length]}; both quantities on one log-log axis."""
    title = "Does the prefix's share fall as the input grows? (section 4.2)"
    fig, (ax,) = _figure(1, title, subtitle, width=8.0, height=4.8)
    for entry, (col, ls) in zip(entries, _styles(entries), strict=True):
        if entry["quantity"] == "alpha":
            label = f"{entry['name']}: alpha_i, attention mass on the prefix"
        else:
            label = f"{entry['name']}: ||phi(q_i) M|| / ||attention output_i||"
        if entry.get("prefix_length"):
            p = entry["prefix_length"]
            reference = [p / (p + n) for n in entry["lengths"]]
            ax.plot(entry["lengths"], reference, "--", color="#9a9a9a", linewidth=1.2,
                    label=f"p / (p + n), p={p}: alpha if every key scored alike")  # fmt: skip
        ax.plot(entry["lengths"], entry["values"], ls, color=col, linewidth=2.2, label=label)
    ax.set(xscale="log", yscale="log", xlabel="input length n (tokens the query attends to)", ylabel="prefix share")
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def plot_attention(rows: list[dict], path, subtitle: str) -> Path:
    """rows: {example, tokens, maps: [(name, kind, (T,T) list, change)]}: one row per example, base then tuned.

    ``change`` is the mean total-variation distance of each query's row from the base model's (None for the base).
    """
    ncols = max(len(row["maps"]) for row in rows)
    height = 3.6 * len(rows) + HEADER_INCHES
    fig, axes = plt.subplots(len(rows), ncols, figsize=(3.4 * ncols + 0.6, height), squeeze=False)
    header(fig, "Last-layer attention, mean over heads: does tuning move where the model looks?", subtitle)
    image = None
    for r, row in enumerate(rows):
        tokens = row["tokens"]
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(row["maps"]):
                ax.axis("off")
                continue
            name, kind, weights, change = row["maps"][c]
            image = ax.imshow(weights, cmap="magma", norm=PowerNorm(0.5, vmin=0, vmax=1), interpolation="nearest")
            note = "" if change is None else f"  (TV from base {change:.3f})"
            ax.set_title(f"{row['example']}: {name}{note}", fontsize=9, color=color(kind))
            if len(tokens) <= 24:
                ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=90, fontsize=6)
                ax.set_yticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], fontsize=6)
            else:
                ax.set(xticks=[], yticks=[], xlabel=f"key ({len(tokens)} tokens)", ylabel="query")
    fig.tight_layout(rect=(0, 0, 0.93, 1 - HEADER_INCHES / height))
    colorbar_axes = fig.add_axes((0.94, 0.1, 0.012, 0.7))
    fig.colorbar(image, cax=colorbar_axes, label="attention weight")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return Path(path)
