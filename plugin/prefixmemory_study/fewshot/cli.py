"""prefixmemory-fewshot: the few-shot classification study of section 6.1, end to end, through LLaMA-Factory.

    prefixmemory-fewshot build                                      # the recipe pack's builder: data/fewshot/
    prefixmemory-fewshot train recipes/qwen2.5_fewshot_bbh_pmt.yaml recipes/qwen2.5_fewshot_bbh_lora.yaml
    prefixmemory-fewshot eval --icl                                 # every checkpoint, IID + Banking77 OOD
    prefixmemory-fewshot train --growing recipes/qwen2.5_fewshot_bbh_pmt.yaml   # Figure 5: rounds 1..k combined
    prefixmemory-fewshot plot                                       # Table 1, Pareto and growing-data plots

``build`` writes the rounds (data.py); ``train`` runs ``llamafactory-cli train`` on each recipe once per round
(dataset ``<task>_round<k>``) and records the runs in <runs-dir>/fewshot_runs.json (runs.py); ``eval`` predicts and
scores every checkpoint (evaluate.py); ``plot`` writes the table and the Pareto plots (report.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import data as fewshot_data
from . import report, scoring
from .evaluate import RESULTS, evaluate
from .runs import read_json, train


def build(args) -> None:
    entries = fewshot_data.write_sets(
        fewshot_data.build_sets(fewshot_data.fetch, args.seed, args.rounds), args.data_dir
    )
    print(f"wrote {len(entries)} datasets to {Path(args.data_dir) / 'fewshot'} and registered them")


def plot(args) -> None:
    runs_dir = Path(args.runs_dir)
    out = Path(args.output_dir or runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = read_json(runs_dir / RESULTS, None)
    if results is None:
        raise SystemExit(f"no {runs_dir / RESULTS}: run `prefixmemory-fewshot eval` first.")
    written = [report.write_tables(results["summary"], out / "fewshot_table.md")]
    single, growing = report.split_protocols(results["evaluations"])
    for task in sorted({row["task"] for row in single}):
        written.append(report.plot_pareto(single, task, out / f"pareto_{task}.png"))
    for task in sorted({row["task"] for row in growing}):
        written.append(report.plot_growth(growing, task, out / f"growth_{task}.png"))
    print("wrote " + ", ".join(map(str, written)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefixmemory-fewshot", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    runs_help = "folder of the study: runs, configs, logs, predictions, results (default: saves/fewshot)"

    b = commands.add_parser("build", help="download the four datasets and write the rounds (fewshot_data's builder)")
    b.add_argument("--data-dir", default="data", help="folder holding dataset_info.json (default: data)")
    b.add_argument("--seed", type=int, default=fewshot_data.SEED, help=f"sampling seed (default: {fewshot_data.SEED})")
    b.add_argument("--rounds", type=int, default=fewshot_data.ROUNDS, help="rounds per task (default: 5)")

    t = commands.add_parser("train", help="llamafactory-cli train on each recipe, once per round",
                            description="Train each few-shot recipe on each round with llamafactory-cli and record "
                            "the runs. Runs are keyed by model, method, task and round: give two recipes of the same "
                            "method different --method labels.")  # fmt: skip
    t.add_argument("recipes", nargs="+", help="LLaMA-Factory YAML files whose `dataset` is <task>_round<k>")
    t.add_argument("--rounds", type=int, nargs="+", default=list(range(1, fewshot_data.ROUNDS + 1)),
                   help="rounds to train (default: 1 2 3 4 5)")  # fmt: skip
    t.add_argument("--runs-dir", default="saves/fewshot", help=runs_help)
    t.add_argument("--method", help="label in tables and plots (default: from finetuning_type: PMT, LoRA, Full, ...)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a recipe key, e.g. max_steps=100; {round} in a value is the round "
                   "number")  # fmt: skip
    t.add_argument(
        "--growing",
        action="store_true",
        help="the growing-data protocol of Figures 5, 8, 9: run k trains on rounds 1..k combined",
    )
    t.add_argument("--no-train", action="store_true", help="only record the runs: their checkpoints exist already")
    t.add_argument("--force", action="store_true", help="train even where the output folder holds an adapter")

    e = commands.add_parser(
        "eval", help="predict with LLaMA-Factory on every checkpoint and score IID and OOD",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Evaluate every recorded run's checkpoints with llamafactory-cli (do_predict,\n"
        "predict_with_generate, greedy decoding) and score them; writes fewshot_results.json.\n\n"
        "Label matching (prefixmemory_study.fewshot.scoring):\n" + scoring.__doc__.split("\n", 2)[2].strip(),
    )  # fmt: skip
    e.add_argument("--runs-dir", default="saves/fewshot", help=runs_help)
    e.add_argument("--iid-dataset", default="{task}_test", help="IID test set ({task}: the run's task)")
    e.add_argument("--ood-dataset", default="banking77_ood", help="OOD test set (default: banking77_ood)")
    e.add_argument("--checkpoints", default="all", choices=["all", "final"], help="all (for the Pareto plot) or final")
    e.add_argument("--icl", action="store_true", help="also evaluate the in-context-learning baseline")
    e.add_argument("--icl-cutoff-len", type=int, default=8192, help="cutoff_len of the ICL prompts (default: 8192)")
    e.add_argument("--max-samples", type=int, help="evaluate only the first N records of each test set")
    e.add_argument("--max-new-tokens", type=int, default=32, help="generated tokens per answer (default: 32)")
    e.add_argument("--batch-size", type=int, default=8, help="per_device_eval_batch_size (default: 8)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the predict configs")
    e.add_argument("--force", action="store_true", help="predict again even where predictions exist")

    p = commands.add_parser("plot", help="Table 1 in Markdown and the IID-vs-OOD Pareto plots")
    p.add_argument("--runs-dir", default="saves/fewshot", help=runs_help)
    p.add_argument("--output-dir", help="where to write fewshot_table.md and pareto_<task>.png (default: --runs-dir)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    {"build": build, "train": train, "eval": evaluate, "plot": plot}[args.command](args)


if __name__ == "__main__":
    main()
