"""What a run reads (an adapter, the checkpoint it resumes, an export folder) is checked by the parser before any
weight loads: in-process calls of LLaMA-Factory's get_train_args / get_infer_args on tiny local models."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

import prefixmemory
from prefixmemory_patches.errors import PrefixMemoryError


def _save_adapter(model_dir: Path, folder: Path, config=None, recorded: bool = False) -> Path:
    """A saved adapter of ``model_dir`` with random (non-zero) weights, as adapters saved before the base model was
    recorded in adapter_config.json (unless ``recorded``): only its tensors say which model it fits."""
    vision = "vision_config" in json.loads((model_dir / "config.json").read_text())
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model = get_peft_model(auto.from_pretrained(model_dir), config or prefixmemory.PrefixMemoryConfig())
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.1)
    model.save_pretrained(folder)
    if not recorded:
        _edit_config(folder, lambda config: {k: v for k, v in config.items() if k == "base_model_name_or_path" or
                                             not k.startswith("base_")})  # fmt: skip
    return folder


def _edit_config(folder: Path, change) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _checkpoint(output_dir: Path, step: int, adapter: Path, state: bool = True, weights: bool = True) -> Path:
    """``output_dir/checkpoint-<step>`` as the HF Trainer writes it (``state``: trainer_state.json, written last)."""
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors") if weights else ("adapter_config.json",):
        shutil.copy(adapter / name, folder / name)
    torch.save({"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}, folder / "optimizer.pt")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


@pytest.fixture(scope="module")
def models(tiny_qwen2, tmp_path_factory) -> dict[str, Path]:
    """The tiny Qwen2 model and models shaped otherwise."""
    from prefixmemory_study.tiny import save_tiny

    root = tmp_path_factory.mktemp("models")
    return {
        "tiny": tiny_qwen2,
        "four layers": save_tiny(root / "four-layers", "qwen2", num_hidden_layers=4),
        "eight heads": save_tiny(root / "eight-heads", "qwen2", num_attention_heads=8),
        "qwen3": save_tiny(root / "qwen3", "qwen3"),
    }


@pytest.fixture(scope="module")
def adapters(models, tmp_path_factory) -> dict[str, Path]:
    """A PrefixMemory adapter of each Qwen2 model, and a LoRA and a prefix-tuning adapter of the tiny one."""
    root = tmp_path_factory.mktemp("adapters")
    found = {
        name: _save_adapter(models[name], root / name.replace(" ", "-")) for name in ("four layers", "eight heads")
    }
    found["pmt"] = _save_adapter(models["tiny"], root / "pmt")
    found["lora"] = _save_adapter(models["tiny"], root / "lora", LoraConfig(r=2, target_modules=["q_proj"]))
    found["prefix"] = _save_adapter(
        models["tiny"], root / "prefix", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    )
    return found


def _train_args(model, output_dir, **overrides):
    from llamafactory.hparams import get_train_args

    args = dict(
        model_name_or_path=str(model), stage="sft", do_train=True, finetuning_type="prefixmemory", dataset="unused",
        template="qwen", output_dir=str(output_dir), overwrite_output_dir=True, report_to="none",
    )  # fmt: skip
    args.update(overrides)
    return get_train_args(args)


def _refusal(call, *args, **kwargs) -> str:
    with pytest.raises(PrefixMemoryError) as error:
        call(*args, **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_export_folder_serves_its_adapter(tiny_qwen2, adapters, tmp_path):
    """chat, api, webchat and export read get_infer_args, predict reads get_train_args: all get the adapter."""
    from llamafactory.hparams import get_infer_args

    export = Path(shutil.copytree(tiny_qwen2, tmp_path / "export"))
    shutil.copytree(adapters["pmt"], export / "prefixmemory_adapter")
    for finetuning_type in ({}, {"finetuning_type": "prefixmemory"}):
        model_args, _, finetuning_args, _ = get_infer_args(dict(model_name_or_path=str(export), **finetuning_type))
        assert model_args.adapter_name_or_path == [str(export / "prefixmemory_adapter")]
        assert finetuning_args.finetuning_type == "prefixmemory"
    model_args, _, training_args, finetuning_args, _ = _train_args(
        export, tmp_path / "predict", do_train=False, do_predict=True, predict_with_generate=True,
        eval_dataset="unused", finetuning_type="prefixmemory",
    )  # fmt: skip
    assert model_args.adapter_name_or_path == [str(export / "prefixmemory_adapter")]
    message = _refusal(get_infer_args, dict(model_name_or_path=str(export), finetuning_type="prefix"))
    assert message == (
        f"`model_name_or_path` {export} is a prefixmemory export ({export / 'prefixmemory_adapter'}) but "
        "`finetuning_type` is prefix; set `finetuning_type: prefixmemory` or leave it out."
    )
    model_args, _, _, _ = get_infer_args(dict(model_name_or_path=str(export), finetuning_type="lora"))
    assert model_args.adapter_name_or_path is None  # said in a warning: the bare base model, as asked

    shutil.rmtree(export / "prefixmemory_adapter")
    shutil.copytree(adapters["prefix"], export / "prefix_adapter")
    model_args, _, finetuning_args, _ = get_infer_args(dict(model_name_or_path=str(export)))
    assert model_args.adapter_name_or_path == [str(export / "prefix_adapter")]
    assert finetuning_args.finetuning_type == "prefix"


@pytest.mark.parametrize(
    "adapter, model, message",
    [
        ("four layers", "tiny", "`adapter_name_or_path` {adapter} adapts layers [2, 3] out of range: the model in "
         "`model_name_or_path` {model} has 2 decoder layers (0-1)."),
        ("pmt", "four layers", "`adapter_name_or_path` {adapter} adapts layers 0-1, all attention layers of the "
         "model it was trained on; the model in `model_name_or_path` {model} has attention layers 0-3; use it with "
         "the model it was trained on."),
        ("pmt", "qwen3", "`adapter_name_or_path` {adapter} was trained on another architecture: it reads q at "
         "q_proj, the model in `model_name_or_path` {model} (model_type `qwen3`) at q_norm; use it with the model it "
         "was trained on."),
        ("eight heads", "tiny", "`adapter_name_or_path` {adapter} does not fit the model in `model_name_or_path` "
         "{model}: `layers.0.self_attn.q_proj.prefixmemory_memory.bias` is [8, 1, 8], the model needs [4, 1, 16] (4 "
         "query heads, head_dim 16); use it with the model it was trained on."),
    ],
    ids=["4-layer adapter, 2-layer model", "2-layer adapter, 4-layer model", "qwen2 adapter, qwen3 model", "heads"],
)  # fmt: skip
def test_adapter_that_does_not_fit_the_model_is_refused(adapter, model, message, models, adapters, tmp_path):
    found = _refusal(_train_args, models[model], tmp_path / "out", adapter_name_or_path=str(adapters[adapter]))
    assert found == message.format(adapter=adapters[adapter], model=models[model])


# Families whose sizes the top level of config.json does not give: a vision-language model's text_config, DeepSeek-V3's
# q (nope + rope) and value head dims, Gemma 4's full-attention head_dim, Qwen3.5's layers without softmax attention,
# GLM-4-MoE reading q_proj where use_qk_norm is off (its fallback module).
FAMILIES = {
    "qwen2_5_vl": {}, "deepseek_v3": {}, "gemma4_text": {}, "qwen3_5_text": {}, "glm4_moe": {"use_qk_norm": False},
}  # fmt: skip


@pytest.fixture(scope="module")
def family_models(tmp_path_factory) -> dict[str, Path]:
    from prefixmemory_study.tiny import save_tiny

    root = tmp_path_factory.mktemp("families")
    return {name: save_tiny(root / name, name, **overrides) for name, overrides in FAMILIES.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_adapters_of_every_family_fit_their_model(family, family_models, tmp_path):
    """Their own adapters pass the checks, recorded or not, with the mlp kernel (q head dim in, F out) too."""
    config = prefixmemory.PrefixMemoryConfig(feature_map="mlp", feature_dim=8)
    for recorded in (False, True):
        adapter = _save_adapter(family_models[family], tmp_path / f"adapter-{recorded}", config, recorded)
        model_args, *_ = _train_args(family_models[family], tmp_path / "out", adapter_name_or_path=str(adapter))
        assert model_args.adapter_name_or_path == [str(adapter)]


def test_adapter_of_another_value_head_dim_is_refused(family_models, tmp_path):
    """DeepSeek-V3: memories are (heads, q head dim, v_head_dim); another v_head_dim does not fit."""
    from prefixmemory_study.tiny import save_tiny

    other = save_tiny(tmp_path / "v16", "deepseek_v3", v_head_dim=16)
    adapter = _save_adapter(other, tmp_path / "adapter")
    model = family_models["deepseek_v3"]
    message = _refusal(_train_args, model, tmp_path / "out", adapter_name_or_path=str(adapter))
    assert message == (
        f"`adapter_name_or_path` {adapter} does not fit the model in `model_name_or_path` {model}: "
        "`layers.0.self_attn.q_b_proj.prefixmemory_memory.bias` is [4, 1, 16], the model needs [4, 1, 12] (4 query "
        "heads, q head dim 24, value 12); use it with the model it was trained on."
    )


def test_layers_without_softmax_attention_are_refused(family_models, tmp_path):
    """Qwen3.5's layer 0 is a Gated DeltaNet layer (tiny config: linear, full)."""
    model = family_models["qwen3_5_text"]
    message = _refusal(_train_args, model, tmp_path / "out", pmt_layers="0,1")
    assert message == (
        f"`pmt_layers` [0]: those decoder layers of the model in `model_name_or_path` {model} have no softmax "
        "attention to add a memory to; its attention layers are 1."
    )


def test_adapter_made_for_another_model_is_refused_from_its_config(models, adapters, tmp_path):
    adapter = Path(shutil.copytree(adapters["pmt"], tmp_path / "recorded"))
    _edit_config(adapter, lambda config: {**config, "base_model_type": "llama", "base_num_heads": 4})
    message = _refusal(_train_args, models["tiny"], tmp_path / "out", adapter_name_or_path=str(adapter))
    assert message == (
        f"`adapter_name_or_path` {adapter} was made for another model: model_type llama vs qwen2 (adapter vs the "
        f"model in `model_name_or_path` {models['tiny']}); use it with the model it was trained on."
    )


def test_bad_adapter_contents_are_refused(models, adapters, tmp_path):
    """A value PrefixMemoryConfig refuses, and a NaN or an inf in a tensor, named with the file."""
    adapter = Path(shutil.copytree(adapters["pmt"], tmp_path / "adapter"))
    _edit_config(adapter, lambda config: {**config, "feature_map": "softmax"})
    message = _refusal(_train_args, models["tiny"], tmp_path / "out", adapter_name_or_path=str(adapter))
    assert message == (
        f"`adapter_name_or_path` {adapter / 'adapter_config.json'}: `feature_map` must be one of elu, gelu, relu, "
        "mlp, got 'softmax'."
    )
    _edit_config(adapter, lambda config: {**config, "feature_map": "elu"})
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(weights)
    name = "base_model.model.model.layers.1.self_attn.q_proj.prefixmemory_memory.weight"
    for value, kind in ((float("nan"), "NaN"), (float("inf"), "inf")):
        save_file({**tensors, name: tensors[name].index_fill(0, torch.tensor([2]), value)}, weights)
        message = _refusal(_train_args, models["tiny"], tmp_path / "out", adapter_name_or_path=str(adapter))
        assert message == (
            f"`adapter_name_or_path` {weights} holds {kind} in `{name}` (256 of 1,024 values not finite): the "
            "adapter is damaged; use an earlier checkpoint or train it again."
        )


def test_adapter_larger_than_the_model_is_refused(models, tmp_path):
    message = _refusal(_train_args, models["tiny"], tmp_path / "out", pmt_feature_map="mlp", pmt_feature_dim=2**31)
    # 2 layers x (4 heads x F x 16 (M) + 4 x 16 (its bias) + 4 x (16 x F + F) (the kernel)), F = 2**31
    assert message.startswith("`pmt_feature_dim` 2147483648 makes an adapter of 566,935,683,200 parameters, more ")
    assert message.endswith(
        f"than the whole model in `model_name_or_path` {models['tiny']} (about 155,648); choose a smaller "
        "`pmt_feature_dim` (default: head_dim)."
    )


@pytest.fixture
def run_dir(adapters, tmp_path) -> Path:
    """An output_dir: checkpoint-1 complete (elu), checkpoint-2 half-written (no trainer_state.json), as a killed
    save leaves it."""
    run = tmp_path / "run"
    _checkpoint(run, 1, adapters["pmt"])
    _checkpoint(run, 2, adapters["pmt"], state=False)
    return run


@pytest.mark.parametrize("value", [True, "True", "true"])
def test_resume_true_is_the_last_complete_checkpoint_with_its_guards(value, models, run_dir):
    _, _, training_args, _, _ = _train_args(models["tiny"], run_dir, resume_from_checkpoint=value)
    assert training_args.resume_from_checkpoint == str(run_dir / "checkpoint-1")
    message = _refusal(_train_args, models["tiny"], run_dir, resume_from_checkpoint=value, pmt_feature_map="gelu")
    assert message.startswith(
        f"`resume_from_checkpoint` {run_dir / 'checkpoint-1'} was trained with other values: `pmt_feature_map` gelu "
        "vs elu (arguments vs checkpoint)"
    )


def test_resume_true_without_a_complete_checkpoint_is_refused(models, run_dir):
    shutil.rmtree(run_dir / "checkpoint-1")
    message = _refusal(_train_args, models["tiny"], run_dir, resume_from_checkpoint=True)
    assert message == (
        f"`resume_from_checkpoint` True: `output_dir` {run_dir} holds no complete checkpoint (one with "
        "adapter_config.json, adapter_model.safetensors, trainer_state.json); give a checkpoint folder, or drop the "
        "key to start anew."
    )


def test_automatic_resume_skips_a_checkpoint_without_adapter_weights(models, adapters, run_dir):
    _checkpoint(run_dir, 3, adapters["pmt"], weights=False)  # trainer_state.json, but no adapter_model.safetensors
    _, _, training_args, _, _ = _train_args(models["tiny"], run_dir, overwrite_output_dir=False)
    assert training_args.resume_from_checkpoint == str(run_dir / "checkpoint-1")


def test_resumed_checkpoint_is_checked_like_an_adapter(models, adapters, run_dir):
    """A LoRA checkpoint, a damaged optimizer.pt and a NaN in the memories, each named before anything loads."""
    lora = _checkpoint(run_dir.parent / "lora-run", 1, adapters["lora"])
    message = _refusal(_train_args, models["tiny"], run_dir, resume_from_checkpoint=str(lora))
    assert message == f"`resume_from_checkpoint` {lora} holds a LORA adapter, not a prefixmemory one."

    checkpoint = run_dir / "checkpoint-1"
    optimizer = checkpoint / "optimizer.pt"
    saved = optimizer.read_bytes()
    optimizer.write_bytes(saved[:-40])
    message = _refusal(_train_args, models["tiny"], run_dir, resume_from_checkpoint=True)
    assert message.startswith(f"`resume_from_checkpoint` {optimizer} is damaged (not a torch.save archive: ")
    assert message.endswith("resume from another checkpoint, or start anew with a new `output_dir`.")
    optimizer.write_bytes(saved)

    weights = checkpoint / "adapter_model.safetensors"
    tensors = load_file(weights)
    name = "base_model.model.model.layers.0.self_attn.q_proj.prefixmemory_memory.bias"
    save_file({**tensors, name: torch.full_like(tensors[name], float("nan"))}, weights)
    message = _refusal(_train_args, models["tiny"], run_dir, overwrite_output_dir=False)
    assert message.startswith(f"`output_dir` {weights} holds NaN in `{name}` (64 of 64 values not finite)")
