"""One training loop and one greedy evaluation for every method, on rows encoded by LLaMA-Factory's own template.

Rows become token ids through ``Template.encode_oneturn`` (the ``smollm2`` template for SmolLM2), exactly what
``llamafactory-cli train`` feeds a model: loss on the answer tokens only, batches padded on the right as
LLaMA-Factory's collator pads them. Evaluation generates greedily one row at a time (no padding, so prefix-tuning,
whose PEFT forward ignores position ids, sees the positions it trained on) and scores the first line of the reply
by exact match (prefixmemory_study.fewshot.scoring).

The optimizer is the paper's (appendix C): AdamW, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, constant rate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..fewshot import scoring
from .methods import Method

IGNORE = -100


@dataclass(frozen=True)
class Budget:
    steps: int = 20
    batch_size: int = 2  # appendix A.1: batch size 2 for every method


def load_template(tokenizer, name: str):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    return get_template_and_fix_tokenizer(tokenizer, DataArguments(template=name))


def _messages(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["input"]}, {"role": "assistant", "content": row["output"]}]


def encode(template, tokenizer, row: dict, history: list[dict] = ()) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one row; ``history`` rows become earlier chat turns (the in-context baseline).

    The task's instruction is the system turn (in place of the template's default system prompt, which would add
    20 tokens to every row), the row's input the user turn.
    """
    messages = [turn for shot in history for turn in _messages(shot)] + _messages(row)
    return template.encode_oneturn(tokenizer, messages, system=row["instruction"])


def build_model(model_dir, method: Method, seed: int):
    """The base model, with the method's adapter (or every weight trainable for full fine-tuning)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)  # the prefix's and the mlp kernel's initialisation
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if method.kind == "peft":
        return get_peft_model(model, method.peft_config())
    model.requires_grad_(method.kind == "full")
    return model


def _batch(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    length = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), length), pad_id)
    labels = torch.full((len(pairs), length), IGNORE)
    mask = torch.zeros((len(pairs), length), dtype=torch.long)
    for row, (prompt, answer) in enumerate(pairs):
        sequence = prompt + answer
        ids[row, : len(sequence)] = torch.tensor(sequence)
        labels[row, len(prompt) : len(sequence)] = torch.tensor(answer)
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train(model, encoded: list[tuple[list[int], list[int]]], lr: float, budget: Budget, seed: int, pad_id: int):
    """``budget.steps`` AdamW steps on batches drawn epoch by epoch from ``encoded``; the per-step losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    order, queue, losses = random.Random(seed), [], []
    model.train()
    for _ in range(budget.steps):
        batch = []
        while len(batch) < budget.batch_size:
            if not queue:
                queue = list(range(len(encoded)))
                order.shuffle(queue)
            batch.append(encoded[queue.pop()])
        loss = model(**_batch(batch, pad_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def generate(model, tokenizer, prompt: list[int], max_new_tokens: int) -> str:
    ids = torch.tensor([prompt])
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def evaluate(model, tokenizer, template, rows: list[dict], labels, history: list[dict] = ()) -> dict:
    """Exact-match accuracy of greedy replies to ``rows``; ``history``: in-context examples before each row."""
    max_new_tokens = max(len(tokenizer(label).input_ids) for label in labels) + 2
    replies = [
        generate(model, tokenizer, encode(template, tokenizer, row, history)[0], max_new_tokens) for row in rows
    ]
    result = scoring.score(replies, [row["output"] for row in rows], labels)
    return {**result, "examples": [[row["input"][-80:], reply] for row, reply in zip(rows[:3], replies, strict=False)]}
