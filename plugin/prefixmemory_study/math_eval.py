"""prefixmemory-math: Table 3 (CFT math: AMC23, Minerva-Math, AIME24 accuracy), generated and graded.

    prefixmemory-math predict recipes/qwen2.5_math_cft_pmt.yaml --adapter saves/.../cft_10k --method PMT --size 10K
    prefixmemory-math grade                      # saves/math/table3.md and math_results.json

``predict`` generates through LLaMA-Factory's own predict path (greedy, the recipe's model and template, CFT's
evaluation system prompt) into <runs-dir>/<method>/<size>/<benchmark>/generated_predictions.jsonl. ``grade`` scores
every such file with math-verify: the final answer is extracted from the generation (``\\boxed{}`` first, then the
last LaTeX or plain expression) and compared symbolically with the reference answer, so ``0.5`` equals
``\\frac{1}{2}`` and ``2\\sqrt{2}`` equals ``\\sqrt{8}``, while ``26.9`` does not equal ``27``. A reference answer
with no ``$`` or ``\\boxed`` is read as LaTeX math (wrapped in ``$...$``), which is how math-verify reads a bare
answer such as ``\\sqrt{8}``; the equivalence itself is math-verify's alone.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from . import predict

BENCHMARKS = {"amc23": "AMC23", "minerva_math": "Minerva-Math", "aime24": "AIME24"}  # Table 3's columns, in order
# CFT evaluates with Qwen2.5-Math's `qwen25-math-cot` prompt: this system turn, greedy decoding.
MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
RESULTS, TABLE = "math_results.json", "table3.md"


def is_correct(prediction: str, reference: str) -> bool:
    """math-verify's verdict on the generation's final answer against the reference answer."""
    from math_verify import parse, verify

    gold = parse(reference if "$" in reference or "\\boxed" in reference else f"${reference}$")
    return bool(gold) and verify(gold, parse(prediction))


def grade_file(path: str | Path) -> dict:
    """correct / total / accuracy (%) / unparsed (generations with no answer math-verify can read) of one file."""
    from math_verify import parse

    rows = predict.read_predictions(path)
    correct = sum(is_correct(row["predict"], str(row["label"])) for row in rows)
    unparsed = sum(not parse(row["predict"]) for row in rows)
    total = len(rows)
    return {"correct": correct, "total": total, "accuracy": 100.0 * correct / total if total else 0.0,
            "unparsed": unparsed}  # fmt: skip


def collect(runs_dir: Path) -> list[dict]:
    """Every <method>/<size>/<benchmark>/generated_predictions.jsonl under ``runs_dir``, graded."""
    results = []
    for path in sorted(runs_dir.glob(f"*/*/*/{predict.PREDICTIONS}")):
        method, size, benchmark = path.parts[-4:-1]
        results.append({"method": method, "size": size, "benchmark": benchmark, "predictions": str(path),
                        **grade_file(path)})  # fmt: skip
    return results


def size_order(size: str) -> float:
    """``4K`` < ``10K`` < ``50K`` < ``1M``; a label that is not a size sorts last, by name."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmM]?)", size.strip())
    if not match:
        return float("inf")
    return float(match[1]) * {"": 1, "k": 1e3, "m": 1e6}[match[2].lower()]


def table(results: list[dict], baseline: str = "LoRA", method: str = "PMT") -> str:
    """Table 3's layout: a row per training size, per benchmark the baseline, the method and its gain (+Δ)."""
    cells = {(r["size"], r["benchmark"], r["method"]): r["accuracy"] for r in results}
    benchmarks = [b for b in BENCHMARKS if any(r["benchmark"] == b for r in results)]
    benchmarks += sorted({r["benchmark"] for r in results} - set(benchmarks))
    head = ["Training samples"] + [f"{BENCHMARKS.get(b, b)}: {m}" for b in benchmarks for m in (baseline, method)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for size in sorted({r["size"] for r in results}, key=lambda s: (size_order(s), s)):
        row = [size]
        for benchmark in benchmarks:
            base, ours = cells.get((size, benchmark, baseline)), cells.get((size, benchmark, method))
            row.append("–" if base is None else _bold(f"{base:.1f}", ours is not None and base > ours))
            if ours is None:
                row.append("–")
                continue
            gain = f" ({ours - base:+.1f})" if base is not None else ""
            row.append(_bold(f"{ours:.1f}", base is None or ours >= base) + gain)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _bold(text: str, best: bool) -> str:
    return f"**{text}**" if best else text


def run_predict(args) -> None:
    adapter = predict.adapter_folder(args.adapter)
    overrides = {"default_system": MATH_SYSTEM, **predict.parse_overrides(args.set)}
    for benchmark in args.benchmarks:
        name = f"{benchmark}{args.dataset_suffix}"
        out = Path(args.runs_dir) / args.method / args.size / benchmark
        predict.predict(args.recipe, name, out, adapter, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, max_samples=args.max_samples, overrides=overrides)  # fmt: skip


def run_grade(args) -> None:
    runs_dir = Path(args.runs_dir)
    results = collect(runs_dir)
    if not results:
        raise SystemExit(f"no <method>/<size>/<benchmark>/{predict.PREDICTIONS} under {runs_dir}: run predict first.")
    text = table(results, args.baseline, args.method)
    (runs_dir / RESULTS).write_text(json.dumps({"grader": __doc__.split("``grade``", 1)[1].strip(),
                                                "results": results}, indent=1) + "\n")  # fmt: skip
    (runs_dir / TABLE).write_text(
        "Accuracy (%), graded with math-verify; bold: the better of the two.\n\n" + text + "\n"
    )
    print(text)
    print(f"wrote {runs_dir / TABLE} and {runs_dir / RESULTS}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefixmemory-math", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runs_help = "folder of <method>/<size>/<benchmark>/generated_predictions.jsonl (default: saves/math)"
    p = commands.add_parser("predict", help="generate answers to the math benchmarks with llamafactory-cli")
    p.add_argument("recipe", help="the training recipe: its model, template and dataset_dir are used")
    p.add_argument("--adapter", help="the trained adapter (or full model) folder; none: the base model")
    p.add_argument("--method", required=True, help="column label, e.g. PMT or LoRA")
    p.add_argument("--size", required=True, help="row label: the training size, e.g. 4K, 10K, 50K")
    p.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS),
                   help="default: all three")  # fmt: skip
    p.add_argument("--dataset-suffix", default="", help="_sample: the offline sample twins")
    p.add_argument("--runs-dir", default="saves/math", help=runs_help)
    p.add_argument("--max-samples", type=int, help="only the first N problems of each benchmark")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="generated tokens per answer (default: 2048)")
    p.add_argument("--batch-size", type=int, default=8, help="per_device_eval_batch_size (default: 8)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the predict config")
    g = commands.add_parser("grade", help="grade every predictions file with math-verify; print Table 3")
    g.add_argument("--runs-dir", default="saves/math", help=runs_help)
    g.add_argument("--baseline", default="LoRA", help="the method compared against (default: LoRA)")
    g.add_argument("--method", default="PMT", help="the method whose gain is shown (default: PMT)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    {"predict": run_predict, "grade": run_grade}[args.command](args)


if __name__ == "__main__":
    main()
