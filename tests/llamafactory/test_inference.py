"""A trained PrefixMemory adapter serves through chat, predict and export, identically to plain PEFT."""

import json
from pathlib import Path

import pytest
import torch
from lfcli import run_cli
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import prefixmemory  # noqa: F401  (registers the PEFT method)

TOKENS = torch.tensor([[11, 42, 7, 99, 5, 23, 64]])


@pytest.fixture(scope="module")
def trained_adapter(tiny_qwen2, toy_data, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("sft")
    config = {
        "model_name_or_path": str(tiny_qwen2), "stage": "sft", "do_train": True, "finetuning_type": "prefixmemory",
        "dataset": "toy_sft", "dataset_dir": str(toy_data), "template": "qwen", "cutoff_len": 64,
        "output_dir": str(workdir / "adapter"), "per_device_train_batch_size": 2, "learning_rate": 2e-2,
        "max_steps": 10, "report_to": "none", "preprocessing_num_workers": 1,
    }  # fmt: skip
    run_cli("train", config, workdir)
    return workdir / "adapter"


def _peft_logits(model_dir, adapter) -> torch.Tensor:
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter)
    with torch.no_grad():
        return model(TOKENS).logits


def test_chat_model_answers_with_adapter(tiny_qwen2, trained_adapter):
    from llamafactory.chat import ChatModel

    chat = ChatModel(dict(
        model_name_or_path=str(tiny_qwen2), adapter_name_or_path=str(trained_adapter),
        finetuning_type="prefixmemory", template="qwen", infer_backend="huggingface", max_new_tokens=8,
        do_sample=False,
    ))  # fmt: skip
    model = chat.engine.model
    assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type == "PREFIXMEMORY"
    with torch.no_grad():
        torch.testing.assert_close(model(TOKENS).logits, _peft_logits(tiny_qwen2, trained_adapter), rtol=0, atol=1e-6)
    responses = chat.chat([{"role": "user", "content": "Count to 3."}])
    assert len(responses) == 1 and responses[0].response_text is not None


def test_predict_with_generate(tiny_qwen2, toy_data, trained_adapter, tmp_path):
    config = {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(trained_adapter), "stage": "sft",
        "do_predict": True, "predict_with_generate": True, "finetuning_type": "prefixmemory",
        "eval_dataset": "toy_sft", "dataset_dir": str(toy_data), "template": "qwen", "cutoff_len": 64,
        "max_samples": 4, "max_new_tokens": 4, "output_dir": str(tmp_path / "predict"),
        "per_device_eval_batch_size": 2, "report_to": "none", "preprocessing_num_workers": 1,
    }  # fmt: skip
    run_cli("train", config, tmp_path)
    rows = (tmp_path / "predict" / "generated_predictions.jsonl").read_text().splitlines()
    assert len(rows) == 4 and all("predict" in json.loads(row) for row in rows)


@pytest.fixture(scope="module")
def export_dir(tiny_qwen2, trained_adapter, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("export")
    config = {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(trained_adapter),
        "finetuning_type": "prefixmemory", "template": "qwen", "export_dir": str(workdir / "export"),
        "infer_dtype": "float32",
    }  # fmt: skip
    run_cli("export", config, workdir)
    return workdir / "export"


def test_export_is_self_contained_and_reloads_identically(tiny_qwen2, trained_adapter, export_dir):
    assert (export_dir / "model.safetensors").is_file() and (export_dir / "tokenizer.json").is_file()
    assert "cannot\nbe merged" in (export_dir / "README.md").read_text()
    exported = _peft_logits(export_dir, export_dir / "prefixmemory_adapter")
    torch.testing.assert_close(exported, _peft_logits(tiny_qwen2, trained_adapter), rtol=0, atol=1e-6)
    base_only = AutoModelForCausalLM.from_pretrained(export_dir)(TOKENS).logits
    assert (base_only - exported).abs().max() > 1e-4  # the memory is not silently dropped or merged
    _assert_vllm_ready(export_dir, trained_adapter)


@pytest.mark.parametrize("finetuning_type", [{}, {"finetuning_type": "prefixmemory"}], ids=["type left out", "given"])
def test_export_folder_alone_serves_its_memories(finetuning_type, tiny_qwen2, trained_adapter, export_dir):
    """chat, api and webchat (ChatModel) on the export folder, without `adapter_name_or_path`: base + adapter."""
    from llamafactory.chat import ChatModel

    chat = ChatModel(dict(
        model_name_or_path=str(export_dir), template="qwen", infer_backend="huggingface", max_new_tokens=6,
        do_sample=False, **finetuning_type,
    ))  # fmt: skip
    model = chat.engine.model
    assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type == "PREFIXMEMORY"
    with torch.no_grad():
        served = model(TOKENS).logits
        expected = _peft_logits(tiny_qwen2, trained_adapter)
        torch.testing.assert_close(served, expected, rtol=0, atol=1e-6)
        assert (AutoModelForCausalLM.from_pretrained(export_dir)(TOKENS).logits - served).abs().max() > 1e-4
        generated = model.generate(input_ids=TOKENS, max_new_tokens=6, do_sample=False)
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), trained_adapter)
        assert torch.equal(generated, reference.generate(input_ids=TOKENS, max_new_tokens=6, do_sample=False))


def _assert_vllm_ready(export_dir: Path, adapter: Path) -> None:
    """The folder also names the PrefixMemory architecture for vLLM and holds the trained memories beside the base."""
    config = json.loads((export_dir / "config.json").read_text())
    assert config["architectures"] == ["PrefixMemoryQwen2ForCausalLM"] and config["model_type"] == "qwen2"
    assert config["prefix_memory"] == {"feature_map": "elu", "feature_dim": 16, "layers": [0, 1], "bias": True}
    served = load_file(export_dir / "prefixmemory.safetensors")
    trained = load_file(adapter / "adapter_model.safetensors")
    assert len(served) == len(trained) == 4  # M and its bias in each of the 2 layers
    for layer in (0, 1):
        trained_key = f"base_model.model.model.layers.{layer}.self_attn.q_proj.prefixmemory_memory"
        served_key = f"model.layers.{layer}.self_attn.prefix_memory"
        assert torch.equal(served[f"{served_key}.memory"], trained[f"{trained_key}.weight"])
        assert torch.equal(served[f"{served_key}.memory_bias"], trained[f"{trained_key}.bias"][:, 0])  # (H,1,D)


def test_export_refuses_to_write_into_the_adapter_folder(tiny_qwen2, trained_adapter, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in trained_adapter.iterdir()}
    config = {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(trained_adapter),
        "finetuning_type": "prefixmemory", "template": "qwen", "export_dir": str(trained_adapter),
    }  # fmt: skip
    result = run_cli("export", config, tmp_path, check=False)
    assert result.returncode != 0 and "the run would write into a folder it reads" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in trained_adapter.iterdir()} == before
