"""PrefixMemory on a bitsandbytes 4/8-bit base (QLoRA's setting) through the unmodified llamafactory-cli, on CPU.

Every stage that trains in fp32/bf16 trains on the quantized base with LLaMA-Factory's own quantization path; the
adapter saved is the ordinary PrefixMemory adapter (fp32 memories, nothing of the base), and it serves on the
full-precision base. Tiny Qwen2: hidden size 64, one bitsandbytes block per row.
"""

import json
from pathlib import Path

import pytest
import torch
from lfcli import LOG2, logged_losses, run_cli
from safetensors.torch import load_file

pytest.importorskip("bitsandbytes")

QUANTIZED = "Quantizing model to {bits} bit with bitsandbytes."
MEMORY_SHAPES = {"weight": (4, 16, 16), "bias": (4, 1, 16)}  # tiny qwen2: 4 query heads, head_dim 16

# the bf16 stages of test_stages.py, on a quantized base
STAGES = {
    "sft-8bit": dict(quantization_bit=8),
    "dpo": dict(stage="dpo", dataset="toy_pref", pref_beta=0.1, pref_loss="sigmoid"),
    "simpo": dict(stage="dpo", dataset="toy_pref", pref_loss="simpo", pref_beta=2.0, simpo_gamma=1.0),
    "orpo": dict(stage="dpo", dataset="toy_pref", pref_loss="orpo"),
    "kto": dict(stage="kto", dataset="toy_kto", pref_beta=0.1),
}


def trained_memories(output_dir: Path) -> dict:
    """The adapter's tensors, each checked: every layer's M and bias, fp32, moved from its zero start; no other
    weights written."""
    weights = sorted(p.name for p in output_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    assert weights == ["adapter_model.safetensors", "training_args.bin"], weights
    tensors = load_file(output_dir / "adapter_model.safetensors")
    assert sorted(tensors) == sorted(
        f"base_model.model.model.layers.{i}.self_attn.q_proj.prefixmemory_memory.{part}"
        for i in range(2)
        for part in MEMORY_SHAPES
    )
    for name, tensor in tensors.items():
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == MEMORY_SHAPES[name.rsplit(".", 1)[1]]
        assert tensor.abs().sum() > 0, f"{name} got no gradient"
    return tensors


def quantized_run(train_config, tmp_path: Path, name: str, **overrides) -> dict:
    config = train_config(output_dir=str(tmp_path / name), max_steps=2, quantization_bit=4)
    config.update(overrides)
    result = run_cli("train", config, tmp_path)
    assert QUANTIZED.format(bits=config["quantization_bit"]) in result.stdout + result.stderr
    return config


def test_qlora_sft_trains_the_ordinary_adapter_and_it_serves_on_the_full_precision_base(
    train_config, tiny_qwen2, sample_ids, tmp_path
):
    """LLaMA-Factory's defaults for 4-bit: NF4 with double quantization, its kbit preparation (gradient checkpointing
    on a frozen quantized base)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import prefixmemory  # noqa: F401  (registers the PEFT method)

    config = quantized_run(train_config, tmp_path, "sft", upcast_layernorm=True)
    out = Path(config["output_dir"])
    trained_memories(out)
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "PREFIXMEMORY"
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2).eval()
    with torch.no_grad():
        bare = base(sample_ids).logits
        adapted = PeftModel.from_pretrained(base, out)(sample_ids).logits
    assert (adapted - bare).abs().max() > 1e-3  # the memories trained on 4-bit act on the fp32 base


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STAGES))
def test_stage_on_a_quantized_base(name, train_config, tmp_path):
    config = quantized_run(train_config, tmp_path, name, **STAGES[name])
    losses = logged_losses(Path(config["output_dir"]))
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # finite
    if config.get("pref_loss") == "sigmoid":
        assert losses[0] == pytest.approx(LOG2, abs=1e-3)  # the reference is the 4-bit base, memory off
    trained_memories(Path(config["output_dir"]))


@pytest.mark.slow
def test_dpo_from_a_qlora_sft_adapter_keeps_its_memories_as_reference(train_config, tmp_path):
    sft = quantized_run(train_config, tmp_path, "sft", quantization_type="fp4", double_quantization=False)
    dpo = quantized_run(
        train_config, tmp_path, "dpo", stage="dpo", dataset="toy_pref", adapter_name_or_path=sft["output_dir"]
    )
    assert logged_losses(Path(dpo["output_dir"]))[0] == pytest.approx(LOG2, abs=1e-3)  # policy == SFT reference
    sft_memories, dpo_memories = (trained_memories(Path(run["output_dir"])) for run in (sft, dpo))
    assert any(not torch.equal(sft_memories[key], dpo_memories[key]) for key in sft_memories)  # DPO trained them


@pytest.fixture(scope="module")
def fp32_adapter(tiny_qwen2, tmp_path_factory) -> Path:
    """A PrefixMemory adapter made on the fp32 base, with nonzero memories."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    import prefixmemory

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen2), prefixmemory.PrefixMemoryConfig())
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.2)
    folder = tmp_path_factory.mktemp("adapter") / "fp32"
    model.save_pretrained(folder)
    return folder


def test_chat_api_webchat_serve_an_fp32_adapter_on_a_4bit_base(tiny_qwen2, fp32_adapter, sample_ids):
    """ChatModel (what chat, api and webchat run) with `quantization_bit: 4`: the memories act on the 4-bit base as
    PEFT loads them there."""
    from llamafactory.chat import ChatModel
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    chat = ChatModel(dict(
        model_name_or_path=str(tiny_qwen2), adapter_name_or_path=str(fp32_adapter), finetuning_type="prefixmemory",
        template="qwen", infer_backend="huggingface", quantization_bit=4, max_new_tokens=4, do_sample=False,
    ))  # fmt: skip
    model = chat.engine.model
    assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type == "PREFIXMEMORY"
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear4bit"
    assert q_proj.prefixmemory_memory["default"].weight.dtype == torch.float32
    config = BitsAndBytesConfig(  # LLaMA-Factory's defaults for 4-bit: NF4, double quantization
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32,
    )  # fmt: skip
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2, quantization_config=config, device_map={"": "cpu"})
    with torch.no_grad():
        expected = PeftModel.from_pretrained(base, fp32_adapter).eval()(sample_ids).logits
        torch.testing.assert_close(model(sample_ids).logits, expected, rtol=0, atol=1e-5)
    assert chat.chat([{"role": "user", "content": "Count to 3."}])[0].response_text is not None


def test_export_with_quantization_bit_is_refused_in_one_line(tiny_qwen2, fp32_adapter, tmp_path):
    from llamafactory.train.tuner import export_model

    args = dict(
        model_name_or_path=str(tiny_qwen2), adapter_name_or_path=str(fp32_adapter), finetuning_type="prefixmemory",
        template="qwen", export_dir=str(tmp_path / "export"), quantization_bit=4,
    )  # fmt: skip
    with pytest.raises(ValueError) as error:
        export_model(args)
    assert str(error.value).startswith("`quantization_bit: 4` cannot be exported: the export holds the full-precision")
    assert "\n" not in str(error.value) and not (tmp_path / "export").exists()


@pytest.mark.slow
def test_predict_on_a_4bit_base(tiny_qwen2, toy_data, fp32_adapter, tmp_path):
    config = {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(fp32_adapter), "stage": "sft",
        "do_predict": True, "predict_with_generate": True, "finetuning_type": "prefixmemory", "quantization_bit": 4,
        "eval_dataset": "toy_sft", "dataset_dir": str(toy_data), "template": "qwen", "cutoff_len": 64,
        "max_samples": 4, "max_new_tokens": 4, "output_dir": str(tmp_path / "predict"),
        "per_device_eval_batch_size": 2, "report_to": "none", "preprocessing_num_workers": 1,
    }  # fmt: skip
    result = run_cli("train", config, tmp_path)
    assert QUANTIZED.format(bits=4) in result.stdout + result.stderr
    rows = (tmp_path / "predict" / "generated_predictions.jsonl").read_text().splitlines()
    assert len(rows) == 4 and all("predict" in json.loads(row) for row in rows)


def test_a_gptq_checkpoint_is_refused_before_it_loads(tmp_path):
    from llamafactory.hparams import get_train_args

    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "qwen2", "quantization_config": {"quant_method": "gptq"}})
    )
    args = dict(
        model_name_or_path=str(tmp_path), stage="sft", do_train=True, finetuning_type="prefixmemory", dataset="unused",
        template="qwen", output_dir=str(tmp_path / "out"), report_to="none",
    )  # fmt: skip
    with pytest.raises(ValueError) as error:
        get_train_args(args)
    assert str(error.value).startswith(
        f"`model_name_or_path` {tmp_path} is a gptq-quantized checkpoint, not supported"
    )
