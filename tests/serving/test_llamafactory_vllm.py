"""LLaMA-Factory's own ``infer_backend: vllm`` on a PrefixMemory export, and the plugin on vLLM 0.11.

LLaMA-Factory 0.9.5 accepts vllm<=0.11.0, so its vLLM backend runs in an environment of LLaMA-Factory 0.9.5 with
vLLM 0.11 (vllm_env.py: ``llamafactory-vllm``). There:
  * every case of cases.py generates through vLLM 0.11 the tokens transformers + PEFT generate, as on vLLM 0.32
    (vLLM 0.11 serves Mistral with its LLaMA classes);
  * LLaMA-Factory's ChatModel (what ``llamafactory-cli chat`` and ``api`` run) with ``infer_backend: vllm`` gives on
    the export the replies its huggingface backend gives on the base model with the adapter, computed here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cases import CASES, serve_cases
from vllm_env import ensure

MESSAGES = ["Count to 3.", "What is 12 plus 30?", "Write a short poem about the sea."]


@pytest.fixture(scope="module")
def python() -> Path:
    return ensure("llamafactory-vllm")


@pytest.fixture(scope="module")
def served(python, tmp_path_factory):
    """{case: (export, vLLM 0.11 continuations)}."""
    return serve_cases(python, tmp_path_factory.mktemp("serving-vllm011"), CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_vllm_011_equals_transformers_peft(served, name):
    export, tokens = served[name]
    assert tokens == export["reference"]


def test_llamafactory_vllm_backend_answers_as_its_huggingface_backend(python, served, tmp_path):
    export = Path(served["qwen2_elu"][0]["dir"])  # written by `llamafactory-cli export`
    base, adapter = export.parent / "qwen2_elu-base", export.parent / "qwen2_elu-adapter"
    want = huggingface_replies(model_name_or_path=str(base), adapter_name_or_path=str(adapter))
    assert want != huggingface_replies(model_name_or_path=str(base))  # the memories change the replies

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    readable_by_transformers4(folder)
    messages, out = tmp_path / "messages.json", tmp_path / "out.json"
    messages.write_text(json.dumps(MESSAGES))
    result = subprocess.run(
        [str(python), "run_llamafactory_chat.py", str(folder), str(messages), str(out)],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    assert json.loads(out.read_text()) == want


def huggingface_replies(**model) -> list[str]:
    """Greedy replies from LLaMA-Factory's ChatModel with the huggingface backend, in this environment."""
    from llamafactory.chat import ChatModel

    args = dict(
        template="qwen", infer_backend="huggingface", infer_dtype="float32", do_sample=False, max_new_tokens=12
    )
    if "adapter_name_or_path" in model:
        args["finetuning_type"] = "prefixmemory"
    chat = ChatModel({**args, **model})
    return [chat.chat([{"role": "user", "content": text}])[0].response_text for text in MESSAGES]


def readable_by_transformers4(folder: Path) -> None:
    """The toy tokenizer's config as transformers 4 writes it (vLLM 0.11 brings 4.57; the toy is saved by 5.x).

    A real model's tokenizer files come from its hub repository, written for the transformers versions it supports.
    """
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.pop("backend", None)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["additional_special_tokens"] = config.pop("extra_special_tokens", [])
    path.write_text(json.dumps(config, indent=2))
