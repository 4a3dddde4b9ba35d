"""The recipes read as files: sections, twins, the paper's settings, the data and DeepSpeed files they name."""

import json
import re

import pytest
import yaml
from recipe_helpers import ARCHITECTURE, DATASET_INFO, RECIPES, REPO, SECTIONS, config, sections, shipped

PMT_RECIPES = [path for path in RECIPES if path.name.endswith("_pmt.yaml")]
BASELINES = ("prefix", "full", "loraplus")  # Table 1's other columns: each few-shot PMT recipe has these twins too
BASELINE_RECIPES = [path for path in RECIPES if path.name.endswith(tuple(f"_{m}.yaml" for m in BASELINES))]
PAPER_RECIPES = [path for path in RECIPES if not path.name.startswith("demo_")]
METHOD_KEYS = re.compile(
    r"^(finetuning_type|pmt_.*|lora_.*|loraplus_.*|prefix_.*|deepspeed|disable_gradient_checkpointing)$"
)
DEEPSPEED = REPO / "recipes" / "deepspeed"


def ids(paths):
    return [path.name for path in paths]


def twin(path, method="lora"):
    return path.with_name(path.name.replace("_pmt.yaml", f"_{method}.yaml"))


def test_every_recipe_has_a_twin():
    names = {path.name for path in RECIPES}
    assert names, "no recipes found"
    for name in names:
        assert name.endswith(tuple(f"_{m}.yaml" for m in ("pmt", "lora", "pmt4bit", *BASELINES))), name
        stem, method = name.removesuffix(".yaml").rsplit("_", 1)
        others = [f"{stem}_lora.yaml"] if method == "pmt" else [f"{stem}_pmt.yaml"]
        assert all(other in names for other in others), f"{name} has no twin {others}"


@pytest.mark.parametrize("method", BASELINES)
def test_fewshot_recipes_have_a_twin_per_table_1_column(method):
    """Table 1's Prefix (32 virtual tokens), Full and LoRA+ columns: each few-shot PMT recipe has those twins."""
    fewshot = [path for path in PMT_RECIPES if "_fewshot_" in path.name]
    named = [path for path in BASELINE_RECIPES if path.name.endswith(f"_{method}.yaml")]
    assert fewshot and sorted(twin(path, method) for path in fewshot) == named


def expected_method_keys(path) -> dict:
    """The method keys of a baseline twin: what makes it Prefix, Full or LoRA+ and nothing else."""
    method = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
    if method == "prefix":
        return {
            "finetuning_type": "prefix",
            "prefix_num_virtual_tokens": 32,
            "prefix_projection": True,
            "disable_gradient_checkpointing": True,
        }
    if method == "loraplus":  # LoRA's keys and the LoRA+ paper's learning-rate ratio
        _, lora = sections(path.with_name(path.name.replace("_loraplus.yaml", "_lora.yaml")))
        return {**lora["method"], "loraplus_lr_ratio": 16.0}
    if "Llama-2-7b" in config(path)["model_name_or_path"]:  # 7B in full needs ZeRO-3 offload on one GPU
        return {"finetuning_type": "full", "deepspeed": "recipes/deepspeed/ds_z3_offload_config.json"}
    return {"finetuning_type": "full"}


@pytest.mark.parametrize("path", BASELINE_RECIPES, ids=ids(BASELINE_RECIPES))
def test_baseline_twins_differ_only_in_the_method_block(path):
    method = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
    _, ours_parsed = sections(path)
    _, pmt = sections(path.with_name(path.name.replace(f"_{method}.yaml", "_pmt.yaml")))
    for name in SECTIONS:
        ours, theirs = dict(ours_parsed[name]), dict(pmt[name])
        if name == "output":
            assert ours.pop("output_dir").replace(f"/{method}/", "/prefixmemory/") == theirs.pop("output_dir")
        if name != "method":
            assert ours == theirs, f"### {name} differs"
    found = {key: value for key, value in ours_parsed["method"].items() if METHOD_KEYS.match(key)}
    expected = {key: value for key, value in expected_method_keys(path).items() if METHOD_KEYS.match(key)}
    assert found == expected


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_sections_and_header(path):
    header, parsed = sections(path)
    assert list(parsed) == SECTIONS
    assert all(line.startswith("#") for line in header.strip().splitlines()), "the header is comments only"
    for part in ("Reproduces", "Hardware:", "from the repository root", f"llamafactory-cli train recipes/{path.name}"):
        assert part in header, f"header lacks {part!r}"
    keys = [key for body in parsed.values() for key in body]
    assert len(keys) == len(set(keys)), "a key appears in two sections"
    assert parsed["model"]["model_name_or_path"] in ARCHITECTURE
    assert parsed["dataset"]["dataset_dir"] == "data"


@pytest.mark.parametrize("path", PMT_RECIPES, ids=ids(PMT_RECIPES))
def test_twins_differ_only_in_the_method_block(path):
    _, pmt = sections(path)
    _, lora = sections(twin(path))
    for name in SECTIONS:
        if name == "method":
            continue
        ours, theirs = dict(pmt[name]), dict(lora[name])
        if name == "output":  # each method saves to its own folder
            assert ours.pop("output_dir").replace("/prefixmemory/", "/lora/") == theirs.pop("output_dir")
        assert ours == theirs, f"### {name} differs"
    shared = {key: value for key, value in pmt["method"].items() if not METHOD_KEYS.match(key)}
    assert shared == {key: value for key, value in lora["method"].items() if not METHOD_KEYS.match(key)}

    method = {key: value for key, value in pmt["method"].items() if METHOD_KEYS.match(key)}
    assert method == {"finetuning_type": "prefixmemory", "pmt_feature_map": "elu", "pmt_layers": "all"}
    method = {key: value for key, value in lora["method"].items() if METHOD_KEYS.match(key)}
    assert method["finetuning_type"] == "lora"
    assert method["lora_target"] == "q_proj,v_proj"  # what Table 8's LoRA parameter counts add up to
    assert method["lora_alpha"] == 2 * method["lora_rank"]
    rank = 8 if path.name.startswith("demo_") else 64 if "_fewshot_" in path.name else 32
    assert method["lora_rank"] == rank


QUANTIZATION = {
    "quantization_bit": 4,
    "quantization_method": "bnb",
    "quantization_type": "nf4",
    "double_quantization": True,
    "upcast_layernorm": True,
}
PAPER_PMT = [path for path in PMT_RECIPES if not path.name.startswith("demo_")]


@pytest.mark.parametrize("path", PAPER_PMT, ids=ids(PAPER_PMT))
def test_each_paper_recipe_has_a_4bit_twin_on_one_gpu(path):
    """The same run on a 4-bit base: the quantization keys, its own output folder, and on one GPU the accumulation
    that keeps the recipe's 32 sequences (no DeepSpeed); nothing else differs. Its header gives the computed memory."""
    header, quantized = sections(twin(path, "pmt4bit"))
    _, pmt = sections(path)
    assert dict(quantized["model"]) == {**pmt["model"], **QUANTIZATION}
    output_dir = pmt["output"]["output_dir"].replace("/prefixmemory/", "/prefixmemory-4bit/")
    assert quantized["output"]["output_dir"] == output_dir
    assert {**quantized["output"], "output_dir": None} == {**pmt["output"], "output_dir": None}
    assert (quantized["method"], quantized["dataset"]) == (pmt["method"], pmt["dataset"])
    train, expected = dict(quantized["train"]), {k: v for k, v in pmt["train"].items() if k != "deepspeed"}
    if "_fewshot_" not in path.name:
        expected["gradient_accumulation_steps"] = 32
    assert train == expected
    peak = float(re.search(r"# Hardware: 1 GPU with 24 GB\. Computed peak ([\d.]+) GB", header).group(1))
    assert peak + 1 < 24


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=ids(PAPER_RECIPES))
def test_appendix_c_training_settings(path):
    recipe = config(path)
    assert recipe["optim"] == "adamw_torch"
    assert (recipe["weight_decay"], recipe["adam_beta1"], recipe["adam_beta2"]) == (0.1, 0.9, 0.95)
    assert recipe["adam_epsilon"] == pytest.approx(1e-8)
    assert recipe["learning_rate"] == pytest.approx(2e-5)
    assert (recipe["lr_scheduler_type"], recipe["warmup_ratio"]) == ("constant", 0.0)
    assert recipe["per_device_train_batch_size"] == 1
    assert recipe["bf16"] is True
    if "_fewshot_" in path.name:  # appendix A.1: 4000 steps at batch size 2, on one GPU
        assert (recipe["max_steps"], recipe["gradient_accumulation_steps"]) == (4000, 2)
        assert ("deepspeed" in recipe) == (path.name.startswith("llama2_") and path.name.endswith("_full.yaml"))
    else:  # 1 x accumulation x GPUs of the command line = 32
        gpus = len(re.search(r"CUDA_VISIBLE_DEVICES=([\d,]+)", path.read_text()).group(1).split(","))
        assert recipe["gradient_accumulation_steps"] * gpus == 32
        # appendix C: alignment on 8 GPUs, SFT on 2; the 4-bit twins on one
        assert gpus == (1 if path.name.endswith("_pmt4bit.yaml") else 8 if recipe["stage"] == "dpo" else 2)
        assert recipe["num_train_epochs"] == 1.0


@pytest.mark.parametrize("name", ["qwen2.5_simpo_pmt.yaml", "qwen2.5_simpo_lora.yaml"])
def test_simpo_uses_simpo_settings(name):
    recipe = config(REPO / "recipes" / name)
    assert (recipe["stage"], recipe["pref_loss"]) == ("dpo", "simpo")
    # SimPO's Llama3-Instruct setting: beta 2.5, gamma/beta 0.55; LLaMA-Factory's simpo_gamma is absolute
    assert recipe["pref_beta"] == 2.5
    assert recipe["simpo_gamma"] == pytest.approx(2.5 * 0.55)


def test_dpo_and_simpo_train_on_the_same_pairs():
    assert config(REPO / "recipes/qwen2.5_dpo_pmt.yaml")["dataset"] == "ultrafeedback_10k"
    assert config(REPO / "recipes/qwen2.5_simpo_pmt.yaml")["dataset"] == "ultrafeedback_10k"


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_named_datasets_exist_with_sample_twins(path):
    """The recipe's dataset and the ones its comments offer as overrides (dataset=...)."""
    text = path.read_text()
    names = {config(path)["dataset"], *re.findall(r"\bdataset=(\w+)", text)}
    for name in names:
        assert name in DATASET_INFO, f"{name} is not in data/dataset_info.json"
        assert name.endswith("_sample") or shipped(name) or f"{name}_sample" in DATASET_INFO, f"{name}: no twin"


@pytest.mark.parametrize("path", RECIPES, ids=ids(RECIPES))
def test_named_deepspeed_files_exist(path):
    text = path.read_text()
    named = set(re.findall(r"\bdeepspeed[:=] *(\S+\.json)", text))
    assert all((REPO / name).is_file() for name in named), named
    if "deepspeed" in config(path):
        assert "FORCE_TORCHRUN=1" in text  # LLaMA-Factory refuses DeepSpeed outside torchrun


def test_deepspeed_configs_as_appendix_c():
    assert sorted(path.name for path in DEEPSPEED.glob("*.json")) == [
        "ds_z2_config.json",
        "ds_z3_config.json",
        "ds_z3_offload_config.json",
    ]
    configs = {path.stem: json.loads(path.read_text()) for path in DEEPSPEED.glob("*.json")}
    for cfg in configs.values():  # every size the Trainer knows is left to it
        assert cfg["train_micro_batch_size_per_gpu"] == cfg["gradient_accumulation_steps"] == "auto"
        assert cfg["gradient_clipping"] == "auto" and cfg["bf16"] == {"enabled": "auto"}
    assert configs["ds_z2_config"]["zero_optimization"]["stage"] == 2
    assert configs["ds_z3_config"]["zero_optimization"]["stage"] == 3
    offload = configs["ds_z3_offload_config"]
    zero = offload["zero_optimization"]
    assert zero["stage"] == 3 and zero["overlap_comm"] is True and zero["contiguous_gradients"] is True
    assert zero["offload_param"] == zero["offload_optimizer"] == {"device": "cpu", "pin_memory": True}


SERVING_YAMLS = sorted(path for folder in ("inference", "export") for path in (REPO / "recipes" / folder).glob("*.y*"))


@pytest.mark.parametrize("path", SERVING_YAMLS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_inference_and_export_yamls_follow_their_training_recipe(path):
    """An inference or export YAML loads what its training recipe of the same name writes, as it was trained."""
    config, trained = (yaml.safe_load(file.read_text()) for file in (path, REPO / "recipes" / path.name))
    for key in ("model_name_or_path", "finetuning_type", "template", "default_system"):
        assert config.get(key) == trained.get(key), key
    assert config["adapter_name_or_path"] == trained["output_dir"]
    if path.parent.name == "export":
        assert config["export_dir"] and not config.get("export_quantization_bit")
