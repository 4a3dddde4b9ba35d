"""Scoring generated labels against gold labels (few-shot study, section 6.1), with rules stated and tested.

Two rules, both kept here. ``first_line``, the recipe pack's (``prefixmemory-fewshot-data score``): the first
non-empty line, surrounding space and final periods dropped, case folded. ``normalize``, the study's
(``prefixmemory-fewshot eval``), accepts everything the first rule accepts, and adds:

- wrapping quotes, backticks and markdown emphasis are dropped: ``"**Company**"`` -> ``company``;
- a leading ``Answer:``, ``Label:``, ``Intent:``, ``Class:``, ``Category:`` or ``Emotion:`` is dropped;
- ``_``, ``-`` and runs of spaces are the same: ``card arrival`` == ``card_arrival``;
- for option-letter label sets such as BIG-Bench's ``(A)``..``(F)``: ``A``, ``A)``, ``(a)`` all mean ``(A)``.

A prediction is correct when it equals the gold label after normalisation: exact label match, never a substring
search. Extra text: anything after the first line is ignored (``Company\\nBecause ...`` is correct); extra text on the
first line makes the prediction wrong (``Company, because ...``, ``Company or Artist``). A prediction that matches no
label of the set is wrong and also counted as ``off_label``. Ties cannot happen: a prediction is one string, and
``label_index`` refuses a label set in which two labels normalise alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_WRAPPERS = "\"'`*“”‘’"
_ANSWER_PREFIX = re.compile(r"^(?:answer|label|intent|class|emotion|category)\s*[:：]\s*")
_SEPARATORS = re.compile(r"[\s_\-]+")
_OPTION = re.compile(r"^\(?([a-z])\)?$")


def first_line(text: str) -> str:
    """The recipe pack's rule: first non-empty line, stripped, final periods dropped, case folded."""
    lines = text.strip().splitlines()
    return lines[0].strip().rstrip(".").strip().casefold() if lines else ""


def accuracy(predictions_file: str | Path) -> tuple[int, int]:
    """(correct, total) under ``first_line`` over a LLaMA-Factory generated_predictions.jsonl (predict, label)."""
    rows = [json.loads(line) for line in Path(predictions_file).read_text().splitlines() if line.strip()]
    return sum(first_line(row["predict"]) == first_line(row["label"]) for row in rows), len(rows)


def normalize(text: str) -> str:
    """The study's canonical form of a label or a prediction (no label set needed); builds on ``first_line``."""
    text = first_line(text)
    previous = None
    while text != previous:  # `"**Answer: Company.**"` needs several passes
        previous = text
        text = text.strip().strip(_WRAPPERS).strip().rstrip(".").strip()
        text = _ANSWER_PREFIX.sub("", text)
    return _SEPARATORS.sub(" ", text).strip()


def _is_option_set(labels) -> bool:
    return bool(labels) and all(re.fullmatch(r"\([a-z]\)", normalize(label)) for label in labels)


def canonical(text: str, option_letters: bool = False) -> str:
    """``normalize``, and for option-letter label sets a bare or half-bracketed letter read as ``(x)``."""
    text = normalize(text)
    match = _OPTION.match(text) if option_letters else None
    return f"({match.group(1)})" if match else text


def label_index(labels) -> dict[str, str]:
    """canonical form -> label; raises if two labels of the set collide (which would make ties possible)."""
    option_letters = _is_option_set(labels)
    index: dict[str, str] = {}
    for label in labels:
        key = canonical(label, option_letters)
        if key in index and index[key] != label:
            raise ValueError(f"labels {index[key]!r} and {label!r} are the same after normalisation.")
        index[key] = label
    return index


def match(prediction: str, labels) -> str | None:
    """The label of ``labels`` that ``prediction`` names, or None."""
    return label_index(labels).get(canonical(prediction, _is_option_set(labels)))


def score(predictions: list[str], golds: list[str], labels=None) -> dict:
    """correct / total / accuracy (%) / off_label of predictions against golds.

    ``labels``: the task's label set (default: the golds seen); it decides whether option letters apply and what
    counts as off-label. A prediction is correct iff its canonical form is the gold label's.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels.")
    label_set = sorted(set(labels or ()) | set(golds))
    index = label_index(label_set)
    option_letters = _is_option_set(label_set)
    canonical_predictions = [canonical(p, option_letters) for p in predictions]
    correct = sum(p == canonical(g, option_letters) for p, g in zip(canonical_predictions, golds, strict=True))
    total = len(golds)
    return {
        "correct": correct,
        "total": total,
        "accuracy": 100.0 * correct / total if total else 0.0,
        "off_label": sum(p not in index for p in canonical_predictions),
    }
