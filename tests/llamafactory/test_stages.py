"""Every training stage trains a PrefixMemory adapter through the unmodified llamafactory-cli."""

import json
from pathlib import Path

import pytest
import torch
from lfcli import LOG2, logged_losses, run_cli
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

# tiny qwen2: 2 layers, 4 query heads, head_dim 16; M and its bias in each layer
MEMORY_SHAPES = {"weight": (4, 16, 16), "bias": (4, 1, 16)}

STAGES = {
    "sft": dict(val_size=0.1, eval_strategy="steps", eval_steps=15, plot_loss=True),
    "pt": dict(stage="pt", dataset="toy_pt"),  # LLaMA-Factory packs pt data by default
    "sft-bf16-eager": dict(bf16=True, use_cpu=True, flash_attn="disabled"),  # CPU autocast to bf16
    "dpo": dict(stage="dpo", dataset="toy_pref", pref_beta=0.1, pref_loss="sigmoid", flash_attn="sdpa"),
    "simpo": dict(stage="dpo", dataset="toy_pref", pref_loss="simpo", pref_beta=2.0, simpo_gamma=1.0),
    "orpo": dict(stage="dpo", dataset="toy_pref", pref_loss="orpo"),
    "kto": dict(stage="kto", dataset="toy_kto", pref_beta=0.1),
    "rm": dict(stage="rm", dataset="toy_pref"),  # LLaMA-Factory adds and saves a trainable value head
}


def _adapter_tensors(folder: Path, *extra_files: str) -> dict:
    """The adapter's tensors; asserts no base-model weights were written (training_args.bin is the Trainer's)."""
    weights = sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    assert weights == sorted(["adapter_model.safetensors", "training_args.bin", *extra_files]), weights
    return load_file(folder / "adapter_model.safetensors")


def _check_reward_model_loads(model_dir: str, run: Path) -> None:
    """LLaMA-Factory loads the run as a reward model (load_model with add_valuehead, as its rm workflow does) with
    the saved value head and memories: its values equal PEFT's adapter plus the saved head, computed by hand."""
    from llamafactory.hparams import get_infer_args
    from llamafactory.model import load_model, load_tokenizer

    args = dict(model_name_or_path=model_dir, adapter_name_or_path=str(run), finetuning_type="prefixmemory")
    model_args, _, finetuning_args, _ = get_infer_args({**args, "template": "qwen"})
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    reward_model = load_model(tokenizer, model_args, finetuning_args, is_trainable=False, add_valuehead=True)
    head = load_file(run / "value_head.safetensors")
    assert sorted(head) == ["v_head.summary.bias", "v_head.summary.weight"]
    torch.testing.assert_close(reward_model.v_head.summary.weight, head["v_head.summary.weight"], rtol=0, atol=0)
    torch.testing.assert_close(reward_model.v_head.summary.bias, head["v_head.summary.bias"], rtol=0, atol=0)

    tokens = torch.tensor([[11, 42, 7, 99, 5, 23]])
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(run)).eval()
    with torch.no_grad():
        values = reward_model(input_ids=tokens)[2]
        hidden = peft_model(tokens, output_hidden_states=True).hidden_states[-1]
        with peft_model.disable_adapter():
            base_hidden = peft_model(tokens, output_hidden_states=True).hidden_states[-1]
    weight, bias = head["v_head.summary.weight"], head["v_head.summary.bias"]
    torch.testing.assert_close(values, (hidden @ weight.T + bias).squeeze(-1), rtol=1e-5, atol=1e-6)
    assert (values - (base_hidden @ weight.T + bias).squeeze(-1)).abs().max() > 1e-3  # the memories act


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_trains_and_saves_adapter_only(name, train_config, tmp_path):
    config = train_config(**STAGES[name])
    result = run_cli("train", config, tmp_path)
    out = Path(config["output_dir"])
    assert "Created reference model" not in result.stdout + result.stderr  # no second model for DPO/KTO

    losses = logged_losses(out)
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 0.02, f"{name}: loss did not go down ({first:.4f} -> {last:.4f})"
    if config.get("pref_loss") == "sigmoid":
        assert losses[0] == pytest.approx(LOG2, abs=1e-3)  # memory starts at zero: policy == reference

    tensors = _adapter_tensors(out, *(["value_head.safetensors"] if name == "rm" else []))
    assert sorted(tensors) == sorted(
        f"base_model.model.model.layers.{i}.self_attn.q_proj.prefixmemory_memory.{part}"
        for i in range(2)
        for part in MEMORY_SHAPES
    )
    assert all(tuple(t.shape) == MEMORY_SHAPES[k.rsplit(".", 1)[1]] and t.abs().sum() > 0 for k, t in tensors.items())
    if name == "rm":
        _check_reward_model_loads(config["model_name_or_path"], out)
    if name == "sft":
        assert (out / "training_loss.png").is_file() and (out / "training_eval_loss.png").is_file()
        assert logged_losses(out, "eval_loss")


def test_cli_flag_form_and_feature_map_choice(train_config, tiny_qwen2, toy_data, tmp_path):
    """The `--key value` form hits argparse choices, which must list prefixmemory."""
    config = train_config(max_steps=2, pmt_feature_map="mlp", pmt_feature_dim=8, pmt_layers="1", pmt_memory_bias=False)
    flags = [f"--{key}={value}" for key, value in config.items()]
    run_cli("train", None, tmp_path, *flags)
    assert json.loads((Path(config["output_dir"]) / "adapter_config.json").read_text())["memory_bias"] is False
    tensors = load_file(Path(config["output_dir"]) / "adapter_model.safetensors")
    shapes = {key.split("self_attn.")[1]: tuple(t.shape) for key, t in tensors.items()}
    assert all(".layers.1." in key for key in tensors)
    assert shapes == {
        "q_proj.prefixmemory_memory.weight": (4, 8, 16),
        "q_proj.prefixmemory_kernel.weight": (4, 16, 8),
        "q_proj.prefixmemory_kernel.bias": (4, 1, 8),
    }


@pytest.mark.parametrize("template", ["llama2", "llama3"])
def test_llama_templates(template, train_config, tiny_llama, tmp_path):
    config = train_config(model_name_or_path=str(tiny_llama), template=template, max_steps=2)
    run_cli("train", config, tmp_path)
    tensors = _adapter_tensors(Path(config["output_dir"]))
    assert len(tensors) == 4 and all(t.abs().sum() > 0 for t in tensors.values())  # M and bias, 2 layers
