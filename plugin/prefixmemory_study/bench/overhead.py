"""Where PrefixMemory's extra time goes, per attention layer: ``prefixmemory-bench --overhead``.

For each phase (decode at batch 1, decode and prefill at the preset's batch, the training step) it compares
``pmt-elu`` with its floor, the model without the adapter (``base`` for inference, ``floor`` for training):

- timed: the median over side-by-side pairs (runner.generate's lockstep steps, or the same round) of the
  difference in seconds, per adapted layer;
- profiled: torch.profiler's self CPU time of every operator whose call count differs between the two, per layer
  and call, grouped by what it does in the layer (phi, the memory's matmul and bias, the add into o_proj's input,
  views, casts, their backward, the optimizer's share);
- wrappers: the same model with its adapter switched off (``disable_adapter_layers``), timed the same way: what
  the two wrapper calls cost without the term;
- the rest: timed minus the operators, i.e. Python (the wrappers, the adapter bookkeeping), dispatch, and the time
  the model's own operators lose when PMT's run between them (on a CPU, a small operator that follows a layer's
  stream of weights starts with cold caches). The profiler adds a little to every operator it records, so this part
  reads low and the operators high.
"""

from __future__ import annotations

import statistics
from collections import Counter

from prefixmemory.layer import PrefixMemoryLayer

from .runner import KINDS, Runner, Spec, _input_ids, _time

METHOD = "pmt-elu"
WRAPPERS = f"{METHOD}, adapter off"
# What each operator does in the layer; an operator not named here is listed under its own name.
ROLES = {
    "aten::elu": "phi",
    "aten::gelu": "phi",
    "aten::relu": "phi",
    "aten::bmm": "memory matmul (+ bias)",
    "aten::baddbmm": "memory matmul (+ bias)",
    "aten::add": "add into o_proj's input",
    "aten::copy_": "copies (bias broadcast, casts)",
    "aten::to": "copies (bias broadcast, casts)",
    "aten::_to_copy": "copies (bias broadcast, casts)",
    "aten::clone": "copies (bias broadcast, casts)",
    "aten::view": "views",
    "aten::reshape": "views",
    "aten::transpose": "views",
    "aten::as_strided": "views",
    "aten::_unsafe_view": "views",
    "aten::expand": "views",
    "aten::resolve_conj": "views",
}
# (phase, runner kind, reference method, what Runner.profiled records).
PHASES = (
    ("decode, batch 1", "infer-b1", "base", "decode"),
    ("decode, preset batch", "infer", "base", "decode"),
    ("prefill, preset batch", "infer", "base", "prefill"),
    ("train step, preset batch", "train", "floor", "train step"),
)


def add_argument(parser) -> None:
    parser.add_argument(
        "--overhead",
        action="store_true",
        help=f"instead of the method comparison: where {METHOD}'s extra time goes per attention layer, timed beside "
        "its floor (base, or floor for training) and split by operator with torch.profiler (--methods does not "
        "apply)",
    )


def measure(spec: Spec, warmup: int, repeats: int) -> list[dict]:
    """One row per phase: the timed extra per layer, the wrappers' share, the profiled operators, the rest."""
    input_ids = _input_ids(spec)
    runners = {method: Runner(method, spec, input_ids) for method in ("base", "floor", METHOD)}
    # The same adapter switched off: its wrappers still run (q_proj's and o_proj's), no term is computed or added.
    runners[WRAPPERS] = Runner(METHOD, spec, input_ids)
    runners[WRAPPERS].model.base_model.disable_adapter_layers()
    layers = _adapted_layers(runners[METHOD].model)
    _time([runners[METHOD], runners[WRAPPERS], runners["base"]], warmup, repeats, kinds=("infer-b1", "infer"))
    _time([runners[METHOD], runners["floor"]], warmup, repeats, kinds=("train",))
    rows = []
    for phase, kind, reference, recorded in PHASES:
        ours, theirs = runners[METHOD], runners[reference]
        figure = _figure(phase, kind)
        operators = _operator_diff(_profile(ours, kind, recorded), _profile(theirs, kind, recorded))
        per_step = (spec.decode_tokens if recorded == "decode" else 1) * layers
        grouped = Counter()
        for name, (_calls, seconds) in operators.items():
            grouped[_role(name)] += seconds / per_step
        timed = _paired_difference(ours, theirs, figure) / layers
        wrappers = _paired_difference(runners[WRAPPERS], theirs, figure) / layers if kind != "train" else None
        rows.append(
            dict(
                phase=phase,
                reference=reference,
                timed_s=timed,
                wrappers_s=wrappers,
                reference_s=statistics.median(_samples(theirs, figure)) / layers,
                operators_s=dict(grouped.most_common()),
                calls={name: calls / per_step for name, (calls, _) in operators.items()},
                rest_s=timed - sum(grouped.values()),
                pairs=len(_samples(ours, figure)),
            )
        )
    for runner in runners.values():
        runner.close()
    return rows


def _samples(runner: Runner, figure: str) -> list[float]:
    """Per decode step for the decode figures (their steps pair up), per round for the others."""
    return runner.step_samples[figure] if figure in runner.step_samples else runner.samples[figure]


def _paired_difference(ours: Runner, theirs: Runner, figure: str) -> float:
    """The median over side-by-side pairs of the difference in seconds."""
    return statistics.median(a - b for a, b in zip(_samples(ours, figure), _samples(theirs, figure), strict=True))


def _figure(phase: str, kind: str) -> str:
    if kind == "train":
        return "train_step_s"
    prefill, decode = KINDS[kind]
    return prefill if phase.startswith("prefill") else decode


def _adapted_layers(model) -> int:
    return sum(1 for module in model.modules() if isinstance(module, PrefixMemoryLayer))


def _profile(runner: Runner, kind: str, recorded: str) -> dict[str, tuple[int, float]]:
    """{operator: (calls, self seconds)} of what Runner.profiled records, at batch 1 for the kind "infer-b1"."""
    profiler = runner.profiled(recorded, runner.input_ids[:1] if kind == "infer-b1" else None)
    attribute = "self_device_time_total" if runner.spec.device.type == "cuda" else "self_cpu_time_total"
    return {event.key: (event.count, getattr(event, attribute) / 1e6) for event in profiler.key_averages()}


def _operator_diff(ours: dict, theirs: dict) -> dict[str, tuple[int, float]]:
    """The operators PMT adds: those called more often than in the reference, with the extra calls and their time
    (extra calls x time per call, so the noise of the calls both make stays out); negative where it calls fewer."""
    diff = {}
    for name in ours.keys() | theirs.keys():
        (calls, seconds), (ref_calls, ref_seconds) = ours.get(name, (0, 0.0)), theirs.get(name, (0, 0.0))
        if calls > ref_calls:
            diff[name] = (calls - ref_calls, (calls - ref_calls) * seconds / calls)
        elif calls < ref_calls:
            diff[name] = (calls - ref_calls, (calls - ref_calls) * ref_seconds / ref_calls)
    return diff


def _role(name: str) -> str:
    if name in ROLES:
        return ROLES[name]
    if "Backward" in name or name.startswith("autograd::") or name.endswith("_backward"):
        return "backward of the above"
    return "other operators (optimizer, autograd bookkeeping)"


def markdown(rows: list[dict], spec: Spec, repeats: int, machine: str) -> str:
    """One table: a column per phase; the timed extra per layer beside the reference's time, then its parts."""
    roles = list(dict.fromkeys(role for row in rows for role in row["operators_s"]))
    lines = [
        f"{METHOD}'s extra time per attention layer (us): {spec.preset} shape, batch {spec.batch_size} x seq "
        f"{spec.seq_len}, {str(spec.dtype).removeprefix('torch.')}, median of paired differences over {repeats} "
        f"rounds; {machine}",
        "",
        "| per layer | " + " | ".join(f"{row['phase']} (vs {row['reference']})" for row in rows) + " |",
        "|---|" + "---:|" * len(rows),
        "| reference's step / layers | " + " | ".join(_us(row["reference_s"]) for row in rows) + " |",
        "| PMT extra, timed | "
        + " | ".join(f"{_us(row['timed_s'])} ({row['timed_s'] / row['reference_s']:.1%})" for row in rows)
        + " |",
        "| of which the wrappers alone (adapter off), timed | " + _cells(rows, "wrappers_s"),
    ]
    for role in roles:
        lines.append(f"| {role} | " + " | ".join(_us(row["operators_s"].get(role)) for row in rows) + " |")
    lines.append("| the rest: Python, dispatch, cold caches | " + _cells(rows, "rest_s"))
    return "\n".join(lines)


def _cells(rows: list[dict], key: str) -> str:
    return " | ".join(_us(row[key]) for row in rows) + " |"


def _us(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1e6:,.1f}"
