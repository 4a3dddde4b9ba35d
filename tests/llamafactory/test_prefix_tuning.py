"""Classic prefix-tuning (finetuning_type: prefix), the paper's baseline, through the same machinery."""

from pathlib import Path

import pytest
import torch
from lfcli import logged_losses, run_cli
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

PREFIX = dict(finetuning_type="prefix", prefix_num_virtual_tokens=8, disable_gradient_checkpointing=True)
TOKENS = torch.tensor([[11, 42, 7, 99, 5, 23, 64]])


@pytest.mark.parametrize("model", ["tiny_qwen2", "tiny_llama"])
def test_prefix_sft_trains_serves_and_exports(model, request, train_config, tmp_path):
    model_dir = request.getfixturevalue(model)
    config = train_config(**PREFIX, model_name_or_path=str(model_dir), max_steps=20)
    run_cli("train", config, tmp_path)
    out = Path(config["output_dir"])
    losses = logged_losses(out)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.02
    (prefix,) = load_file(out / "adapter_model.safetensors").values()
    assert tuple(prefix.shape) == (8, 2 * 2 * 2 * 16)  # tokens x (layers x {k, v} x kv heads x head_dim)

    from llamafactory.chat import ChatModel

    chat = ChatModel(dict(
        model_name_or_path=str(model_dir), adapter_name_or_path=str(out), finetuning_type="prefix",
        template="qwen", infer_backend="huggingface", max_new_tokens=6, do_sample=False,
    ))  # fmt: skip
    peft_model = chat.engine.model
    with torch.no_grad():
        cached = peft_model.generate(input_ids=TOKENS, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = peft_model.generate(input_ids=TOKENS, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    assert chat.chat([{"role": "user", "content": "Count to 3."}])[0].response_text is not None

    export_dir = tmp_path / "export"
    export = dict(
        model_name_or_path=str(model_dir), adapter_name_or_path=str(out), finetuning_type="prefix",
        template="qwen", export_dir=str(export_dir), infer_dtype="float32",
    )  # fmt: skip
    run_cli("export", export, tmp_path)
    with torch.no_grad():
        exported = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(export_dir), export_dir / "prefix_adapter"
        )
        original = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out)
        torch.testing.assert_close(exported(TOKENS).logits, original(TOKENS).logits, rtol=0, atol=1e-6)


def test_prefix_dpo_uses_the_same_weights_as_reference(train_config, tmp_path):
    config = train_config(**PREFIX, stage="dpo", dataset="toy_pref", pref_beta=0.1, max_steps=2)
    result = run_cli("train", config, tmp_path)
    assert "Created reference model" not in result.stdout + result.stderr  # upstream's log for a second model
    assert len(logged_losses(Path(config["output_dir"]))) == 2


def _train_args(**overrides):
    from llamafactory.hparams import get_train_args

    args = dict(
        model_name_or_path="unused", stage="sft", do_train=True, dataset="unused", template="qwen",
        output_dir="unused", report_to="none", **PREFIX,
    )  # fmt: skip
    return get_train_args({**args, **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(disable_gradient_checkpointing=False), "finetuning_type: prefix needs `disable_gradient_checkpointing"),
        (dict(packing=True), "finetuning_type: prefix needs `packing: false`"),
        (dict(prefix_num_virtual_tokens=0), "`prefix_num_virtual_tokens` must be a positive integer, got 0"),
        (dict(pmt_feature_map="gelu"), "`pmt_feature_map` is only valid with finetuning_type: prefixmemory"),
        (
            dict(finetuning_type="prefixmemory"),
            "`prefix_num_virtual_tokens` is only valid with finetuning_type: prefix",
        ),
        (dict(lora_rank=4), "`lora_rank` does not apply to finetuning_type: prefix"),
    ],
)
def test_bad_prefix_arguments(overrides, message):
    with pytest.raises(ValueError) as error:
        _train_args(**overrides)
    assert message in str(error.value)
