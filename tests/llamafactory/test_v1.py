"""LLaMA-Factory v1 (``USE_V1=1``): ``peft_config: {name: prefixmemory}`` trains SFT and DPO through v1's CLI."""

import json
import math

import pytest
from lfcli import logged_losses, run_cli
from safetensors.torch import load_file
from test_seams import V1_REGISTRY

pytestmark = pytest.mark.skipif(not V1_REGISTRY, reason="needs LLaMA-Factory main's v1 plugin registry")

SFT = [
    {"instruction": "What is 12 plus 30?", "input": "", "output": "The answer is 42."},
    {"instruction": "Translate good morning into French.", "input": "", "output": "bonjour."},
    {"instruction": "Say hello.", "input": "", "output": "hi."},
    {"instruction": "Write a short poem about the sea.", "input": "", "output": "The sea is blue."},
]
PAIRS = [
    {
        "chosen": [{"role": "user", "content": q}, {"role": "assistant", "content": good}],
        "rejected": [{"role": "user", "content": q}, {"role": "assistant", "content": bad}],
    }
    for q, good, bad in [
        ("What is 12 plus 30?", "The answer is 42.", "The answer is 7."),
        ("Say hello.", "hi.", "bonjour."),
        ("Translate good morning into French.", "bonjour.", "hi."),
        ("Write a short poem about the sea.", "The sea is blue.", "The dog is lazy."),
    ]
]


@pytest.fixture
def v1_run(tiny_qwen2, tmp_path, monkeypatch):
    """Runs ``USE_V1=1 llamafactory-cli <command>`` on a local data set; returns the output folder."""
    monkeypatch.setenv("USE_V1", "1")
    for name, records, converter in (("sft", SFT, "alpaca"), ("pair", PAIRS, "pair")):
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
        source = {name: {"path": str(tmp_path / f"{name}.json"), "source": "local", "converter": converter}}
        (tmp_path / f"{name}.yaml").write_text(json.dumps(source))

    def run(command: str, data: str, peft_config: dict, **overrides):
        config = {
            "model": str(tiny_qwen2), "peft_config": peft_config, "train_dataset": str(tmp_path / f"{data}.yaml"),
            "output_dir": str(tmp_path / f"out_{command}"), "micro_batch_size": 2, "max_steps": 3,
            "learning_rate": 1.0e-2, "bf16": False, "batching_workers": 0, "enable_activation_checkpointing": False,
            "cutoff_len": 128, **overrides,
        }  # fmt: skip
        run_cli(command, config, tmp_path)
        return tmp_path / f"out_{command}"

    return run


def _memories(folder):
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "PREFIXMEMORY"
    return load_file(folder / "adapter_model.safetensors")


def test_sft_then_dpo_with_the_sft_adapter_as_reference(v1_run):
    sft = v1_run("sft", "sft", {"name": "prefixmemory", "feature_map": "elu"})
    tensors = _memories(sft)
    assert tensors and all("prefixmemory_memory" in name for name in tensors)
    assert max(t.abs().max().item() for t in tensors.values()) > 0  # trained away from the zero start

    # The policy starts as the SFT adapter; so does the reference (not the bare base): first loss = ln 2.
    dpo = v1_run("dpo", "pair", {"name": "prefixmemory", "adapter_name_or_path": str(sft)}, pref_beta=0.1)
    assert logged_losses(dpo)[0] == pytest.approx(math.log(2), abs=1e-4)
    assert set(_memories(dpo)) == set(tensors)  # no reference tensors saved
