"""vLLM with the prefixmemory_vllm plugin generates, greedily in fp32, the tokens transformers + PEFT generate.

The serving environment is a venv of its own (vllm_env.py; built once, a few minutes). The exports and the
references come from this environment (cases.py); the serving one only runs vLLM on the folders, one process for
the cases of cases.CASES and cases.FAMILY_CASES (engines one after another), one more for cases.MORE_FAMILY_CASES
in the slow suite.
"""

from __future__ import annotations

import subprocess

import pytest
from cases import CASES, FAMILY_CASES, MORE_FAMILY_CASES, serve_cases
from vllm_env import ensure

TENSOR_PARALLEL_CASE = "qwen2_mlp_bias"  # the mlp kernel and the bias are sharded by heads too
DEFAULT_CASES = {**CASES, **FAMILY_CASES}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """{case: (export, vLLM continuations)}; the tensor-parallel run is the case name + '@tp2'."""
    root = tmp_path_factory.mktemp("serving")
    return serve_cases(ensure("vllm"), root, DEFAULT_CASES, tensor_parallel=(TENSOR_PARALLEL_CASE,))


@pytest.fixture(scope="module")
def served_more(tmp_path_factory):
    return serve_cases(ensure("vllm"), tmp_path_factory.mktemp("serving-more"), MORE_FAMILY_CASES)


def check(export: dict, tokens, scale: float) -> None:
    assert tokens == export["reference"]
    if scale == 0:
        assert tokens == export["base"]  # zero memories: the base model's tokens
    else:
        assert export["reference"] != export["base"]  # the memories change the output, so the match means something


@pytest.mark.parametrize("name", [*DEFAULT_CASES, f"{TENSOR_PARALLEL_CASE}@tp2"])
def test_vllm_equals_transformers_peft(served, name):
    check(*served[name], DEFAULT_CASES[name.split("@")[0]].scale)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MORE_FAMILY_CASES))
def test_vllm_equals_transformers_peft_on_more_families(served_more, name):
    check(*served_more[name], MORE_FAMILY_CASES[name].scale)


# A vLLM whose Qwen3 attention gained a step between q_norm and rotary (as a gate or a scaling would be): the copied
# forward would skip it, so the family is refused when vLLM asks for it, in one line naming the change.
CHANGED_VLLM = """
import prefixmemory_vllm.seams as seams
installed = seams.installed_reader()
def read(module):
    if module != "qwen3":
        return installed(module)
    return installed(module).replace("q = q_by_head.view(q.shape)", "q = self.q_gate(q_by_head).view(q.shape)")
seams.installed_reader = lambda: read
from prefixmemory_vllm import families, models
assert set(models.FORWARDS) == set(families.UPSTREAM_FORWARDS), models.FORWARDS
models.PrefixMemoryQwen3ForCausalLM
"""


def test_a_changed_attention_forward_is_refused_in_one_line():
    result = subprocess.run([str(ensure("vllm")), "-c", CHANGED_VLLM], capture_output=True, text=True, timeout=600)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "prefixmemory_vllm.seams.SeamError: prefixmemory_vllm cannot serve Qwen3ForCausalLM with vLLM 0.32.0: "
        "vllm.model_executor.models.qwen3.Qwen3Attention.forward reads self.q_gate after self.q_norm where vLLM's "
        "forward read self.head_dim (the PrefixMemory copy follows qkv_proj, "
    ), last
