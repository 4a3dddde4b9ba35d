"""The seam check on vLLM releases without a CPU build, read from their wheels' source; the family tables agree.

vLLM 0.33 and 0.34 have GPU wheels only. Their model files are taken from the wheel (``pip download --no-deps``,
read as a zip: nothing is installed or imported, no torch, no CUDA) and cached under ``$PMT_STACK_CACHE``; the
check runs on them as the plugin runs it on an installed vLLM. The CPU builds (0.11, 0.32) are checked where the
equality tests serve (test_vllm_equality.py, test_llamafactory_vllm.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from venvs import CACHE

from prefixmemory.architectures import ATTENTION_LAYOUTS
from prefixmemory_vllm.families import NOT_SERVED, SERVED
from prefixmemory_vllm.seams import CHECKED_VLLM, SeamError, folder_reader, implementation

MODELS = "vllm/model_executor/models/"
# The implementation each family's source fits on these releases (0.11 serves Mistral as LLaMA, Qwen2 without norms)
WHEEL_ONLY = ("0.33.0", "0.34.0")


def model_files(version: str) -> Path:
    """vllm/model_executor/models of vLLM ``version``'s wheel, unpacked once into the stack cache."""
    target = CACHE / f"vllm-source-{version}"
    if not (target / ".complete").exists():
        download = CACHE / f"vllm-wheel-{version}"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"vllm=={version}", "-d", str(download)],
            check=True,
        )
        with zipfile.ZipFile(next(download.glob("vllm-*.whl"))) as wheel:
            names = [name for name in wheel.namelist() if name.startswith(MODELS) and name.endswith(".py")]
            wheel.extractall(target, members=names)
        shutil.rmtree(download)
        (target / ".complete").touch()
    return target / MODELS


@pytest.mark.parametrize("version", WHEEL_ONLY)
def test_every_served_family_fits_the_newest_releases(version):
    read = folder_reader(model_files(version))
    chosen = {model_type: implementation(family, read) for model_type, family in SERVED.items()}
    assert chosen["mistral"].model == "mistral.MistralForCausalLM"  # vLLM's own Mistral, with its llama-4 scaling
    assert chosen["qwen2"].forward == "optional_head_norm"
    assert {impl.forward for impl in chosen.values()} >= {"plain", "head_norm", "head_norm_unflatten"}


def _changed(version: str, module: str, old: str, new: str):
    read = folder_reader(model_files(version))

    def changed(name: str) -> str | None:
        source = read(name)
        if name == module:
            assert old in source, f"{old!r} not in {module}.py"
            return source.replace(old, new, 1)
        return source

    return changed


@pytest.mark.parametrize(
    "model_type, module, old, new, message",
    [
        ("qwen3", "qwen3", "q = q_by_head.view(q.shape)", "q = self.q_gate(q_by_head).view(q.shape)",
         "vllm.model_executor.models.qwen3.Qwen3Attention.forward reads self.q_gate after self.q_norm where vLLM's "
         "forward read self.head_dim (the PrefixMemory copy follows qkv_proj, q_size, kv_size, kv_size, head_dim, "
         "head_dim, q_norm, head_dim, head_dim, k_norm, rotary_emb, attn, o_proj)"),
        ("glm4", "glm4", "attn_output = self.attn(q, k, v)\n", "attn_output = self.attn(q, k, v) * self.gate\n",
         "vllm.model_executor.models.glm4.Glm4Attention.forward reads self.gate after self.attn where vLLM's forward "
         "read self.o_proj"),
        ("phi3", "registry", '"Phi3ForCausalLM": ("phi3", "Phi3ForCausalLM")',
         '"Phi3ForCausalLM": ("transformers", "TransformersForCausalLM")',
         "vLLM's model registry maps it to transformers.TransformersForCausalLM; the plugin extends "
         "phi3.Phi3ForCausalLM."),
        ("mixtral", "mixtral", "self.total_num_heads = num_heads", "self.heads = num_heads",
         "vllm.model_executor.models.mixtral.MixtralAttention.__init__ no longer sets self.total_num_heads"),
        ("llama4_text", "llama4", "def permute_qk_weight_for_rotary(", "def permute_for_rotary(",
         "vllm.model_executor.models.llama4.Llama4ForCausalLM no longer reorders q_proj's rows at load "
         "(permute_qk_weight_for_rotary)"),
        ("gemma2", "gemma2", "class Gemma2Attention(", "class Gemma2SelfAttention(",
         "vllm.model_executor.models.gemma2.Gemma2Attention is missing"),
    ],
)  # fmt: skip
def test_a_changed_seam_is_named_in_one_line(model_type, module, old, new, message):
    with pytest.raises(SeamError) as error:
        implementation(SERVED[model_type], _changed(WHEEL_ONLY[-1], module, old, new))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_the_checked_releases_are_those_tested():
    assert set(WHEEL_ONLY) <= set(CHECKED_VLLM)


def test_every_family_of_the_method_is_served_or_refused_with_its_reason():
    assert set(SERVED) | set(NOT_SERVED) == set(ATTENTION_LAYOUTS)
    assert not set(SERVED) & set(NOT_SERVED)
    assert all(len(reason) > 20 for reason in NOT_SERVED.values())


@pytest.mark.parametrize("model_type", sorted(SERVED))
def test_a_served_family_reads_q_where_the_method_reads_it(model_type):
    """vLLM fuses q, k and v into qkv_proj: the method's q_proj (or Phi-3's qkv_proj slice) is its q split."""
    layout, family = ATTENTION_LAYOUTS[model_type], SERVED[model_type]
    assert family.query == layout.query_module


def test_the_docs_table_lists_every_family_as_the_tables_do():
    text = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| .* \| (served, equal|not served: .*) \|$", text, re.MULTILINE))
    assert {model_type for model_type, result in rows.items() if result == "served, equal"} == set(SERVED)
    refused = {model_type: result.removeprefix("not served: ") for model_type, result in rows.items()}
    assert {model_type: refused[model_type] for model_type in NOT_SERVED if model_type in refused} == NOT_SERVED
