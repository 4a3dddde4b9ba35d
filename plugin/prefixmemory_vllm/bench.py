"""Generation throughput in vLLM: a PrefixMemory export against its own base model, in one run.

    python -m prefixmemory_vllm.bench EXPORT_DIR [--prompts 16 --prompt-tokens 32 --new-tokens 64 --reps 3]

The base model is the export's own base weights (a view of the folder without the memories), so the two engines
differ only by the memory term. Both stay alive; timed runs alternate (base, PrefixMemory, PrefixMemory, base, ...)
after a warm-up each; the table reports generated tokens per second, best and median over the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from . import ARCHITECTURES, CONFIG_KEY, WEIGHTS_FILE
from .convert import INDEX_FILE


def base_view(export_dir: Path, into: Path) -> Path:
    """``into`` with links to the export's files, minus the memories, and config.json naming the base architecture."""
    for path in export_dir.iterdir():
        if path.name not in ("config.json", INDEX_FILE, WEIGHTS_FILE):
            (into / path.name).symlink_to(path.resolve())
    config = json.loads((export_dir / "config.json").read_text())
    base = {memory: base for base, memory in ARCHITECTURES.items()}
    config["architectures"] = [base[config["architectures"][0]]]
    del config[CONFIG_KEY]
    (into / "config.json").write_text(json.dumps(config))
    if (export_dir / INDEX_FILE).exists():
        index = json.loads((export_dir / INDEX_FILE).read_text())
        index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != WEIGHTS_FILE}
        (into / INDEX_FILE).write_text(json.dumps(index))
    return into


def measure(engines: dict, prompts: list, params, reps: int) -> dict[str, list[float]]:
    """Seconds per timed run for each engine, in ABBA order so that load changes hit both alike."""
    for llm in engines.values():
        llm.generate(prompts, params, use_tqdm=False)  # warm-up
    seconds = {label: [] for label in engines}
    order = list(engines.items())
    for rep in range(reps):
        for label, llm in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            llm.generate(prompts, params, use_tqdm=False)
            seconds[label].append(time.perf_counter() - start)
    return seconds


def report(seconds: dict[str, list[float]], tokens: int) -> str:
    rates = {label: (tokens / min(s), tokens / statistics.median(s)) for label, s in seconds.items()}
    lines = ["| model | tokens/s (best) | tokens/s (median) |", "| --- | --- | --- |"]
    lines += [f"| {label} | {best:.0f} | {median:.0f} |" for label, (best, median) in rates.items()]
    (base_best, base_median), (pmt_best, pmt_median) = rates["base"], rates["prefixmemory"]
    lines.append(f"| ratio prefixmemory / base | {pmt_best / base_best:.3f} | {pmt_median / base_median:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="a vLLM-ready PrefixMemory export")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per run (one batch)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3, help="timed runs per model")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--enforce-eager", action="store_true", help="no torch.compile / CUDA graphs (vLLM's flag)")
    args = parser.parse_args(argv)

    import torch
    from vllm import LLM, SamplingParams

    vocab = json.loads((args.export_dir / "config.json").read_text())["vocab_size"]
    ids = torch.randint(0, vocab, (args.prompts, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    prompts = [{"prompt_token_ids": row} for row in ids.tolist()]
    params = SamplingParams(temperature=0.0, max_tokens=args.new_tokens, ignore_eos=True)
    settings = dict(
        dtype=args.dtype, max_model_len=args.prompt_tokens + args.new_tokens, seed=0, enforce_eager=args.enforce_eager
    )
    with tempfile.TemporaryDirectory() as scratch:
        folders = {"base": base_view(args.export_dir, Path(scratch)), "prefixmemory": args.export_dir}
        engines = {
            label: LLM(model=str(path), max_num_seqs=args.prompts, **settings) for label, path in folders.items()
        }
        seconds = measure(engines, prompts, params, args.reps)
    print(f"{args.prompts} prompts x {args.new_tokens} new tokens, {args.reps} timed runs each, {vars(args)}")
    print(report(seconds, args.prompts * args.new_tokens))


if __name__ == "__main__":
    main()
