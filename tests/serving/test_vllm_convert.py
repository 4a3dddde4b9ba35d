"""The converter refuses what vLLM could not serve, before writing anything into the export."""

from __future__ import annotations

import json

import pytest

from prefixmemory_vllm.convert import make_vllm_ready


def _export(tmp_path, architectures, peft_type="PREFIXMEMORY"):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures, "num_attention_heads": 4}))
    adapter = tmp_path / "prefixmemory_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "feature_map": "elu"}))
    return tmp_path


def test_a_lora_adapter_is_refused(tmp_path):
    export = _export(tmp_path, ["Qwen2ForCausalLM"], peft_type="LORA")
    with pytest.raises(ValueError, match="`peft_type` is LORA, not PREFIXMEMORY"):
        make_vllm_ready(export)
    assert json.loads((export / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]


def test_an_unsupported_architecture_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    export = _export(tmp_path, ["GemmaForCausalLM"])
    key = "base_model.model.model.layers.0.self_attn.q_proj.prefixmemory_memory.weight"
    save_file({key: torch.zeros(4, 8, 8)}, export / "prefixmemory_adapter" / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"`architectures` \['GemmaForCausalLM'\]: vLLM serving supports"):
        make_vllm_ready(export)
    assert not (export / "prefixmemory.safetensors").exists()
