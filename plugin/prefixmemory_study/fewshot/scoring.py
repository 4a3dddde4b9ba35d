"""The one label-matching rule of the few-shot study (section 6.1), used by every command that scores labels.

A prediction is correct when it *equals* the gold label after both are normalised, never by substring search.
Normalisation, in order (the paper gives no rule; each step undoes a harmless formatting habit of chat models):

- only the first non-empty line counts: ``Company\nBecause ...`` is ``Company``; an empty answer matches nothing;
- case is folded and surrounding space dropped: `` ANGER `` is ``anger``;
- final periods, wrapping quotes, backticks and markdown emphasis are dropped: ``"**Company**."`` is ``company``;
- a leading ``Answer:``, ``Label:``, ``Intent:``, ``Class:``, ``Category:`` or ``Emotion:`` is dropped;
- ``_``, ``-`` and runs of spaces are the same: ``card arrival`` == ``Card-Arrival`` == ``card_arrival``;
- for option-letter label sets such as BIG-Bench's ``(A)``..``(F)``: ``A``, ``A)``, ``(a)`` all mean ``(A)``;
  for other label sets a bare letter is just that letter.

Extra text on the first line makes the prediction wrong (``Company, because ...``, ``Company or Artist``,
``(A) 03/08/2024``). A prediction that matches no label of the set is wrong and also counted as ``off_label``.
Ties cannot happen: a prediction is one string, and ``label_index`` refuses a label set in which two labels
normalise alike.
"""

from __future__ import annotations

import re

_WRAPPERS = "\"'`*“”‘’"
_ANSWER_PREFIX = re.compile(r"^(?:answer|label|intent|class|emotion|category)\s*[:：]\s*")
_SEPARATORS = re.compile(r"[\s_\-]+")
_OPTION = re.compile(r"^\(?([a-z])\)?$")


def normalize(text: str) -> str:
    """The canonical form of a label or a prediction (no label set needed): the rule above, bar option letters."""
    lines = text.strip().splitlines()
    text = lines[0].casefold() if lines else ""
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
