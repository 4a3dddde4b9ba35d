"""vLLM with the prefixmemory_vllm plugin generates, greedily in fp32, the tokens transformers + PEFT generate.

The serving environment is a venv of its own (vllm_env.py; built once, a few minutes). The exports and the
references come from this environment (cases.py); the serving one only runs vLLM on the folders.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from cases import CASES, NEW_TOKENS, build
from vllm_env import ensure

TENSOR_PARALLEL_CASE = "qwen2_mlp_bias"  # the mlp kernel and the bias are sharded by heads too


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """{case: (export, vLLM continuations)}; the tensor-parallel run is the case name + '@tp2'."""
    python = ensure()
    root = tmp_path_factory.mktemp("serving")
    exports = {name: build(name, root) for name in CASES}
    jobs = [dict(name=name, dir=e["dir"], prompts=e["prompts"], new_tokens=NEW_TOKENS) for name, e in exports.items()]
    jobs.append({**jobs[list(CASES).index(TENSOR_PARALLEL_CASE)], "name": f"{TENSOR_PARALLEL_CASE}@tp2"})
    jobs[-1]["tensor_parallel_size"] = 2
    (root / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run(
        [str(python), "run_vllm.py", str(root / "jobs.json"), str(root / "out.json")],
        cwd=__file__.rsplit("/", 1)[0], capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    outputs = json.loads((root / "out.json").read_text())
    return {name: (exports[name.split("@")[0]], tokens) for name, tokens in outputs.items()}


@pytest.mark.parametrize("name", [*CASES, f"{TENSOR_PARALLEL_CASE}@tp2"])
def test_vllm_equals_transformers_peft(served, name):
    export, tokens = served[name]
    assert tokens == export["reference"]
    if CASES[name.split("@")[0]].scale == 0:
        assert tokens == export["base"]  # zero memories: the base model's tokens
    else:
        assert export["reference"] != export["base"]  # the memories change the output, so the match means something


def test_another_vllm_release_is_refused_in_one_line():
    """The attention forwards are copies of vLLM 0.32's: the plugin says so rather than serve with another release."""
    code = "import vllm; vllm.__version__ = '0.40.0'; import prefixmemory_vllm.models"
    result = subprocess.run([str(ensure()), "-c", code], capture_output=True, text=True, timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: prefixmemory_vllm serves with vLLM >=0.32,<0.33 (its attention forwards are copies of those "
        "releases'); found vLLM 0.40.0."
    )
