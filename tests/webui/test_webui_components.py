"""The PrefixMemory parts of the built web UI, without a browser: components, wiring, arguments, labels."""

import json

import gradio as gr
import pytest
import yaml

from prefixmemory.feature_maps import FEATURE_MAPS

PMT_INPUTS = ("train.pmt_feature_map", "train.pmt_layers", "train.pmt_feature_dim", "train.pmt_memory_bias")


@pytest.fixture
def form(ui, tiny_qwen2, toy_data):
    """A filled Train tab for ``method`` on the tiny model; keyword arguments override any element id."""

    def make(method: str = "prefixmemory", **values) -> dict:
        base = {
            "top.model_name": "Custom", "top.model_path": str(tiny_qwen2), "top.finetuning_type": method,
            "top.template": "qwen", "train.dataset_dir": str(toy_data), "train.dataset": ["toy_sft"],
        }  # fmt: skip
        return ui.form({**base, **values})

    return make


def _preview(ui, data) -> str:
    (update,) = list(ui.runner.preview_train(data))
    return update[ui.elem("train.output_box")]


def _handler(ui, source_id: str, target_id: str):
    """The function bound to an event of ``source_id`` whose only output is ``target_id``."""
    source, target = ui.elem(source_id), ui.elem(target_id)
    (fn,) = [fn for fn in ui.demo.fns.values() if fn.outputs == [target] and fn.inputs == [source]]
    return fn.fn


def test_prefixmemory_is_a_finetuning_method(ui):
    assert ("prefixmemory", "prefixmemory") in ui.elem("top.finetuning_type").choices


def test_accordion_sits_after_lora_hidden_until_chosen(ui):
    tab = ui.elem("train.pmt_tab")
    assert tab.visible is False
    siblings = tab.parent.children
    assert siblings.index(tab) == siblings.index(ui.elem("train.lora_tab")) + 1
    assert [value for value, _ in ui.elem("train.pmt_feature_map").choices] == list(FEATURE_MAPS)
    assert ui.elem("train.pmt_feature_map").value == "elu" and ui.elem("train.pmt_layers").value == "all"

    show = _handler(ui, "top.finetuning_type", "train.pmt_tab")
    assert show("prefixmemory").constructor_args == {"visible": True, "open": True}
    assert show("lora").constructor_args == {"visible": False, "open": False}
    editable = _handler(ui, "train.pmt_feature_map", "train.pmt_feature_dim")
    assert editable("mlp").constructor_args == {"interactive": True}
    assert editable("gelu").constructor_args == {"interactive": False}


@pytest.mark.parametrize("handler", ["preview_train", "run_train", "save_args"])
def test_buttons_receive_the_accordion(ui, handler):
    (fn,) = ui.fns(handler)
    assert {ui.elem(elem_id) for elem_id in PMT_INPUTS} <= set(fn.inputs)


def test_preview_shows_pmt_keys(ui, form):
    text = _preview(ui, form(**{"train.pmt_feature_map": "gelu", "train.pmt_layers": "0,1"}))
    assert "--finetuning_type prefixmemory" in text
    assert "--pmt_feature_map gelu" in text and "--pmt_layers 0,1" in text
    assert "--pmt_feature_dim" not in text  # only for mlp
    assert "saves/Custom/prefixmemory/run" in text

    text = _preview(ui, form(**{"train.pmt_feature_map": "mlp", "train.pmt_feature_dim": 16}))
    assert "--pmt_feature_map mlp" in text and "--pmt_feature_dim 16" in text
    assert "--pmt_feature_dim" not in _preview(ui, form(**{"train.pmt_feature_map": "mlp"}))  # 0: head_dim


def test_memory_bias_checkbox_reaches_the_run(ui, form, tmp_path):
    """On by default; switched off it stays in the preview and in the saved training args (which drop False)."""
    assert ui.elem("train.pmt_memory_bias").value is True
    assert "--pmt_memory_bias True" in _preview(ui, form())
    assert "--pmt_memory_bias False" in _preview(ui, form(**{"train.pmt_memory_bias": False}))

    from llamafactory.webui.common import save_cmd

    args = ui.runner._parse_train_args(form(**{"train.pmt_memory_bias": False}))
    saved = yaml.safe_load(open(save_cmd(dict(args, output_dir=str(tmp_path)))))
    assert saved["pmt_memory_bias"] is False


def test_other_methods_get_no_pmt_keys(ui, form):
    for method in ("lora", "freeze", "full", "oft"):
        args = ui.runner._parse_train_args(form(method, **{"train.pmt_feature_map": "mlp"}))
        assert not [key for key in args if key.startswith("pmt_")], method
    args = ui.runner._parse_train_args(form("lora"))
    assert args["lora_rank"] == 8 and args["output_dir"].endswith("lora/run")


def test_extra_arguments_win_over_the_accordion(ui, form):
    extra = json.dumps({"optim": "adamw_torch", "pmt_layers": "1"})
    args = ui.runner._parse_train_args(form(**{"train.pmt_layers": "0", "train.extra_args": extra}))
    assert args["pmt_layers"] == "1" and args["pmt_feature_map"] == "elu"


@pytest.mark.parametrize(
    "values, key",
    [({"train.pmt_layers": "first two"}, "`pmt_layers`"), ({"train.pmt_feature_map": "tanh"}, "`pmt_feature_map`")],
)
def test_bad_values_are_shown_on_preview(ui, form, values, key):
    with pytest.raises(gr.Error, match=key):
        _preview(ui, form(**values))


def test_saved_arguments_keep_the_accordion(ui, form):
    data = form(**{"train.pmt_feature_map": "relu", "train.pmt_layers": "1", "train.config_path": "pmt.yaml"})
    ui.runner.save_args(data)
    loaded = ui.runner.load_args("en", "pmt.yaml")
    assert loaded[ui.elem("train.pmt_feature_map")] == "relu" and loaded[ui.elem("train.pmt_layers")] == "1"
    assert loaded[ui.elem("top.finetuning_type")] == "prefixmemory"


@pytest.mark.parametrize(
    "lang, label",
    [("en", "Feature map"), ("zh", "特征映射"), ("ja", "Feature map"), ("ko", "Feature map"), ("ru", "Feature map")],
)
def test_labels_in_every_language(ui, lang, label):
    updates = ui.engine.change_lang(lang)  # what the Language dropdown triggers
    assert updates[ui.elem("train.pmt_feature_map")].constructor_args["label"] == label
    for elem_id in ("train.pmt_tab", *PMT_INPUTS):
        assert updates[ui.elem(elem_id)].constructor_args["label"]
    for elem_id in PMT_INPUTS:
        assert updates[ui.elem(elem_id)].constructor_args["info"]


def test_quantization_is_open_for_prefixmemory_and_locked_for_prefix(ui, form, tmp_path):
    from llamafactory.hparams import get_train_args
    from llamafactory.webui.control import can_quantize

    assert can_quantize("prefixmemory").constructor_args == {"interactive": True}
    assert can_quantize("lora").constructor_args == {"interactive": True}
    assert can_quantize("prefix").constructor_args == {"value": "none", "interactive": False}
    values = {"top.quantization_bit": "4", "top.quantization_method": "bnb", "train.compute_type": "fp32"}
    args = ui.runner._parse_train_args(form(**values))  # what the Start button runs, parsed as the subprocess does
    args.update(output_dir=str(tmp_path / "out"), report_to="none")
    model_args, _, _, finetuning_args, _ = get_train_args(args)
    assert (finetuning_args.finetuning_type, model_args.quantization_bit, model_args.quantization_method) == (
        "prefixmemory",
        4,
        "bnb",
    )


@pytest.mark.parametrize("stage, dataset", [("DPO", "toy_pref"), ("KTO", "toy_kto")])
def test_preference_stages_use_the_memory_disabled_reference(ui, form, stage, dataset, tmp_path):
    """The UI's args, parsed as the training subprocess parses them, give no second reference model."""
    from llamafactory.hparams import get_train_args
    from llamafactory.train.trainer_utils import create_ref_model

    values = {"train.training_stage": stage, "train.dataset": [dataset], "train.compute_type": "fp32"}
    args = ui.runner._parse_train_args(form(**values))
    assert "ref_model" not in args and args["stage"] == stage.lower()
    args.update(output_dir=str(tmp_path / "out"), report_to="none")
    model_args, _, _, finetuning_args, _ = get_train_args(args)
    assert finetuning_args.finetuning_type == "prefixmemory" and finetuning_args.ref_model is None
    assert create_ref_model(model_args, finetuning_args) is None  # the trainers then use disable_adapter()
