"""LLaMA-Factory's own predict path, shared by every evaluation: a config, a ``llamafactory-cli train`` run, its file.

Every benchmark generates the same way: ``llamafactory-cli train`` with ``do_predict`` and ``predict_with_generate``
(greedy), the training recipe's model and prompt settings, and the adapter under test (or none, for the base model).
LLaMA-Factory writes one JSON line per record to ``generated_predictions.jsonl`` (``prompt``, ``predict``,
``label``), in the order of the evaluation set.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

# Kept from the training recipe when predicting: what decides how the model and the prompt are built.
# disable_gradient_checkpointing: finetuning_type prefix refuses to load without it, also to predict.
PREDICT_KEYS = ("model_name_or_path", "template", "default_system", "enable_thinking", "cutoff_len", "dataset_dir",
                "finetuning_type", "trust_remote_code", "bf16", "fp16", "infer_dtype", "flash_attn",
                "disable_gradient_checkpointing")  # fmt: skip
PREDICTIONS = "generated_predictions.jsonl"


def parse_overrides(pairs: list[str] | None) -> dict:
    """``key=value`` strings -> dict, values read as YAML (``max_steps=100`` is an int, ``bf16=false`` a bool)."""
    overrides = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"`--set` expects key=value, got {pair!r}.")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def predict_config(
    recipe: dict, eval_dataset: str, output_dir: Path, adapter: Path | None, max_new_tokens: int = 32,
    batch_size: int = 8, max_samples: int | None = None, overrides: dict | None = None,
) -> dict:  # fmt: skip
    """The predict run of ``adapter`` (None: the base model) on ``eval_dataset``, from a training recipe's config;
    ``max_samples``: the first N records (None: all); ``overrides``: any key, applied last."""
    config = {key: recipe[key] for key in PREDICT_KEYS if key in recipe}
    if adapter is not None and recipe.get("finetuning_type") in ("full", "freeze"):
        config["model_name_or_path"] = str(adapter)  # full fine-tuning saves whole models
    elif adapter is not None:
        config["adapter_name_or_path"] = str(adapter)
    if adapter is None:  # the base model as it is: lora with no adapter adds nothing (prefix would add a fresh one)
        config["finetuning_type"] = "lora"
    config.update({
        "stage": "sft", "do_train": False, "do_predict": True, "predict_with_generate": True, "do_sample": False,
        "eval_dataset": eval_dataset, "output_dir": str(output_dir), "overwrite_output_dir": True,
        "max_new_tokens": max_new_tokens, "per_device_eval_batch_size": batch_size, "report_to": "none",
    })  # fmt: skip
    if max_samples:
        config["max_samples"] = max_samples
    config.update(overrides or {})
    return config


def run_llamafactory(config: dict, config_path: Path) -> None:
    """``llamafactory-cli train <config_path>``, its output in <config_path>.log; raises with the log's tail."""
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    executable = shutil.which("llamafactory-cli")
    argv = [executable] if executable else [sys.executable, "-m", "llamafactory.cli"]
    log_path = config_path.with_suffix(".log")
    print(f"llamafactory-cli train {config_path}  (log: {log_path})", flush=True)
    with open(log_path, "w") as log:
        result = subprocess.run([*argv, "train", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"llamafactory-cli train {config_path} failed ({result.returncode}):\n{tail}")


def read_predictions(path: str | Path) -> list[dict]:
    """The rows of a generated_predictions.jsonl (or of the folder holding one): prompt, predict, label."""
    path = Path(path)
    if path.is_dir():
        path = path / PREDICTIONS
    if not path.is_file():
        raise FileNotFoundError(f"no {PREDICTIONS} at {path}: run the predict step first.")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for number, row in enumerate(rows, 1):
        if not {"prompt", "predict", "label"} <= set(row):
            raise ValueError(f"{path}:{number}: expected the keys prompt, predict, label; got {sorted(row)}.")
    return rows


def adapter_folder(path: str | None) -> Path | None:
    """The ``--adapter`` folder, resolved; refused before any model loads when it holds no adapter or model."""
    if path is None:
        return None
    folder = Path(path).resolve()
    if not any((folder / name).is_file() for name in ("adapter_config.json", "config.json")):
        raise ValueError(f"`--adapter` {path}: no adapter_config.json or config.json there (a trained run's folder).")
    return folder


def predict(recipe_path: str | Path, eval_dataset: str, output_dir: Path, adapter: Path | None, **settings) -> Path:
    """Generate with ``adapter`` (or the base model) on ``eval_dataset`` (settings: as predict_config's); returns
    the predictions file. The recipe's relative paths are read from the current folder, as llamafactory-cli does."""
    recipe = yaml.safe_load(Path(recipe_path).read_text())
    recipe["dataset_dir"] = str(Path(recipe.get("dataset_dir", "data")).resolve())
    if Path(recipe["model_name_or_path"]).exists():  # a local folder; a hub id stays as it is
        recipe["model_name_or_path"] = str(Path(recipe["model_name_or_path"]).resolve())
    config = predict_config(recipe, eval_dataset, output_dir.resolve(), adapter, **settings)
    run_llamafactory(config, output_dir / "predict.yaml")
    return output_dir / PREDICTIONS
