"""Tiny PrefixMemory exports for the vLLM tests, and their greedy continuations under transformers + PEFT.

Each case is a random tiny model (head_dim 64: vLLM's CPU attention refuses 16) with an adapter whose memories are
random (or zero), exported as the LLaMA-Factory export writes it and made vLLM-ready. The reference is computed
here, in the project's environment, with the PEFT method: the serving environment never computes its own answer.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lfcli import run_cli
from peft import PeftModel, get_peft_model

from prefixmemory import PrefixMemoryConfig
from prefixmemory_study.tiny import build_model, build_tokenizer
from prefixmemory_vllm.convert import make_vllm_ready

GEOMETRY = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, vocab_size=640, head_dim=64)
PROMPTS = (
    "The quick brown fox",
    "What is 12 plus 30? The answer is",
    "def add(a, b):",
    "Write a short poem about the sea.",
)
NEW_TOKENS = 12


@dataclass
class Case:
    architecture: str  # a key of prefixmemory_study.tiny.ARCHITECTURES
    peft: dict = field(default_factory=dict)  # PrefixMemoryConfig keywords
    scale: float = 0.5  # memory entries ~ N(0, (4 * scale)^2 / F); 0 gives zero memories
    bias: bool = False  # PrefixMemoryConfig(memory_bias=...): a random per-head bias beside the memory
    through_cli: bool = False  # exported by `llamafactory-cli export` rather than by the converter directly
    overrides: dict = field(default_factory=dict)  # config settings beside GEOMETRY


CASES = {
    "qwen2_elu": Case("qwen2", dict(feature_map="elu"), through_cli=True),
    "qwen2_zero": Case("qwen2", dict(feature_map="elu"), scale=0.0),
    "qwen2_mlp_bias": Case("qwen2", dict(feature_map="mlp", feature_dim=32, layers=[1]), bias=True),
    "llama_gelu": Case("llama-gqa", dict(feature_map="gelu")),
    "qwen3_elu": Case("qwen3", dict(feature_map="elu")),
    # Mistral 7B v0.2 and later set no sliding window, which vLLM 0.11's CPU backend refuses
    "mistral_relu_bias": Case(
        "mistral", dict(feature_map="relu", layers=[0]), bias=True, overrides=dict(sliding_window=None)
    ),
}
# The families added on vLLM 0.32 (served there only: LLaMA-Factory's vLLM 0.11 runs the cases above). Sliding
# windows (4 tokens) and soft-capping stay as the tiny configs set them, so vLLM's own versions of them are compared.
FAMILY_CASES = {
    "qwen3_moe_elu": Case("qwen3_moe", dict(feature_map="elu")),
    "mixtral_gelu": Case("mixtral", dict(feature_map="gelu")),
    "gemma3_relu_bias": Case(
        "gemma3_text", dict(feature_map="relu"), bias=True, overrides=dict(tie_word_embeddings=True)
    ),
    "phi3_mlp": Case("phi3", dict(feature_map="mlp", feature_dim=32)),
}
# The other served families: in the slow suite, one more vLLM process (Llama 4's reordering of q at load is also
# checked without vLLM, in test_vllm_shards.py).
MORE_FAMILY_CASES = {
    "gemma2_elu": Case("gemma2", dict(feature_map="elu"), overrides=dict(tie_word_embeddings=True)),
    "gemma4_relu": Case("gemma4_text", dict(feature_map="relu"), overrides=dict(tie_word_embeddings=True)),
    "glm4_elu_bias": Case("glm4", dict(feature_map="elu"), bias=True),
    "glm4_moe_gelu": Case("glm4_moe", dict(feature_map="gelu")),
    "llama4_text_mlp_bias": Case("llama4_text", dict(feature_map="mlp", feature_dim=32), bias=True),
}


def _model(case: Case):
    return build_model(case.architecture, seed=0, **{**GEOMETRY, **case.overrides}).eval()


def greedy(model, prompts: list[list[int]]) -> list[list[int]]:
    outputs = []
    for ids in prompts:
        x = torch.tensor([ids])
        with torch.no_grad():
            y = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS,
                               min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)  # fmt: skip
        outputs.append(y[0, len(ids) :].tolist())
    return outputs


def _random_memories(model, scale: float) -> None:
    generator = torch.Generator().manual_seed(1)
    for name, parameter in model.named_parameters():
        if "prefixmemory_memory" in name:
            noise = torch.randn(parameter.shape, generator=generator)
            parameter.data = noise * 4 * scale / parameter.shape[1] ** 0.5


def build(name: str, root: Path) -> dict:
    """Export case ``name`` under ``root``; returns its prompts and the reference continuations."""
    case = {**CASES, **FAMILY_CASES, **MORE_FAMILY_CASES}[name]
    tokenizer = build_tokenizer()
    prompts = [tokenizer(p)["input_ids"] for p in PROMPTS]
    base, export = _model(case), root / name
    base_out = greedy(base, prompts)
    base.save_pretrained(root / f"{name}-base")
    tokenizer.save_pretrained(root / f"{name}-base")
    model = get_peft_model(_model(case), PrefixMemoryConfig(**case.peft, memory_bias=case.bias))
    _random_memories(model, case.scale)
    model.save_pretrained(root / f"{name}-adapter")
    model = PeftModel.from_pretrained(_model(case), root / f"{name}-adapter").eval()
    reference = greedy(model, prompts)
    if case.through_cli:
        _export_with_cli(root, name)
    else:
        _export_directly(root, name)
    return {"dir": str(export), "prompts": prompts, "reference": reference, "base": base_out}


def _export_directly(root: Path, name: str) -> None:
    """What the export writes, without LLaMA-Factory: base at the top, adapter in a subfolder, then the converter."""
    import shutil

    shutil.copytree(root / f"{name}-base", root / name)
    shutil.copytree(root / f"{name}-adapter", root / name / "prefixmemory_adapter")
    make_vllm_ready(root / name)


def _export_with_cli(root: Path, name: str) -> None:
    config = {
        "model_name_or_path": str(root / f"{name}-base"), "adapter_name_or_path": str(root / f"{name}-adapter"),
        "finetuning_type": "prefixmemory", "template": "qwen", "export_dir": str(root / name),
        "infer_dtype": "float32",
    }  # fmt: skip
    run_cli("export", config, root)


def serve_cases(python: Path, root: Path, names, tensor_parallel: tuple[str, ...] = ()) -> dict:
    """Export the cases ``names`` under ``root``; vLLM (``python``'s environment) continues their prompts greedily.

    Returns {case: (export, vLLM continuations)}; each case in ``tensor_parallel`` runs again at
    tensor_parallel_size=2, as case name + '@tp2'.
    """
    exports = {name: build(name, root) for name in names}
    jobs = [dict(name=name, dir=e["dir"], prompts=e["prompts"], new_tokens=NEW_TOKENS) for name, e in exports.items()]
    for name in tensor_parallel:
        jobs.append({**jobs[list(exports).index(name)], "name": f"{name}@tp2", "tensor_parallel_size": 2})
    (root / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run(
        [str(python), "run_vllm.py", str(root / "jobs.json"), str(root / "out.json")],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-6000:]
    outputs = json.loads((root / "out.json").read_text())
    return {name: (exports[name.split("@")[0]], tokens) for name, tokens in outputs.items()}
