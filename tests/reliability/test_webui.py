"""The web UI shows the same one-line refusals as the CLI, and changes no input folder either."""

import gradio as gr
import pytest
from reliability_checks import unchanged


def test_preview_refuses_layers_beyond_the_model(ui, tiny_qwen2, toy_data):
    form = ui.form({
        "top.model_name": "Custom", "top.model_path": str(tiny_qwen2), "top.finetuning_type": "prefixmemory",
        "top.template": "qwen", "train.dataset_dir": str(toy_data), "train.dataset": ["toy_sft"],
        "train.pmt_layers": "0,7",
    })  # fmt: skip
    with unchanged(tiny_qwen2), pytest.raises(gr.Error) as error:
        list(ui.runner.preview_train(form))
    assert error.value.message == (
        f"`pmt_layers` [7] out of range: the model in `model_name_or_path` {tiny_qwen2} has 2 decoder layers (0-1)."
    )


def test_export_tab_refuses_a_symlink_to_the_base_model(ui, tiny_qwen2, trained_run, tmp_path):
    from llamafactory.webui.components.export import save_model

    link = tmp_path / "link"
    link.symlink_to(tiny_qwen2)
    with unchanged(tiny_qwen2, trained_run), pytest.raises(gr.Error) as error:
        list(save_model(
            "en", "Custom", str(tiny_qwen2), "prefixmemory", [str(trained_run)], "qwen", 1, "none", "", "cpu", False,
            str(link), "", "{}",
        ))  # fmt: skip
    assert error.value.message.startswith(f"`export_dir` {link} resolves to {tiny_qwen2}, inside `model_name_or_path`")


def test_accordion_leaves_a_chosen_checkpoint_its_own_values(ui, tiny_qwen2, toy_data):
    """Training on from a checkpoint takes its pmt_* values; the accordion's defaults would contradict them."""
    form = ui.form({
        "top.model_name": "Custom", "top.model_path": str(tiny_qwen2), "top.finetuning_type": "prefixmemory",
        "top.template": "qwen", "train.dataset_dir": str(toy_data), "train.dataset": ["toy_sft"],
        "top.checkpoint_path": ["sft"], "train.pmt_feature_map": "relu",
    })  # fmt: skip
    args = ui.runner._parse_train_args(form)
    assert args["adapter_name_or_path"].endswith("sft") and not [key for key in args if key.startswith("pmt_")]
    fresh = ui.runner._parse_train_args({**form, ui.elem("top.checkpoint_path"): []})
    assert fresh["pmt_feature_map"] == "relu"
