"""The supported-families tables of README.md and docs/design.md, rendered from the one table of families.

Rows come from ``prefixmemory.architectures.ATTENTION_LAYOUTS``; the LLaMA-Factory templates from the tiny models
the tests train (``prefixmemory_study.tiny.ARCHITECTURES``); the vLLM column from the serving plugin's
``SERVED`` / ``NOT_SERVED``. ``python tests/family_table.py`` prints both tables, to paste after a row changes;
tests/test_family_docs.py holds the documents to them.
"""

from __future__ import annotations

from prefixmemory.architectures import ATTENTION_LAYOUTS
from prefixmemory_study.tiny import ARCHITECTURES as TINY_MODELS
from prefixmemory_vllm.families import NOT_SERVED, SERVED

UNTRAINED_MARK = "†"
UNTRAINED_NOTE = (
    f"{UNTRAINED_MARK} LLaMA-Factory needs the model's image processor with this template; its runs are not tested "
    "here (the tiny models have none), the method's tests cover the family."
)


def needs_processor(tiny: dict) -> bool:
    """A tiny model LLaMA-Factory cannot train without an image processor: a vision-language model, or a template
    with a multimodal plugin."""
    from llamafactory.data.template import TEMPLATES

    return "vision_config" in tiny or type(TEMPLATES[tiny["template"]].mm_plugin).__name__ != "BasePlugin"


def templates(model_type: str) -> str:
    """The LLaMA-Factory templates the tests use for ``model_type``, marked where LLaMA-Factory's run is untested."""
    tinies = [tiny for tiny in TINY_MODELS.values() if tiny["model_type"] == model_type]
    names = ", ".join(f"`{name}`" for name in dict.fromkeys(tiny["template"] for tiny in tinies))
    return names + (UNTRAINED_MARK if any(needs_processor(tiny) for tiny in tinies) else "")


def vllm(model_type: str, reason: bool) -> str:
    if model_type in SERVED:
        return "yes"
    return f"no: {NOT_SERVED[model_type]}" if reason else "no"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows), "", UNTRAINED_NOTE])


def readme_table() -> str:
    """Family, model_type, where q is read, LLaMA-Factory template, vLLM (yes / no)."""
    rows = [
        [row.family, f"`{model_type}`", f"`{row.query_read}`", templates(model_type), vllm(model_type, False)]
        for model_type, row in ATTENTION_LAYOUTS.items()
    ]
    return _table(["family", "model_type", "q read at", "LLaMA-Factory template", "vLLM"], rows)


def design_table() -> str:
    """The README's columns, plus where the term is added, the decoder layers' path, the row's note and vLLM's
    reason."""
    rows = [
        [
            row.family,
            f"`{model_type}`",
            f"`{row.query_read}`",
            f"`{row.output_module}` input",
            f"`{row.layers}`",
            templates(model_type),
            vllm(model_type, True),
            row.note or "",
        ]  # fmt: skip
        for model_type, row in ATTENTION_LAYOUTS.items()
    ]
    header = ["family", "model_type", "q read at", "term added at", "decoder layers", "LLaMA-Factory template"]
    return _table([*header, "vLLM", "note"], rows)


if __name__ == "__main__":
    print(readme_table(), design_table(), sep="\n\n")
