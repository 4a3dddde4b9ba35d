"""prefixmemory-fewshot: the few-shot classification study of section 6.1, end to end, through LLaMA-Factory.

    prefixmemory-fewshot build                                      # the recipe pack's builder: data/fewshot/
    prefixmemory-fewshot train recipes/qwen2.5_fewshot_bbh_pmt.yaml recipes/qwen2.5_fewshot_bbh_lora.yaml
    prefixmemory-fewshot eval --icl                                 # every checkpoint, IID + Banking77 OOD
    prefixmemory-fewshot train --growing recipes/qwen2.5_fewshot_bbh_pmt.yaml   # Figure 5: rounds 1..k combined
    prefixmemory-fewshot plot                                       # Table 1, Pareto and growing-data plots

``train`` runs ``llamafactory-cli train`` on each recipe once per round (dataset ``<task>_round<k>``) and records the
runs in <runs-dir>/fewshot_runs.json; runs whose output folder already holds an adapter are not trained again, so
checkpoints trained elsewhere are taken as they are (``--no-train``, ``--set output_dir=.../round{round}``).
``--growing`` trains run k on rounds 1..k combined (``dataset: <task>_round1,...,<task>_round<k>``), the
accuracy-versus-training-size protocol of Figures 5, 8 and 9; those runs stay out of Table 1.
``eval`` runs ``llamafactory-cli train`` with do_predict and predict_with_generate (greedy) on each checkpoint, over
the IID test split and Banking77 in one pass, and scores generated_predictions.jsonl (rules:
prefixmemory_study.fewshot.scoring). ``--icl`` adds the in-context baseline: the base model, through the same
predict path, with the round's examples as earlier chat turns. ``plot`` writes the table and the Pareto plots.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from .. import predict
from ..labels import method_label
from ..predict import parse_overrides, run_llamafactory
from ..records import alpaca_records, user_text
from . import data as fewshot_data
from . import report, scoring

LABEL_SETS = {
    "bbh_date": fewshot_data.BBH_LABELS,
    "goemotions": fewshot_data.GOEMOTIONS_LABELS,
    "dbpedia": fewshot_data.DBPEDIA_LABELS,
    "banking77": fewshot_data.BANKING77_LABELS,
}
ROUND_DATASET = re.compile(r"^(?P<task>.+)_round(?P<round>\d+)(?P<suffix>.*)$")
MANIFEST = "fewshot_runs.json"
RESULTS = "fewshot_results.json"


# ---------------------------------------------------------------- helpers


def label_set(dataset: str, golds: list[str]) -> tuple[str, ...]:
    for prefix, labels in LABEL_SETS.items():
        if dataset.startswith(prefix):
            return labels
    return tuple(sorted(set(golds)))


def _has_adapter(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("adapter_config.json", "config.json"))


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default


# ---------------------------------------------------------------- build


def build(args) -> None:
    entries = fewshot_data.write_sets(
        fewshot_data.build_sets(fewshot_data.fetch, args.seed, args.rounds), args.data_dir
    )
    print(f"wrote {len(entries)} datasets to {Path(args.data_dir) / 'fewshot'} and registered them")


# ---------------------------------------------------------------- train


def round_task(dataset: str) -> tuple[str, str]:
    """(task, suffix) of a round or of rounds combined: ``bbh_date_round1,bbh_date_round2_sample`` is refused,
    ``bbh_date_round1,bbh_date_round2`` -> (``bbh_date``, ``""``), ``goemotions_round3_sample`` -> (``goemotions``,
    ``_sample``)."""
    parts = [ROUND_DATASET.match(name.strip()) for name in str(dataset).split(",")]
    if not all(parts) or len({(part["task"], part["suffix"]) for part in parts}) != 1:
        raise ValueError(
            f"`dataset` must name rounds of one task, like bbh_date_round1 or bbh_date_round1,bbh_date_round2; "
            f"got {dataset!r}."
        )
    return parts[0]["task"], parts[0]["suffix"]


def _examples(datasets: str, dataset_dir: str) -> int | None:
    """Training records of the (comma-separated) data sets; None when one is not a local alpaca file."""
    try:
        return sum(len(alpaca_records(name, dataset_dir)[0]) for name in datasets.split(","))
    except (ValueError, OSError):
        return None


def round_runs(recipe: Path, rounds: list[int], runs_dir: Path, overrides: dict, method: str | None,
               growing: bool = False) -> list[dict]:  # fmt: skip
    """One run per round of ``recipe``: its manifest entry with the LLaMA-Factory config to train it.
    ``growing``: run k trains on rounds 1..k combined (Figures 5, 8, 9), in its own folder ``rounds1-<k>``."""
    base = yaml.safe_load(recipe.read_text())
    try:
        task, suffix = round_task(base.get("dataset", ""))
    except ValueError as err:
        raise ValueError(f"{recipe}: {err}") from None
    model = Path(str(base["model_name_or_path"]).rstrip("/")).name
    method = method or method_label(base.get("finetuning_type", "lora"))
    if method == "LoRA" and base.get("loraplus_lr_ratio"):
        method = "LoRA+"
    runs, protocol = [], "growing" if growing else "round"
    for k in rounds:
        config = dict(base)
        config["dataset"] = ",".join(f"{task}_round{j}{suffix}" for j in (range(1, k + 1) if growing else [k]))
        config["output_dir"] = str(runs_dir / model / method / task / _data_name({"round": k, "protocol": protocol}))
        config.update(
            {key: value.format(round=k) if isinstance(value, str) else value for key, value in overrides.items()}
        )
        config["output_dir"] = str(Path(config["output_dir"]).resolve())
        config["dataset_dir"] = str(Path(config.get("dataset_dir", "data")).resolve())
        if Path(config["model_name_or_path"]).exists():  # a local folder; a hub id stays as it is
            config["model_name_or_path"] = str(Path(config["model_name_or_path"]).resolve())
        runs.append({"model": model, "method": method, "task": task, "round": k,
                     "protocol": protocol,
                     "train_examples": _examples(config["dataset"], config["dataset_dir"]),
                     "finetuning_type": config.get("finetuning_type", "lora"), "output_dir": config["output_dir"],
                     "recipe": str(recipe), "config": config})  # fmt: skip
    return runs


def _data_name(run: dict) -> str:
    """round<k>, or rounds1-<k> for a growing-data run."""
    return f"rounds1-{run['round']}" if run.get("protocol") == "growing" else f"round{run['round']}"


def _run_key(run: dict) -> tuple:
    return run["model"], run["method"], run["task"], run["round"], run.get("protocol", "round")


def _save_manifest(runs_dir: Path, runs: list[dict]) -> None:
    path = runs_dir / MANIFEST
    known = {_run_key(r): r for r in _read_json(path, {"runs": []})["runs"]}
    known.update({_run_key(r): r for r in runs})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": list(known.values())}, indent=1) + "\n")


def train(args) -> None:
    runs_dir, overrides = Path(args.runs_dir), parse_overrides(args.set)
    runs = [
        run
        for recipe in args.recipes
        for run in round_runs(Path(recipe), args.rounds, runs_dir, overrides, args.method, args.growing)
    ]
    keys = [_run_key(run) for run in runs]
    if len(set(keys)) < len(keys):
        raise ValueError("two recipes give the same model, method, task and round: train them in separate calls "
                         "with different --method labels.")  # fmt: skip
    for run in runs:
        config_path = runs_dir / "configs" / f"{run['model']}_{run['method']}_{run['task']}_{_data_name(run)}.yaml"
        trained = _has_adapter(Path(run["output_dir"]))
        if args.no_train or (trained and not args.force):
            state = "found" if trained else "MISSING"
            print(
                f"{run['method']} {run['task']} round {run['round']}: not trained here ({state}: {run['output_dir']})"
            )
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(yaml.safe_dump(run["config"], sort_keys=False))
        else:
            run_llamafactory(run["config"], config_path)
        _save_manifest(runs_dir, [run])  # after each run: an interrupted study keeps what it finished


# ---------------------------------------------------------------- eval


def checkpoints(output_dir: Path) -> list[tuple[str, Path, int | None]]:
    """(name, folder, step) of every checkpoint-N and of the final save, without duplicate steps, by step."""
    found = {}
    for folder in output_dir.glob("checkpoint-*"):
        if folder.name.split("-")[-1].isdigit() and _has_adapter(folder):
            found[int(folder.name.split("-")[-1])] = (folder.name, folder)
    if _has_adapter(output_dir):
        step = _read_json(output_dir / "trainer_state.json", {}).get("global_step")
        found[step] = ("final", output_dir)  # replaces checkpoint-<last step>: the same weights
    return [
        (name, folder, step)
        for step, (name, folder) in sorted(found.items(), key=lambda item: report.step_order(item[0]))
    ]


def _predict_config(run_config: dict, args, eval_dataset: str, output_dir: Path, adapter: Path | None) -> dict:
    return predict.predict_config(run_config, eval_dataset, output_dir, adapter, args.max_new_tokens, args.batch_size,
                                  args.max_samples, parse_overrides(args.set))  # fmt: skip


def _expected(datasets: list[str], dataset_dir: str, max_samples: int | None):
    """Per data set, (records, columns) as LLaMA-Factory will read them (the first max_samples)."""
    return [
        (records[:max_samples] if max_samples else records, columns)
        for records, columns in (alpaca_records(name, dataset_dir) for name in datasets)
    ]


def score_predictions(path: Path, names: list[str], expected) -> dict:
    """Split one generated_predictions.jsonl over the data sets it covers (in order) and score each part."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    total = sum(len(records) for records, _ in expected)
    if len(rows) != total:
        raise ValueError(f"{path}: {len(rows)} predictions, {total} records expected: rerun eval with --force.")
    scores, start = {}, 0
    for name, (records, columns) in zip(names, expected, strict=True):
        part, start = rows[start : start + len(records)], start + len(records)
        golds = [record[columns["response"]] for record in records]
        if any(
            scoring.normalize(row["label"]) != scoring.normalize(gold) for row, gold in zip(part, golds, strict=True)
        ):
            raise ValueError(f"{path}: the predictions do not line up with {name}: rerun eval with --force.")
        result = scoring.score([row["predict"] for row in part], golds, label_set(name, golds))
        squash = lambda text: re.sub(r"\s+", "", text)  # noqa: E731 - decoding may move spaces, never drop text
        ends = [squash(user_text(record, columns))[-24:] for record in records]
        result["truncated"] = sum(end not in squash(row["prompt"]) for end, row in zip(ends, part, strict=True))
        scores[name] = {"dataset": name, **result}
    return scores


def _evaluate(config: dict, datasets: list[str], out: Path, args) -> dict:
    """Predict (unless a complete prediction file is there) and score; returns {"iid": ..., "ood": ...}."""
    path = out / "generated_predictions.jsonl"
    expected = _expected(datasets, config["dataset_dir"], config.get("max_samples"))
    if args.force or not path.is_file():
        run_llamafactory(config, out / "predict.yaml")
    scores = score_predictions(path, datasets, expected)
    truncated = sum(s["truncated"] for s in scores.values())
    if truncated:
        print(f"WARNING {out}: {truncated} prompts were cut by cutoff_len={config.get('cutoff_len')}; raise it.")
    return {"iid": scores[datasets[0]], "ood": scores[datasets[1]], "predictions": str(path)}


def icl_data(run: dict, datasets: list[str], folder: Path) -> None:
    """Writes folder/dataset_info.json and the two eval sets with the round's examples as earlier chat turns."""
    dataset_dir = run["config"]["dataset_dir"]
    demos, demo_columns = alpaca_records(run["config"]["dataset"], dataset_dir)
    history = [[user_text(d, demo_columns), d[demo_columns["response"]]] for d in demos]
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for name in datasets:
        records, columns = alpaca_records(name, dataset_dir)
        rows = [{"instruction": user_text(r, columns), "output": r[columns["response"]], "history": history}
                for r in records]  # fmt: skip
        (folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False))
        info[name] = {"file_name": f"{name}.json", "columns": {"prompt": "instruction", "response": "output",
                                                              "history": "history"}}  # fmt: skip
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=1))


def evaluate(args) -> None:
    runs_dir = Path(args.runs_dir)
    runs = _read_json(runs_dir / MANIFEST, {"runs": []})["runs"]
    if not runs:
        raise SystemExit(f"no runs in {runs_dir / MANIFEST}: run `prefixmemory-fewshot train` first.")
    evaluations = []
    for run in runs:
        datasets = [args.iid_dataset.format(task=run["task"]), args.ood_dataset.format(task=run["task"])]
        found = checkpoints(Path(run["output_dir"]))
        if args.checkpoints == "final":
            found = found[-1:]
        if not found:
            print(f"WARNING no checkpoint in {run['output_dir']}: skipped")
        for name, folder, step in found:
            out = runs_dir / "predictions" / run["model"] / run["method"] / run["task"] / _data_name(run) / name
            config = _predict_config(run["config"], args, ",".join(datasets), out, folder)
            evaluations.append(
                {**_key(run), "checkpoint": name, "step": step, **_evaluate(config, datasets, out, args)}
            )
    if args.icl:
        single = [r for r in runs if r.get("protocol", "round") == "round"]  # ICL: a round's examples in the prompt
        for run in {(r["model"], r["task"], r["round"]): r for r in single}.values():
            datasets = [args.iid_dataset.format(task=run["task"]), args.ood_dataset.format(task=run["task"])]
            out = runs_dir / "predictions" / run["model"] / "ICL" / run["task"] / f"round{run['round']}" / "icl"
            icl_data(run, datasets, out / "data")
            config = _predict_config(run["config"], args, ",".join(datasets), out, None)
            config.update(dataset_dir=str(out / "data"), cutoff_len=args.icl_cutoff_len)
            evaluations.append({**_key(run), "method": "ICL", "checkpoint": "icl", "step": None,
                                **_evaluate(config, datasets, out, args)})  # fmt: skip
    results = {"label_matching": scoring.__doc__.strip(), "evaluations": evaluations,
               "summary": report.summarize(evaluations)}  # fmt: skip
    (runs_dir / RESULTS).write_text(json.dumps(results, indent=1) + "\n")
    for entry in results["summary"]:
        iid, ood = entry["iid_mean"], entry["ood_mean"]
        print(f"{entry['model']} {entry['method']:>6} {entry['task']}: IID {iid:.1f}%  OOD {ood:.1f}%")
    print(f"wrote {runs_dir / RESULTS}")


def _key(run: dict) -> dict:
    return {"model": run["model"], "method": run["method"], "task": run["task"], "round": run["round"],
            "protocol": run.get("protocol", "round"), "train_examples": run.get("train_examples")}  # fmt: skip


# ---------------------------------------------------------------- plot


def plot(args) -> None:
    runs_dir = Path(args.runs_dir)
    out = Path(args.output_dir or runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _read_json(runs_dir / RESULTS, None)
    if results is None:
        raise SystemExit(f"no {runs_dir / RESULTS}: run `prefixmemory-fewshot eval` first.")
    written = [report.write_tables(results["summary"], out / "fewshot_table.md")]
    single, growing = report.split_protocols(results["evaluations"])
    for task in sorted({row["task"] for row in single}):
        written.append(report.plot_pareto(single, task, out / f"pareto_{task}.png"))
    for task in sorted({row["task"] for row in growing}):
        written.append(report.plot_growth(growing, task, out / f"growth_{task}.png"))
    print("wrote " + ", ".join(map(str, written)))


# ---------------------------------------------------------------- command line


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
