"""DPO/KTO references: memory disabled for a fresh adapter, the SFT model when continuing from an SFT adapter."""

from pathlib import Path

import torch
from lfcli import LOG2, logged_losses, run_cli
from peft import PeftModel
from transformers import AutoModelForCausalLM

import prefixmemory  # noqa: F401  (registers the PEFT method)


def _load_policy(model_dir, adapter: str, stage: str):
    """The model LLaMA-Factory builds for a DPO/KTO run that continues from ``adapter``."""
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    args = dict(
        model_name_or_path=str(model_dir), adapter_name_or_path=adapter, finetuning_type="prefixmemory",
        stage=stage, do_train=True, output_dir=str(Path(adapter).parent / "unused"), template="qwen",
        dataset="unused", report_to="none",
    )  # fmt: skip
    model_args, _, _, finetuning_args, _ = get_train_args(args)
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    return load_model(tokenizer, model_args, finetuning_args, is_trainable=True)


def test_dpo_reference_is_sft_model_when_continuing_from_sft_adapter(train_config, tiny_qwen2, tmp_path):
    sft = train_config(max_steps=10, output_dir=str(tmp_path / "sft"))
    run_cli("train", sft, tmp_path)

    tokens = torch.tensor([[11, 42, 7, 99, 5, 23]])
    policy = _load_policy(tiny_qwen2, sft["output_dir"], "dpo")
    with torch.no_grad():
        for param in policy.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))  # as if DPO had trained the memory for a while
        with policy.disable_adapter():
            reference_logits = policy(tokens).logits
        policy_logits = policy(tokens).logits

        base = AutoModelForCausalLM.from_pretrained(tiny_qwen2)
        sft_logits = PeftModel.from_pretrained(base, sft["output_dir"])(tokens).logits
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_qwen2)(tokens).logits

    torch.testing.assert_close(reference_logits, sft_logits, rtol=0, atol=1e-6)
    assert (reference_logits - base_logits).abs().max() > 1e-3  # the SFT memory really is in the reference
    assert (policy_logits - sft_logits).abs().max() > 1e-3  # and the policy moved away from it

    dpo = train_config(
        stage="dpo", dataset="toy_pref", max_steps=2, adapter_name_or_path=sft["output_dir"],
        output_dir=str(tmp_path / "dpo"),
    )  # fmt: skip
    run_cli("train", dpo, tmp_path)
    assert abs(logged_losses(Path(dpo["output_dir"]))[0] - LOG2) < 1e-3  # policy == reference at step 0


def test_fresh_adapter_reference_is_base_model(tiny_qwen2):
    """Without an SFT adapter the trainers' disable_adapter() must give exactly the base model."""
    from peft import get_peft_model

    tokens = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    base_logits = AutoModelForCausalLM.from_pretrained(tiny_qwen2)(tokens).logits
    policy = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen2), prefixmemory.PrefixMemoryConfig())
    with torch.no_grad():
        for param in policy.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param))
        with policy.disable_adapter():
            torch.testing.assert_close(policy(tokens).logits, base_logits, rtol=0, atol=0)
