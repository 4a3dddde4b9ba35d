"""vLLM with the prefixmemory_vllm plugin generates, greedily in fp32, the tokens transformers + PEFT generate.

The serving environment is a venv of its own (vllm_env.py; built once, a few minutes). The exports and the
references come from this environment (cases.py); the serving one only runs vLLM on the folders.
"""

from __future__ import annotations

import subprocess

import pytest
from cases import CASES, serve_cases
from vllm_env import ensure

TENSOR_PARALLEL_CASE = "qwen2_mlp_bias"  # the mlp kernel and the bias are sharded by heads too


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """{case: (export, vLLM continuations)}; the tensor-parallel run is the case name + '@tp2'."""
    return serve_cases(ensure("vllm"), tmp_path_factory.mktemp("serving"), tensor_parallel=(TENSOR_PARALLEL_CASE,))


@pytest.mark.parametrize("name", [*CASES, f"{TENSOR_PARALLEL_CASE}@tp2"])
def test_vllm_equals_transformers_peft(served, name):
    export, tokens = served[name]
    assert tokens == export["reference"]
    if CASES[name.split("@")[0]].scale == 0:
        assert tokens == export["base"]  # zero memories: the base model's tokens
    else:
        assert export["reference"] != export["base"]  # the memories change the output, so the match means something


def test_another_vllm_release_is_refused_in_one_line():
    """The attention forwards are copies of vLLM 0.11's and 0.32's: another release is refused, not served."""
    code = "import vllm; vllm.__version__ = '0.40.0'; import prefixmemory_vllm.models"
    result = subprocess.run([str(ensure("vllm")), "-c", code], capture_output=True, text=True, timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "ImportError: prefixmemory_vllm serves with vLLM ==0.11.* or ==0.32.* (its attention forwards are copies of "
        "those releases'); found vLLM 0.40.0."
    )
