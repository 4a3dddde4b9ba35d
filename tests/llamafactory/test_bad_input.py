"""Bad input: one clear error line naming the key, before any model is loaded."""

import pytest
from lfcli import run_cli


def _train_args(**overrides):
    from llamafactory.hparams import get_train_args

    args = dict(
        model_name_or_path="unused", stage="sft", do_train=True, finetuning_type="prefixmemory",
        dataset="unused", template="qwen", output_dir="unused", report_to="none",
    )  # fmt: skip
    args.update(overrides)
    return get_train_args(args)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(pmt_feature_map="softmax"), "`pmt_feature_map` must be one of elu, gelu, relu, mlp, got 'softmax'"),
        (dict(pmt_feature_dim=32), "`pmt_feature_dim` only applies to the mlp feature map"),
        (dict(pmt_feature_map="mlp", pmt_feature_dim=0), "`pmt_feature_dim` must be a positive integer, got 0"),
        (dict(pmt_layers="0-x"), "`pmt_layers` must be `all`, a list like `0,2,4` or a range like `0-11`"),
        (dict(pmt_layers="1,1"), "`pmt_layers` has duplicates"),
        (dict(pmt_memory_bias="maybe"), "`pmt_memory_bias` must be true or false, got 'maybe'"),
        (dict(finetuning_type="lora", pmt_memory_bias=False), "`pmt_memory_bias` is only valid with finetuning_type"),
        (dict(lora_rank=16), "`lora_rank` does not apply to finetuning_type: prefixmemory (got 16)"),
        (dict(use_dora=True), "`use_dora` does not apply to finetuning_type: prefixmemory"),
        (dict(pissa_init=True), "`pissa_init` does not apply to finetuning_type: prefixmemory"),
        (dict(finetuning_type="lora", pmt_feature_map="gelu"), "`pmt_feature_map` is only valid with finetuning_type"),
        (dict(quantization_bit=3), "`quantization_bit` must be 4 or 8 with `quantization_method: bnb`, got 3"),
        (dict(quantization_bit=4, quantization_method="hqq"), "`quantization_method: hqq` is not supported with"),
        (dict(quantization_bit=8, quantization_method="eetq"), "`quantization_method: eetq` is not supported with"),
        (
            dict(finetuning_type="prefix", quantization_bit=4),
            "`quantization_bit: 4` is not supported with finetuning_type: prefix",
        ),
        (dict(adapter_name_or_path="a,b"), "`adapter_name_or_path` takes one prefixmemory adapter, got 2"),
        (dict(stage="ppo", reward_model="unused"), "`stage: ppo` is not supported with finetuning_type: prefixmemory"),
        (dict(use_unsloth=True), "`use_unsloth: true` is not supported with finetuning_type: prefixmemory"),
        (dict(finetuning_type="prefix", use_unsloth=True), "`use_unsloth: true` is not supported with finetuning_t"),
    ],
)
def test_bad_training_arguments(overrides, message):
    with pytest.raises(ValueError) as error:
        _train_args(**overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_lora_only_inference_backend_refused():
    from llamafactory.hparams import get_infer_args

    with pytest.raises(ValueError, match="`infer_backend: sglang` cannot serve finetuning_type: prefixmemory"):
        get_infer_args(dict(model_name_or_path="unused", finetuning_type="prefixmemory", infer_backend="sglang"))


def test_vllm_refuses_an_adapter_and_says_to_export(tmp_path, monkeypatch):
    from llamafactory.hparams import get_infer_args

    monkeypatch.delenv("DISABLE_VERSION_CHECK", raising=False)
    adapter = dict(model_name_or_path="unused", adapter_name_or_path=str(tmp_path), infer_backend="vllm")
    with pytest.raises(ValueError) as error:
        get_infer_args(dict(adapter, finetuning_type="prefixmemory"))
    assert str(error.value).startswith("`infer_backend: vllm` cannot load a prefixmemory adapter: export it first")
    assert "\n" not in str(error.value)
    # An export folder without an adapter passes our check; upstream's then asks for vLLM, absent here.
    with pytest.raises(Exception, match="vllm") as error:
        get_infer_args(dict(model_name_or_path="unused", finetuning_type="prefixmemory", infer_backend="vllm"))
    assert "cannot" not in str(error.value)


def test_cli_reports_error_and_exits_nonzero_before_loading(train_config, tmp_path):
    result = run_cli("train", train_config(pmt_layers="7"), tmp_path, check=False)
    assert result.returncode != 0
    assert "error: `pmt_layers` [7] out of range: the model in `model_name_or_path` " in result.stderr
    assert "has 2 decoder layers (0-1)." in result.stderr
    assert "Traceback" not in result.stderr
    assert "trainable params" not in result.stderr + result.stdout


def test_lora_adapter_is_not_loaded_as_prefixmemory(train_config, tmp_path):
    lora = train_config(finetuning_type="lora", max_steps=1, output_dir=str(tmp_path / "lora"))
    run_cli("train", lora, tmp_path)
    result = run_cli("train", train_config(adapter_name_or_path=lora["output_dir"]), tmp_path, check=False)
    assert result.returncode != 0 and "holds a LORA adapter, not a prefixmemory one" in result.stderr
    assert "trainable params" not in result.stderr + result.stdout
