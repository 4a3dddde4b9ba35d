"""Evaluation of the few-shot study: every checkpoint (and the in-context baseline) predicted by llamafactory-cli.

``eval`` runs ``llamafactory-cli train`` with do_predict and predict_with_generate (greedy) on each checkpoint, over
the IID test split and Banking77 in one pass, and scores generated_predictions.jsonl (rules:
prefixmemory_study.fewshot.scoring). ``--icl`` adds the in-context baseline: the base model, through the same
predict path, with the round's examples as earlier chat turns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import predict
from ..predict import parse_overrides, run_llamafactory
from ..records import alpaca_records, user_text
from . import data as fewshot_data
from . import report, scoring
from .runs import MANIFEST, data_name, has_adapter, read_json

LABEL_SETS = {
    "bbh_date": fewshot_data.BBH_LABELS,
    "goemotions": fewshot_data.GOEMOTIONS_LABELS,
    "dbpedia": fewshot_data.DBPEDIA_LABELS,
    "banking77": fewshot_data.BANKING77_LABELS,
}
RESULTS = "fewshot_results.json"


def label_set(dataset: str, golds: list[str]) -> tuple[str, ...]:
    for prefix, labels in LABEL_SETS.items():
        if dataset.startswith(prefix):
            return labels
    return tuple(sorted(set(golds)))


def checkpoints(output_dir: Path) -> list[tuple[str, Path, int | None]]:
    """(name, folder, step) of every checkpoint-N and of the final save, without duplicate steps, by step."""
    found = {}
    for folder in output_dir.glob("checkpoint-*"):
        if folder.name.split("-")[-1].isdigit() and has_adapter(folder):
            found[int(folder.name.split("-")[-1])] = (folder.name, folder)
    if has_adapter(output_dir):
        step = read_json(output_dir / "trainer_state.json", {}).get("global_step")
        found[step] = ("final", output_dir)  # replaces checkpoint-<last step>: the same weights
    return [
        (name, folder, step)
        for step, (name, folder) in sorted(found.items(), key=lambda item: report.step_order(item[0]))
    ]


def _predict_config(run_config: dict, args, eval_dataset: str, output_dir: Path, adapter: Path | None) -> dict:
    return predict.predict_config(run_config, eval_dataset, output_dir, adapter, args.max_new_tokens, args.batch_size,
                                  args.max_samples, parse_overrides(args.set))  # fmt: skip


def expected_records(datasets: list[str], dataset_dir: str, max_samples: int | None):
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
    expected = expected_records(datasets, config["dataset_dir"], config.get("max_samples"))
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
    runs = read_json(runs_dir / MANIFEST, {"runs": []})["runs"]
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
            out = runs_dir / "predictions" / run["model"] / run["method"] / run["task"] / data_name(run) / name
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
