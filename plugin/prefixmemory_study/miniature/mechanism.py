"""Section 4's trade-off on a real model: accuracy and the prefix's share of each output as the input grows.

The adapters trained on the ``emotion`` task (4 filler sentences) answer the same test rows with more and more
filler around the one sentence that carries the emotion. The share is, per token and layer, averaged:
- prefix-tuning: alpha, the softmax mass its 32 virtual tokens take (the quantity of section 4, eq. 5);
- PMT: ||phi(q) M|| / ||o||, the memory term's share of the attention output it is added to.
Both come from prefixmemory_study.diagnostics.probes, as ``prefixmemory-diagnose tradeoff`` computes them.
"""

from __future__ import annotations

import torch

from . import loop

SHARE_ROWS = 6  # rows whose attention is probed per length (eager attention is slow at long inputs)


def _load(model_dir, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import prefixmemory  # noqa: F401  (registers the PEFT type, so the adapter loads)

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    return PeftModel.from_pretrained(base, adapter).eval()


@torch.no_grad()
def _share(model, name: str, inputs: list[torch.Tensor], probes) -> float | None:
    """The share averaged over layers and tokens of each input, then over inputs (their lengths differ)."""
    if name == "prefix":
        length = model.peft_config["default"].num_virtual_tokens
        shares = [probes.prefix_mass(model, [ids], length)[0].mean().item() for ids in inputs]
    elif name.startswith("pmt"):
        shares = [probes.memory_ratio(model, [ids])[0].mean().item() for ids in inputs]
    else:
        return None
    return sum(shares) / len(shares)


def measure(study, task, name: str, adapter, fillers, probes) -> list[dict]:
    """One entry per filler count: mean prompt length, accuracy on the test rows, and the share (None for LoRA)."""
    model, entries = _load(study.model_dir, adapter), []
    for count in fillers:
        rows = task.rows("test", task.test_per_class, 0, fillers=count)
        prompts = [loop.encode(study.template, study.tokenizer, row)[0] for row in rows]
        scores = loop.evaluate(model, study.tokenizer, study.template, rows, task.labels)
        share = _share(model, name, [torch.tensor([p]) for p in prompts[:SHARE_ROWS]], probes)
        entries.append({
            "method": name, "fillers": count, "tokens": sum(map(len, prompts)) / len(prompts),
            "accuracy": scores["accuracy"], "share": share,
        })  # fmt: skip
    return entries
