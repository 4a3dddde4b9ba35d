"""prefixmemory-bench: PrefixMemory beside LoRA, prefix tuning, the frozen floor and the base model.

The command line: arguments, the run they describe, and where the report goes (see the package docstring).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import time

import torch

from . import mixed, overhead, report
from .memory import cache_cpu_heap
from .presets import METHODS, PRESETS, QUANTIZED_METHODS
from .runner import CLOCKS, Spec, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prefixmemory-bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        default="cpu-small",
        choices=sorted(PRESETS),
        help="model geometry (random weights) and batch shape",
    )
    parser.add_argument("--model", help="a causal-LM checkpoint to use instead of the preset's random weights")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}; on a 4-bit NF4 base (bitsandbytes): nf4-<method>",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: the preset's")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--decode-tokens", type=int)
    parser.add_argument("--warmup", type=int, help="untimed samples per figure after the memory window")
    parser.add_argument("--repeats", type=int, help="timed samples per figure; the median is reported")
    parser.add_argument(
        "--schedule",
        choices=("interleaved", "sequential"),
        help="interleaved: all models alive, methods alternate (default on CPU); "
        "sequential: one model at a time (default on CUDA, for memory)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch intra-op threads on CPU (default 1: on a machine shared with other jobs, one thread's time is "
        "steady where several threads wait on the slowest)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        help="wall time, or this process's CPU time, which leaves out other jobs' turns (default: cpu on a CPU, "
        "wall on a GPU)",
    )
    parser.add_argument(
        "--cpu-heap",
        choices=("cached", "default"),
        default="cached",
        help="cached: glibc keeps freed memory for reuse (see memory.cache_cpu_heap); default: as is",
    )
    mixed.add_argument(parser)
    overhead.add_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report to this JSON file")
    parser.add_argument("--plot", help="write bars of the ratios to this PNG file (needs matplotlib)")
    parser.add_argument(
        "--profile",
        help="after the timed samples, write torch.profiler tables of each method's training step, prefill and "
        "decode to this text file",
    )
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    return args


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Split ``--methods`` and refuse usage errors now, before any model is built, not after minutes of measuring."""
    args.methods = [method.strip() for method in args.methods.split(",") if method.strip()]
    unknown = [method for method in args.methods if method not in METHODS + QUANTIZED_METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown or 'empty list'}; known: {', '.join(METHODS)}, nf4-<method>")
    if set(args.methods) & set(QUANTIZED_METHODS) and importlib.util.find_spec("bitsandbytes") is None:
        parser.error("--methods: the nf4-* methods need bitsandbytes (pip install bitsandbytes)")
    if args.mixed_adapters:
        mixed.check_arguments(parser, args)
    if args.overhead and (args.mixed_adapters or args.plot or args.profile):
        parser.error("--overhead: goes alone, without --mixed-adapters, --plot or --profile (it profiles itself)")
    on_cpu = args.device.startswith("cpu")
    args.clock = args.clock or ("cpu" if on_cpu else "wall")
    if args.clock == "cpu" and not on_cpu:
        parser.error(
            f"--clock cpu: this process's CPU time misses the work {args.device} does while the CPU waits; "
            "on a GPU use --clock wall"
        )
    for flag in ("json", "plot", "profile"):
        path = getattr(args, flag)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            parser.error(f"--{flag}: the folder of {path!r} does not exist")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.mixed_adapters:
        mixed_adapters(args)
    elif args.overhead:
        overhead_table(args)
    else:
        benchmark(args)


def mixed_adapters(args: argparse.Namespace) -> dict:
    """The mixed-adapter measurement (mixed.py) at the preset's shape, 16 rows unless --batch-size says more."""
    spec = dataclasses.replace(make_spec(args), batch_size=args.batch_size or max(mixed.ADAPTER_COUNTS))
    summary = mixed.benchmark(args.preset, spec, *rounds(args))
    _write(args, summary, None)
    return summary


def overhead_table(args: argparse.Namespace) -> dict:
    """The per-layer split of PrefixMemory's extra time (overhead.py) at the preset's shape."""
    spec, (warmup, repeats) = make_spec(args), rounds(args)
    rows = overhead.measure(spec, warmup, repeats)
    machine = report.machine(spec.device)
    print(overhead.markdown(rows, spec, repeats, machine))
    summary = {"preset": args.preset, "machine": machine, "repeats": repeats, "versions": report.versions()}
    summary["rows"] = rows
    _write(args, summary, None)
    return summary


def benchmark(args: argparse.Namespace) -> dict:
    """Run the benchmark ``args`` describe; print the Markdown report, write the JSON and the plot if asked."""
    spec, (warmup, repeats) = make_spec(args), rounds(args)
    schedule = args.schedule or ("sequential" if spec.device.type == "cuda" else "interleaved")
    load_start, started = os.getloadavg(), time.perf_counter()
    profiles = [] if args.profile else None
    results = run(spec, args.methods, warmup, repeats, schedule, profiles)
    summary = {
        "preset": args.preset if not args.model else f"{args.preset} shape, model {args.model}",
        "device": str(spec.device),
        "machine": report.machine(spec.device),
        "dtype": str(spec.dtype).removeprefix("torch."),
        "batch_size": spec.batch_size,
        "seq_len": spec.seq_len,
        "decode_tokens": spec.decode_tokens,
        "model": spec.model or {"path": args.model},
        "schedule": schedule,
        "clock": args.clock,
        "cpu_heap": spec.cpu_heap,
        "torch_threads": torch.get_num_threads() if spec.device.type == "cpu" else None,
        "warmup": warmup,
        "repeats": repeats,
        "loadavg_start_end": [load_start, os.getloadavg()],
        "wall_s": time.perf_counter() - started,
        "versions": report.versions(),
        "results": results,
    }
    summary["ratios"] = report.ratios(results)
    summary["targets"] = report.check_targets(results)
    summary["adapter_share"] = report.adapter_share(results)
    print(report.markdown(summary))
    print(f"\nwall {summary['wall_s']:.0f} s; load average start {load_start[0]:.2f}, end {os.getloadavg()[0]:.2f}")
    _write(args, summary, profiles)
    return summary


def rounds(args: argparse.Namespace) -> tuple[int, int]:
    """(warm-up, timed) rounds: the flags', else the preset's."""
    preset = PRESETS[args.preset]
    return (preset.warmup if args.warmup is None else args.warmup), (args.repeats or preset.repeats)


def make_spec(args: argparse.Namespace) -> Spec:
    """The run's model and batch: the preset's, with what the flags override; sets threads and the CPU heap."""
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    cpu_heap = None
    if device.type == "cpu":
        cpu_heap = "cached" if args.cpu_heap == "cached" and cache_cpu_heap() else "glibc default"
    return Spec(
        preset=args.preset,
        model=None if args.model else preset.model,
        model_path=args.model,
        device=device,
        dtype=getattr(torch, args.dtype or preset.dtype),
        batch_size=args.batch_size or preset.batch_size,
        seq_len=args.seq_len or preset.seq_len,
        decode_tokens=args.decode_tokens or preset.decode_tokens,
        seed=args.seed,
        clock=args.clock,
        cpu_heap=cpu_heap,
    )


def _write(args: argparse.Namespace, summary: dict, profiles: list[str] | None) -> None:
    if args.json:
        with open(args.json, "w") as file:
            json.dump(summary, file, indent=2)
    if args.plot:
        report.plot(summary, args.plot)
    if args.profile:
        with open(args.profile, "w") as file:
            file.write("\n\n".join(profiles) + "\n")


if __name__ == "__main__":
    main()
