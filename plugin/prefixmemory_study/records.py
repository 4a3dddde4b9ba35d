"""Data sets as LLaMA-Factory reads them: the dataset_info.json registry, alpaca records, the user turn they make."""

from __future__ import annotations

import json
from pathlib import Path

REGISTRY = "dataset_info.json"
ALPACA_COLUMNS = {"prompt": "instruction", "query": "input", "response": "output"}


def read_registry(dataset_dir: str | Path) -> dict:
    """The entries of ``dataset_dir``/dataset_info.json ({} when there is none)."""
    path = Path(dataset_dir) / REGISTRY
    return json.loads(path.read_text()) if path.is_file() else {}


def register(dataset_dir: str | Path, entries: dict) -> None:
    """Add or replace ``entries`` in the registry, keeping every other entry and the order of those already there."""
    info = read_registry(dataset_dir)
    info.update(entries)
    (Path(dataset_dir) / REGISTRY).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n")


def alpaca_records(name: str, dataset_dir: str | Path) -> tuple[list[dict], dict]:
    """Records of a locally registered alpaca data set, and its column names (prompt, query, response)."""
    entry = read_registry(dataset_dir).get(name)
    if not entry or "file_name" not in entry or entry.get("formatting", "alpaca") != "alpaca":
        registry = Path(dataset_dir) / REGISTRY
        raise ValueError(f"`{name}` must be an alpaca data set with a local file_name in {registry}.")
    columns = {**ALPACA_COLUMNS, **entry.get("columns", {})}
    return json.loads((Path(dataset_dir) / entry["file_name"]).read_text()), columns


def read_records(source: str, dataset_dir: str | Path = "data") -> list:
    """Records of a file (.json list, .jsonl, or .txt: one text per line) or of a dataset registered in
    ``dataset_dir``/dataset_info.json, with a local ``file_name`` or an ``hf_hub_url`` (its subset and split)."""
    path = Path(source)
    if not path.is_file():
        entry = read_registry(dataset_dir).get(source, {})
        if "hf_hub_url" in entry:
            from datasets import load_dataset

            split = entry.get("split", "train")
            return list(load_dataset(entry["hf_hub_url"], entry.get("subset"), split=split))
        if "file_name" not in entry:
            raise ValueError(
                f"`{source}` is neither a file nor a dataset with a local file_name or an hf_hub_url in "
                f"{Path(dataset_dir) / REGISTRY}."
            )
        path = Path(dataset_dir) / entry["file_name"]
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if path.suffix == ".json":
        return json.loads(text)
    return [line for line in text.splitlines() if line.strip()]


def user_text(record: dict, columns: dict = ALPACA_COLUMNS) -> str:
    """The user turn LLaMA-Factory's alpaca converter builds: prompt and query joined by a newline (empty ones out)."""
    return "\n".join(record[columns[k]] for k in ("prompt", "query") if record.get(columns[k]))


def record_text(record) -> str:
    """The text a record shows the model: a string as is; an alpaca record's user turn; else ``text``, ``prompt``,
    ``query``, ``content``, ``question`` (TruthfulQA) or ``problem``."""
    if isinstance(record, str):
        return record
    if "instruction" in record:
        return user_text(record)
    for key in ("text", "prompt", "query", "content", "question", "problem"):
        if isinstance(record.get(key), str):
            return record[key]
    raise ValueError(f"cannot find the text of record with keys {sorted(record)}: expected instruction/input or text.")
