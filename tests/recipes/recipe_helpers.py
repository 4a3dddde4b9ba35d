"""Shared facts of the recipe tests: where recipes and data live, how a recipe splits into sections."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
DATASET_INFO = json.loads((REPO / "data" / "dataset_info.json").read_text())
SECTIONS = ["model", "method", "dataset", "output", "train"]

# The architecture family of every model a recipe names: the miniature run swaps in a tiny model of that family.
ARCHITECTURE = {
    "Qwen/Qwen2.5-3B-Instruct": "qwen2",
    "Qwen/Qwen2.5-Math-7B": "qwen2",
    "meta-llama/Llama-2-7b-chat-hf": "llama",
    "models/tiny-qwen2": "qwen2",
    "models/smollm2-135m-instruct": "llama",
}


def sections(path: Path) -> tuple[str, dict[str, dict]]:
    """(header comment, {section name: its keys}) of a recipe written in ``### name`` sections."""
    header, *chunks = path.read_text().split("\n### ")
    parsed = {}
    for chunk in chunks:
        name, _, body = chunk.partition("\n")
        parsed[name.strip()] = yaml.safe_load(body) or {}
    return header, parsed


def shipped(dataset: str) -> bool:
    """A data set whose file ships in data/ (small already: it needs no ``_sample`` twin)."""
    entry = DATASET_INFO.get(dataset, {})
    return "file_name" in entry and (REPO / "data" / entry["file_name"]).is_file()


def config(path: Path) -> dict:
    return yaml.safe_load(path.read_text())
