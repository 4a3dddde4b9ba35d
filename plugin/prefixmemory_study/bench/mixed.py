"""Mixed-adapter batches: throughput of one batch whose rows use 1, 4 or 16 distinct adapters.

PEFT serves several adapters in one batch through ``adapter_names=[...]`` (one name per row). PrefixMemory adds
one memory term per attention layer, so a mixed batch costs one small batched matmul per adapter and layer; LoRA
splits the rows of every adapted linear layer (all-linear: seven per block) by adapter. Each method's model holds
16 adapters with random nonzero values; each variant is timed on the same 16-row batch, rows assigned to adapters
in turn, beside the same model called without ``adapter_names`` (one adapter for all rows, the fast path).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import report
from .models import Spec, build_base_model, peft_config
from .runner import CLOCKS, _sync

MIXED_METHODS = ("pmt-elu", "lora-r32")
ADAPTER_COUNTS = (1, 4, 16)
FAST_PATH = 0  # the variant without adapter_names
# PrefixMemory's target: a batch of 16 distinct adapters keeps 95% of the throughput of one adapter for all rows.
TARGET = ("pmt-elu", 16, 0.95)


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mixed-adapters",
        action="store_true",
        help="instead of the method comparison: prefill and decode throughput of one batch (default 16 rows) whose "
        f"rows use {', '.join(map(str, ADAPTER_COUNTS))} distinct adapters via adapter_names, "
        f"{' beside '.join(MIXED_METHODS)} (--methods does not apply)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that cannot go with --mixed-adapters stop the command before anything is built."""
    rows = max(ADAPTER_COUNTS)
    for flag in ("model", "plot", "profile"):
        if getattr(args, flag):
            parser.error(f"--mixed-adapters: --{flag} does not apply (random-weight preset models, a table)")
    if args.batch_size is not None and args.batch_size % rows:
        parser.error(f"--mixed-adapters: --batch-size must be a multiple of {rows}, got {args.batch_size}")


def build_model(method: str, spec: Spec, adapters: int):
    """``method``'s PeftModel with ``adapters`` adapters a0, a1, ...; each gets random nonzero values (seeded)."""
    from peft import get_peft_model

    model = get_peft_model(build_base_model(spec), peft_config(method), adapter_name="a0")
    for index in range(1, adapters):
        model.add_adapter(f"a{index}", peft_config(method))
    generator = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if model.prefix in name:  # "prefixmemory_" or "lora_"
                noise = torch.randn(param.shape, generator=generator) * 0.02
                param.copy_(noise.to(device=param.device, dtype=param.dtype))
    return model.to(spec.device).eval()


def row_adapters(rows: int, distinct: int) -> list[str] | None:
    """Rows assigned to ``distinct`` adapters in turn; None for the fast path (no adapter_names)."""
    return None if distinct == FAST_PATH else [f"a{row % distinct}" for row in range(rows)]


@torch.inference_mode()
def infer(model, input_ids: torch.Tensor, decode_tokens: int, names: list[str] | None, spec: Spec):
    """(prefill seconds, decode seconds) of one prefill and ``decode_tokens`` greedy steps, through PeftModel."""
    kwargs = {} if names is None else {"adapter_names": names}
    clock = CLOCKS[spec.clock]
    _sync(spec.device)
    start = clock()
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **kwargs)
    _sync(spec.device)
    decode_start = clock()
    for _ in range(decode_tokens):
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        out = model(input_ids=token, past_key_values=out.past_key_values, use_cache=True, **kwargs)
    _sync(spec.device)
    return decode_start - start, clock() - decode_start


def measure(spec: Spec, warmup: int, repeats: int) -> list[dict]:
    """Median prefill and decode throughput of every (method, distinct adapters) variant, sampled in turn."""
    rows = spec.batch_size
    generator = torch.Generator().manual_seed(spec.seed)
    input_ids = torch.randint(0, spec.model["vocab_size"], (rows, spec.seq_len), generator=generator).to(spec.device)
    models = {method: build_model(method, spec, max(ADAPTER_COUNTS)) for method in MIXED_METHODS}
    variants = [(method, distinct) for method in MIXED_METHODS for distinct in (FAST_PATH, *ADAPTER_COUNTS)]
    samples = {variant: [] for variant in variants}
    for round_index in range(warmup + repeats):
        shift = round_index % len(variants)  # rotate the order, so no variant always runs first
        for method, distinct in variants[shift:] + variants[:shift]:
            times = infer(models[method], input_ids, spec.decode_tokens, row_adapters(rows, distinct), spec)
            if round_index >= warmup:
                samples[method, distinct].append(times)
    results = []
    for (method, distinct), taken in samples.items():
        prefill_s = statistics.median(times[0] for times in taken)
        decode_s = statistics.median(times[1] for times in taken)
        results.append(
            dict(
                method=method,
                distinct_adapters=distinct,
                prefill_tokens_per_s=rows * spec.seq_len / prefill_s,
                decode_tokens_per_s=rows * spec.decode_tokens / decode_s,
            )
        )
    return results


def markdown(results: list[dict], spec: Spec, repeats: int) -> str:
    """The table: throughput per variant, and its ratio to the same method called without adapter_names."""
    fast = {row["method"]: row for row in results if row["distinct_adapters"] == FAST_PATH}
    lines = [
        f"Mixed-adapter batch: {spec.batch_size} rows x {spec.seq_len} tokens, {spec.decode_tokens} decode steps, "
        f"{str(spec.dtype).removeprefix('torch.')}, median of {repeats}; {report.machine(spec.device)}",
        "",
        "| method | distinct adapters | prefill tok/s | decode tok/s | prefill vs fast path | decode vs fast path |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in results:
        reference = fast[row["method"]]
        distinct = row["distinct_adapters"] or "1, no adapter_names"
        prefill, decode = row["prefill_tokens_per_s"], row["decode_tokens_per_s"]
        lines.append(
            f"| {row['method']} | {distinct} | {prefill:,.0f} | {decode:,.0f} | "
            f"{prefill / reference['prefill_tokens_per_s']:.2f} | {decode / reference['decode_tokens_per_s']:.2f} |"
        )
    return "\n".join([*lines, "", *target_lines(results)])


def target_lines(results: list[dict]) -> list[str]:
    """Whether TARGET's method keeps its share of the fast path's prefill and decode throughput."""
    method, distinct, bound = TARGET
    rows = {row["distinct_adapters"]: row for row in results if row["method"] == method}
    if distinct not in rows or FAST_PATH not in rows:
        return []
    lines = []
    for figure in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        ratio = rows[distinct][figure] / rows[FAST_PATH][figure]
        verdict = "met" if ratio >= bound else "not met"
        lines.append(
            f"- target: {method} {figure}, {distinct} distinct adapters / one: {ratio:.3f} (>= {bound}): {verdict}"
        )
    return lines


def benchmark(preset: str, spec: Spec, warmup: int, repeats: int) -> dict:
    """Run the mixed-adapter measurement and print its table; returns the report (what ``--json`` writes)."""
    started = time.perf_counter()
    results = measure(spec, warmup, repeats)
    print(markdown(results, spec, repeats))
    wall_s = time.perf_counter() - started
    print(f"\nwall {wall_s:.0f} s")
    return {
        "preset": preset,
        "machine": report.machine(spec.device),
        "dtype": str(spec.dtype).removeprefix("torch."),
        "batch_size": spec.batch_size,
        "seq_len": spec.seq_len,
        "decode_tokens": spec.decode_tokens,
        "clock": spec.clock,
        "warmup": warmup,
        "repeats": repeats,
        "wall_s": wall_s,
        "versions": report.versions(),
        "results": results,
    }
