"""Contradictions are refused before the model loads, with one line naming both sides."""

import pytest
from lfcli import run_cli
from reliability_checks import refusal, unchanged


@pytest.mark.parametrize(
    "how, overrides, message",
    [
        (
            "explicit resume, other feature map",
            dict(resume_from_checkpoint="{run}/checkpoint-1", pmt_feature_map="gelu"),
            "error: `resume_from_checkpoint` {run}/checkpoint-1 was trained with other values: `pmt_feature_map` "
            "gelu vs elu (arguments vs checkpoint)",
        ),
        (
            "automatic resume, other feature map",
            dict(output_dir="{run}", overwrite_output_dir=False, max_steps=3, pmt_feature_map="relu"),
            "error: `output_dir` holds {run}/checkpoint-2 (auto-resumed), which was trained with other values: "
            "`pmt_feature_map` relu vs elu",
        ),
        (
            "explicit resume, other layers",
            dict(resume_from_checkpoint="{run}/checkpoint-2", pmt_layers="1"),
            "`pmt_layers` 1 vs all (arguments vs checkpoint)",
        ),
        (
            "explicit resume, memory bias switched off",
            dict(resume_from_checkpoint="{run}/checkpoint-2", pmt_memory_bias=False),
            "`pmt_memory_bias` False vs True (arguments vs checkpoint)",
        ),
        (
            "adapter_name_or_path, other pmt_* values",
            dict(adapter_name_or_path="{run}", pmt_feature_map="mlp", pmt_feature_dim=8),
            "error: `adapter_name_or_path` {run} was trained with other values: `pmt_feature_map` mlp vs elu; "
            "`pmt_feature_dim` 8 vs head_dim (arguments vs adapter)",
        ),
        (
            "PrefixMemory adapter with finetuning_type lora",
            dict(adapter_name_or_path="{run}", finetuning_type="lora"),
            "error: `adapter_name_or_path` {run} holds a PREFIXMEMORY adapter but `finetuning_type` is lora; set "
            "`finetuning_type: prefixmemory`.",
        ),
        (
            "LoRA key at its default value",
            dict(lora_rank=8),
            "error: `lora_rank` does not apply to finetuning_type: prefixmemory (got 8).",
        ),
        (
            "freeze key with prefixmemory",
            dict(freeze_trainable_layers=2),
            "error: `freeze_trainable_layers` does not apply to finetuning_type: prefixmemory (got 2).",
        ),
        (
            "pmt_* key at its default value with lora",
            dict(finetuning_type="lora", pmt_feature_map="elu"),
            "error: `pmt_feature_map` is only valid with finetuning_type: prefixmemory.",
        ),
        (
            "unknown finetuning_type",
            dict(finetuning_type="prefix-memory"),
            "error: `finetuning_type` 'prefix-memory' is unknown; choose one of lora, oft, freeze, full, "
            "prefixmemory, prefix",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 60 and "{" not in value else None,
)
def test_contradiction_refused(how, overrides, message, config, tiny_qwen2, trained_run, tmp_path):
    overrides = {key: str(value).format(run=trained_run) if isinstance(value, str) else value
                 for key, value in overrides.items()}  # fmt: skip
    with unchanged(tiny_qwen2, trained_run):
        result = run_cli("train", config(**overrides), tmp_path, check=False)
    assert message.format(run=trained_run) in refusal(result)


def test_finetuning_type_is_case_insensitive_and_size_is_warned(config, tiny_qwen2, tmp_path):
    """`PrefixMemory` trains a prefixmemory adapter; an mlp kernel wider than the attention gets a warning."""
    run = config(finetuning_type="PrefixMemory", pmt_feature_map="mlp", pmt_feature_dim=128, max_steps=1)
    with unchanged(tiny_qwen2):
        result = run_cli("train", run, tmp_path)
    # Written out for the tiny model (2 layers, 4 heads, head_dim 16, hidden 64, 2 kv heads, F = 128):
    # adapter 2 * (4*128*16 + 4*16 + 4*(16*128 + 128)) = 33,920 (M, its bias, the kernel);
    # attention 2 * 64*16 * (2*4 + 2*2) = 24,576.
    log = result.stdout + result.stderr
    # 17.9%: 33,920 / (33,920 + 155,648), the base counted from config.json before loading (embeddings, head,
    # attention and MLP weights; norms and biases left out): the loader's count below gives 17.84%.
    assert "The PrefixMemory adapter has 33,920 trainable parameters (17.9% of the model)" in log
    assert "more than the model's attention projections (24,576)" in log
    assert "trainable params: 33,920 || all params: 190,144" in log and "Fine-tuning method: prefixmemory" in log
    assert '"peft_type": "PREFIXMEMORY"' in (tmp_path / "new" / "adapter_config.json").read_text()
