"""The benchmark's report: ratios between methods, the targets, the Markdown tables and the bar plot."""

from __future__ import annotations

import math
import os
import platform
import statistics

import peft
import torch
import transformers

from .presets import LATENCY_FIGURES, METHOD_NOTES

# (figure, reference method): the ratios printed, stored and plotted. Two LoRA references: lora-r32 on every linear
# layer, and lora-qv-r32 on q_proj and v_proj, the setting of the paper's Table 5.
RATIOS = (
    ("train_step_s", "lora-r32"),
    ("train_step_s", "lora-qv-r32"),
    ("train_step_s", "floor"),
    ("peak_mem_bytes", "lora-r32"),
    ("peak_mem_bytes", "lora-qv-r32"),
    ("peak_mem_bytes", "floor"),
    ("prefill_tokens_per_s", "base"),
    ("decode_tokens_per_s", "base"),
)
# On a 4-bit base (nf4-* methods, reported when one ran): against QLoRA, both settings, and PMT on the full base.
QUANTIZED_RATIOS = tuple(
    (figure, reference)
    for figure in ("train_step_s", "peak_mem_bytes")
    for reference in ("nf4-lora-r32", "nf4-lora-qv-r32", "pmt-elu")
)
# Latency against the base model, as the paper's Table 6 reports it.
LATENCY_RATIOS = tuple((figure, "base") for figure in LATENCY_FIGURES)
TARGETS_HEADER = (
    "design targets (the project's goals for PrefixMemory's overhead; the benchmark ran either way, and a target "
    '"not met" is a measurement, not an error):'
)
# The speed and memory targets of PrefixMemory: (method, figure, reference, comparison, bound). Inference within 1%
# of the base model at one prompt and at the preset's batch; training within 2% of the frozen floor, and no slower
# than the paper's LoRA; lighter than LoRA on every linear layer.
TARGETS = (
    ("pmt-elu", "prefill_b1_tokens_per_s", "base", ">=", 0.99),
    ("pmt-elu", "decode_b1_tokens_per_s", "base", ">=", 0.99),
    ("pmt-elu", "prefill_tokens_per_s", "base", ">=", 0.99),
    ("pmt-elu", "decode_tokens_per_s", "base", ">=", 0.99),
    ("pmt-elu", "train_step_s", "floor", "<=", 1.02),
    ("pmt-elu", "train_step_s", "lora-qv-r32", "<=", 1.00),
    ("pmt-elu", "train_step_s", "lora-r32", "<=", 0.80),
    ("pmt-elu", "peak_mem_bytes", "lora-r32", "<=", 1.00),
)


def ratios(results: list[dict]) -> dict[str, dict[str, float | None]]:
    """``{method: {"<figure>/<reference>": ratio}}`` for the pairs in RATIOS and LATENCY_RATIOS (None where either is
    missing)."""
    by_method = {result["method"]: result for result in results}
    table = {}
    for result in results:
        row = {}
        for figure, reference in (pair for group in _ratio_groups(results) for pair in group):
            row[f"{figure}/{reference}"] = _ratio(result.get(figure), by_method.get(reference, {}).get(figure))
        table[result["method"]] = row
    return table


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value is not None and reference else None


def _ratio_groups(results: list[dict]) -> tuple[tuple, ...]:
    """The ratio tables of a report: QUANTIZED_RATIOS only when an nf4-* method ran."""
    quantized = any(result["method"].startswith("nf4-") for result in results)
    return (RATIOS, LATENCY_RATIOS, *((QUANTIZED_RATIOS,) if quantized else ()))


# The timed samples behind each figure, and the power that turns a ratio of times into the figure's ratio
# (throughputs are inverses of times). Decode pairs its single steps (runner.generate), the rest their rounds.
_SAMPLES = {
    "train_step_s": ("samples_s", "train_step_s", 1),
    "prefill_tokens_per_s": ("samples_s", "prefill_s", -1),
    "prefill_b1_tokens_per_s": ("samples_s", "prefill_b1_s", -1),
    "decode_tokens_per_s": ("step_samples_s", "decode_s", -1),
    "decode_b1_tokens_per_s": ("step_samples_s", "decode_b1_s", -1),
}


def paired_ratio(result: dict, reference: dict, figure: str) -> dict | None:
    """The ratio of ``figure`` from samples taken side by side (the same round, or the same decode step), as median,
    quartiles and the number of pairs: load that drifts between rounds cancels out of it."""
    kind, key, power = _SAMPLES.get(figure, (None, None, 0))
    ours, theirs = result.get(kind, {}).get(key), reference.get(kind, {}).get(key)
    if not ours or not theirs or len(ours) != len(theirs):
        return None
    per_pair = [(a / b) ** power for a, b in zip(ours, theirs, strict=True)]
    q1, median, q3 = statistics.quantiles(per_pair, n=4, method="inclusive") if len(per_pair) > 1 else per_pair * 3
    low, high = median_interval(per_pair)
    return {"median": median, "q1": q1, "q3": q3, "pairs": len(per_pair), "ci95": [low, high]}


def median_interval(values: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: from the k-th smallest to the k-th largest value,
    k the largest rank with P(Binomial(n, 1/2) < k) <= 2.5% (the whole range when n < 6)."""
    ordered, n = sorted(values), len(values)
    k, below = 0, 1 / 2**n  # below: P(Binomial(n, 1/2) <= k)
    while below <= 0.025:
        k += 1
        below += math.comb(n, k) / 2**n
    return (ordered[k - 1], ordered[n - k]) if k else (ordered[0], ordered[-1])


def check_targets(results: list[dict]) -> list[dict]:
    """The targets, each with its ratio of medians, its paired ratio, and whether it is met (None: not measured).

    The verdict reads the paired ratio where the methods ran side by side (interleaved), else the ratio of medians.
    """
    by_method = {result["method"]: result for result in results}
    checks = []
    for method, figure, reference, comparison, bound in TARGETS:
        ratio = _ratio(by_method.get(method, {}).get(figure), by_method.get(reference, {}).get(figure))
        paired = paired_ratio(by_method[method], by_method[reference], figure) if ratio is not None else None
        value = paired["median"] if paired else ratio
        met = None if value is None else (value <= bound if comparison == "<=" else value >= bound)
        checks.append(
            dict(
                method=method,
                figure=figure,
                reference=reference,
                comparison=comparison,
                bound=bound,
                ratio=ratio,
                met=met,
                paired=paired,
            )
        )
    return checks


def adapter_share(results: list[dict], method: str = "pmt-elu") -> float | None:
    """``method``'s adapter bytes over the frozen weights a decode step reads: the least it can add to a step whose
    time is reading weights (decode at small batch), whatever the implementation."""
    by_method = {result["method"]: result for result in results}
    adapter, weights = by_method.get(method, {}).get("adapter_bytes"), by_method.get("base", {}).get("weight_bytes")
    return adapter / weights if adapter and weights else None


def _cell(value, scale: float = 1.0, digits: int = 3, noise: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value / scale:,.{digits}f}" if isinstance(value, float) or scale != 1.0 else f"{value:,}"
    return f"{text} ±{noise:.0%}" if noise else text


def markdown(report: dict) -> str:
    """The methods, the figures, the latency, the ratios and the targets, as Markdown."""
    results = report["results"]
    lines = [
        f"preset `{report['preset']}` on {report['machine']}: batch {report['batch_size']} x seq {report['seq_len']}, "
        f"{report['dtype']}, decode {report['decode_tokens']} tokens, {report['schedule']}, {report['clock']} clock, "
        f"CPU heap {report['cpu_heap'] or 'n/a'}, warm-up {report['warmup']}, median of {report['repeats']} "
        "(± = relative IQR of the samples)",
        "",
        *(f"- `{r['method']}`: {METHOD_NOTES.get(r['method'], '')}" for r in results),
        "",
        "| method | train step (s) | train tok/s | peak mem (MiB) | prefill tok/s | decode tok/s | trainable |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        noise = r["noise_rel_iqr"]
        lines.append(
            f"| {r['method']} | {_cell(r['train_step_s'], noise=noise.get('train_step_s'))} "
            f"| {_cell(r['train_tokens_per_s'], digits=0)} | {_cell(r['peak_mem_bytes'], 2**20, 1)} "
            f"| {_cell(r['prefill_tokens_per_s'], digits=0, noise=noise.get('prefill_s'))} "
            f"| {_cell(r['decode_tokens_per_s'], digits=1, noise=noise.get('decode_s'))} "
            f"| {_cell(r['trainable_params'])} |"
        )
    lines += ["", *_latency_table(report)]
    for group in _ratio_groups(results):
        headers = [f"{figure.removesuffix('_s').removesuffix('_bytes')} / {ref}" for figure, ref in group]
        lines += ["", "| method | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
        for method, row in report["ratios"].items():
            cells = (_cell(row[f"{figure}/{ref}"], digits=2) for figure, ref in group)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", TARGETS_HEADER, *map(_target_line, report["targets"])]
    if report.get("adapter_share"):
        share = report["adapter_share"]
        lines.append(
            f"- pmt-elu's memories are {share:.2%} of the weight bytes a decode step reads: where reading weights "
            f"sets the pace, decode cannot pass {1 / (1 + share):.3f}x base"
        )
    missing = [(r["method"], figure, reason) for r in results for figure, reason in r["unavailable"].items()]
    if missing:
        lines += ["", "not available:"] + [f"- {method} {figure}: {reason}" for method, figure, reason in missing]
    return "\n".join(lines)


def _latency_table(report: dict) -> list[str]:
    """TTFT, TBT (ms) and TPS at batch 1 and at the preset's batch, one row per method."""
    batch = report["batch_size"]
    header = (
        "| method | TTFT b1 (ms) | TBT b1 (ms) | TPS b1 | "
        + f"TTFT b{batch} (ms) | TBT b{batch} (ms) | TPS b{batch} |"
    )
    lines = [
        f"latency: TTFT = prefill + first token of one prompt (b1) or of the batch (b{batch}); TBT = mean time "
        f"between the {report['decode_tokens']} later tokens; TPS = generated tokens per second, first included",
        "",
        header,
        "|---|" + "---:|" * len(LATENCY_FIGURES),
    ]
    for r in report["results"]:
        cells = (
            _cell(r[figure], digits=1) if figure.startswith("tps") else _cell(r[figure], 1e-3, 2)
            for figure in LATENCY_FIGURES
        )
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    return lines


def _target_line(t: dict) -> str:
    verdict = {True: "met", False: "not met", None: "not measured"}[t["met"]]
    ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.3f}"
    paired = ""
    if t["paired"]:
        q1, median, q3, pairs = (t["paired"][key] for key in ("q1", "median", "q3", "pairs"))
        low, high = t["paired"]["ci95"]
        paired = f"paired {median:.3f} (95% CI {low:.3f}-{high:.3f}; IQR {q1:.3f}-{q3:.3f}; {pairs} pairs); "
    target = f"target {t['comparison']} {t['bound']}"
    return f"- {t['method']} {t['figure']} / {t['reference']}: {paired}ratio of medians {ratio} ({target}): {verdict}"


def plot(report: dict, path: str) -> None:
    """Bars of every ratio, one panel per ratio (PrefixMemory in orange), a line at 1, the methods described below."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    methods = list(report["ratios"])
    colors = ["tab:orange" if method.startswith("pmt-") else "tab:blue" for method in methods]
    panels = RATIOS + LATENCY_RATIOS
    rows = -(-len(panels) // 4)
    fig, axes = plt.subplots(rows, 4, figsize=(20, 4.2 * rows + 2.5), constrained_layout=True)
    for ax, (figure, reference) in zip(axes.flat, panels, strict=False):
        values = [report["ratios"][method][f"{figure}/{reference}"] for method in methods]
        bars = ax.bar(methods, [value or 0.0 for value in values], color=colors)
        ax.bar_label(bars, labels=["n/a" if value is None else f"{value:.2f}" for value in values], fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{figure} / {reference}")
        ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(f"prefixmemory-bench: preset {report['preset']}, {report['dtype']}, {report['machine']}")
    notes = "\n".join(f"{method}: {METHOD_NOTES.get(method, '')}" for method in methods)
    fig.supxlabel(notes, fontsize=8, ha="left", x=0.01)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU's model with the torch thread count and the cores visible."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible (cpu)"


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
