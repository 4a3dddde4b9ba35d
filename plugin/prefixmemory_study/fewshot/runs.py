"""The runs of the few-shot study: one per recipe and round, trained by llamafactory-cli, recorded in a manifest.

Runs whose output folder already holds an adapter are not trained again, so checkpoints trained elsewhere are taken
as they are (``--no-train``, ``--set output_dir=.../round{round}``). ``--growing`` trains run k on rounds 1..k
combined (``dataset: <task>_round1,...,<task>_round<k>``), the accuracy-versus-training-size protocol of Figures 5,
8 and 9; those runs stay out of Table 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from ..labels import method_label
from ..predict import parse_overrides, run_llamafactory
from ..records import alpaca_records

ROUND_DATASET = re.compile(r"^(?P<task>.+)_round(?P<round>\d+)(?P<suffix>.*)$")
MANIFEST = "fewshot_runs.json"


def has_adapter(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("adapter_config.json", "config.json"))


def read_json(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default


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
        config["output_dir"] = str(runs_dir / model / method / task / data_name({"round": k, "protocol": protocol}))
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


def data_name(run: dict) -> str:
    """round<k>, or rounds1-<k> for a growing-data run."""
    return f"rounds1-{run['round']}" if run.get("protocol") == "growing" else f"round{run['round']}"


def _run_key(run: dict) -> tuple:
    return run["model"], run["method"], run["task"], run["round"], run.get("protocol", "round")


def _save_manifest(runs_dir: Path, runs: list[dict]) -> None:
    path = runs_dir / MANIFEST
    known = {_run_key(r): r for r in read_json(path, {"runs": []})["runs"]}
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
        config_path = runs_dir / "configs" / f"{run['model']}_{run['method']}_{run['task']}_{data_name(run)}.yaml"
        trained = has_adapter(Path(run["output_dir"]))
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
