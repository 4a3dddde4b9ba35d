"""The converter refuses what vLLM could not serve, and its command writes a new folder, never one it reads."""

from __future__ import annotations

import json

import pytest

from prefixmemory_vllm.convert import main, make_vllm_ready


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


def _snapshot(*folders) -> dict:
    """Every file and folder under ``folders``, with its bytes and modification time."""
    return {
        path: (path.is_file() and path.read_bytes(), path.stat().st_mtime_ns) for f in folders for path in f.rglob("*")
    }


@pytest.fixture
def base_and_run(tmp_path):
    """A base model folder (config, weights, tokenizer, a subfolder vLLM does not need) and a PEFT adapter."""
    import torch
    from safetensors.torch import save_file

    base, run = tmp_path / "base", tmp_path / "run"
    (base / "original").mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "num_attention_heads": 4}))
    (base / "model.safetensors").write_bytes(b"base weights")
    (base / "tokenizer.json").write_text("{}")
    (base / "original" / "consolidated.pth").write_bytes(b"not served")
    run.mkdir()
    (run / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIXMEMORY", "feature_map": "elu"}))
    key = "base_model.model.model.layers.0.self_attn.q_proj.prefixmemory_memory.weight"
    save_file({key: torch.ones(4, 8, 8)}, run / "adapter_model.safetensors")
    return base, run


def test_the_command_writes_a_new_folder_and_only_reads_its_inputs(base_and_run, tmp_path):
    base, run = base_and_run
    before = _snapshot(base, run)
    main([str(base), "--adapter", str(run), "--output", str(tmp_path / "serve")])
    assert _snapshot(base, run) == before
    serve = tmp_path / "serve"
    config = json.loads((serve / "config.json").read_text())
    assert config["architectures"] == ["PrefixMemoryQwen2ForCausalLM"] and config["prefix_memory"]["layers"] == [0]
    assert (serve / "model.safetensors").read_bytes() == b"base weights" and (
        serve / "prefixmemory.safetensors"
    ).is_file()
    assert (serve / "prefixmemory_adapter" / "adapter_model.safetensors").is_file() and not (
        serve / "original"
    ).exists()
    main([str(serve), "--output", str(tmp_path / "again")])  # an export (its adapter inside) is a source too
    assert json.loads((tmp_path / "again" / "config.json").read_text()) == config


@pytest.mark.parametrize(
    "change, argv, message",
    [
        (None, ["missing", "--adapter", "run"], "`source` {tmp}/missing: no such folder"),
        (None, ["base"], "`source` {tmp}/base has no prefixmemory_adapter/: name the trained adapter with --adapter"),
        (None, ["base", "--adapter", "missing"], "`--adapter` {tmp}/missing: no such folder"),
        ({"run/adapter_config.json": "{"}, ["base", "--adapter", "run"], "{tmp}/run/adapter_config.json is not a"),
        ({"run/adapter_config.json": '{"peft_type": "LORA"}'}, ["base", "--adapter", "run"], "is LORA, not PREFIXMEM"),
        ({"run/adapter_model.safetensors": "x"}, ["base", "--adapter", "run"], "safetensors cannot be read"),
        ({"base/config.json": '{"architectures": ["GemmaForCausalLM"]}'}, ["base", "--adapter", "run"],
         "`architectures` ['GemmaForCausalLM']: vLLM serving supports LlamaForCausalLM, MistralForCausalLM"),
        ({"base/config.json": '{"architectures": ["Olmo2ForCausalLM"], "model_type": "olmo2"}'},
         ["base", "--adapter", "run"], "Llama4ForCausalLM (olmo2: vLLM (0.32 to 0.34) serves it through its "
         "Transformers backend"),
        ({"base/config.json": '{"architectures": ["Qwen2ForCausalLM"], "num_attention_heads": 8}'},
         ["base", "--adapter", "run"], "the adapter's memories have 4 heads, the model 8 query heads"),
        ({"serve/notes.txt": "keep"}, ["base", "--adapter", "run"], "`--output` {tmp}/serve exists and holds files"),
        (None, ["base", "--adapter", "run", "--output", "base/serve"], "`--output` {tmp}/base/serve lies inside"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_changes_nothing(base_and_run, tmp_path, change, argv, message):
    for name, text in (change or {}).items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    before = _snapshot(tmp_path)
    argv = [str(tmp_path / arg) if not arg.startswith("-") else arg for arg in argv]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output", str(tmp_path / "serve")] if "--output" not in argv else argv)
    assert str(exit_info.value.code).startswith("error: ") and "\n" not in str(exit_info.value.code)
    assert message.format(tmp=tmp_path) in exit_info.value.code
    assert _snapshot(tmp_path) == before
