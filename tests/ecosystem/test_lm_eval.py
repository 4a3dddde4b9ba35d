"""lm-evaluation-harness scores a PrefixMemory adapter through ``--model hf --model_args ...,peft=...``."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

pytest.importorskip("lm_eval")

DOCS = [
    {"question": "The quick brown fox jumps over the lazy", "choices": [" dog.", " sea.", " answer."], "answer": 0},
    {"question": "What is 12 plus 30? The answer is", "choices": [" 42.", " 7.", " bonjour."], "answer": 0},
    {"question": "Write a short poem about the", "choices": [" sea.", " fox.", " matrix."], "answer": 0},
    {"question": "Translate good morning into French:", "choices": [" bonjour.", " dog.", " 12."], "answer": 0},
]


def _write_task(folder) -> None:
    (folder / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    task = {
        "task": "pmt_tiny_mc",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(folder / "docs.jsonl")}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{answer}}",
        "target_delimiter": "",  # the choices carry their own leading space
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        "metadata": {"version": 1.0},
    }
    (folder / "pmt_tiny_mc.yaml").write_text(yaml.safe_dump(task))


def _our_logliks(base, adapter) -> list[list[float]]:
    """Sum of log-probabilities of each choice's tokens after the question, with our own loading."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import prefixmemory  # noqa: F401

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    model.resize_token_embeddings(len(tokenizer))  # as lm_eval does before loading a peft adapter
    model = PeftModel.from_pretrained(model, adapter).eval()
    scores = []
    for doc in DOCS:
        context = tokenizer(doc["question"], add_special_tokens=False).input_ids
        row = []
        for choice in doc["choices"]:
            whole = tokenizer(doc["question"] + choice, add_special_tokens=False).input_ids
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0], -1)
            row.append(sum(logp[position - 1, whole[position]].item() for position in range(len(context), len(whole))))
        scores.append(row)
    return scores


def test_lm_eval_scores_the_adapter_like_our_loading(tiny_qwen2, pmt_adapter, tmp_path):
    _write_task(tmp_path)
    argv = [
        sys.executable, "-m", "lm_eval", "--model", "hf",
        "--model_args", f"pretrained={tiny_qwen2},peft={pmt_adapter},dtype=float32",
        "--tasks", "pmt_tiny_mc", "--include_path", str(tmp_path), "--device", "cpu", "--batch_size", "4",
        "--output_path", str(tmp_path / "results"), "--log_samples",
    ]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (samples_file,) = (tmp_path / "results").rglob("samples_pmt_tiny_mc_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])

    ours = _our_logliks(tiny_qwen2, pmt_adapter)
    theirs = [[float(response[0][0]) for response in sample["resps"]] for sample in samples]
    torch.testing.assert_close(torch.tensor(theirs), torch.tensor(ours), atol=1e-4, rtol=0)
    for sample, row, doc in zip(samples, ours, DOCS, strict=True):
        normed = [score / len(choice) for score, choice in zip(row, doc["choices"], strict=True)]
        assert sample["acc"] == float(row.index(max(row)) == doc["answer"])
        assert sample["acc_norm"] == float(normed.index(max(normed)) == doc["answer"])
