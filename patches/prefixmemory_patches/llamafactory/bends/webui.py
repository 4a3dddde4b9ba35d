"""Bends ``llamafactory.webui``: the web UI (LLaMA Board).

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| webui.common._clean_cmd | keeps `pmt_memory_bias: false` | it drops every False, and this key defaults to true |
| webui.locales.LOCALES | + pmt_* labels: en, zh; other languages show en | change_lang looks labels up by name |
| webui.control.can_quantize | quantization locked to none for prefix | a 4/8-bit base is for prefixmemory only |
| webui.components.train.create_train_tab | + PrefixMemory accordion, in the input set | its buttons bind inside it |
| webui.runner.Runner._parse_train_args | + pmt_* keys (not with a checkpoint); extra args win | upstream: lora |
| webui.components.export.save_model | our refusals shown as gr.Error | the CLI's one line, not "Error" |

Nothing else needs bending: ``METHODS`` / ``PEFT_METHODS`` (constants patch) make checkpoints adapters in the
Train, Evaluate, Chat and Export tabs; training and evaluation run ``llamafactory-cli train`` in a subprocess,
where the startup hook patches again; chat and export run in this process through the patched loader and
``export_model``; DPO/KTO get the memory-disabled reference from the trainer_utils patch, as on the CLI.
"""

from __future__ import annotations

import functools
import json
from dataclasses import fields

from prefixmemory.config import options
from prefixmemory.feature_maps import takes_feature_dim

from ...errors import PrefixMemoryError
from ...seams import Seam, bends
from .. import OUR_TYPES, PMT, mark_patched, wraps_original
from ..checks.geometry import check_model_fits, read_model_config
from ..checks.quantization import QUANTIZABLE
from ..options import PMT_KEYS, PREFIX, PrefixMemoryArguments

PMT_INPUTS = tuple(PMT_KEYS)  # one input per pmt_* key, in the config's order

# English and Chinese are required; a language missing here shows the English text (see _EnglishFallback).
PMT_LOCALES = {
    "pmt_tab": {
        "en": {"label": "PrefixMemory configurations"},
        "zh": {"label": "PrefixMemory 参数设置"},
    },
    "pmt_feature_map": {
        "en": {
            "label": "Feature map",
            "info": "Kernel phi applied to the queries: elu, gelu, relu (no weights) or mlp (learned).",
        },
        "zh": {
            "label": "特征映射",
            "info": "作用于查询向量的核函数 phi：elu、gelu、relu（无参数）或 mlp（可学习）。",
        },
    },
    "pmt_layers": {
        "en": {
            "label": "Memory layers",
            "info": "Decoder layers that get a memory: all, a list like 0,2,4 or a range like 0-11.",
        },
        "zh": {
            "label": "记忆层",
            "info": "添加记忆的解码器层：all、列表（如 0,2,4）或区间（如 0-11）。",
        },
    },
    "pmt_feature_dim": {
        "en": {
            "label": "Feature dim (mlp)",
            "info": "Output size of the mlp feature map; 0 uses the head dimension.",
        },
        "zh": {
            "label": "特征维度（mlp）",
            "info": "mlp 特征映射的输出维度；0 表示使用注意力头维度。",
        },
    },
    "pmt_memory_bias": {
        "en": {
            "label": "Memory bias",
            "info": "Add a trainable bias per query head with the memory term (as counted in the paper's Table 8).",
        },
        "zh": {
            "label": "记忆偏置",
            "info": "为每个查询头的记忆项加一个可训练偏置（论文表 8 的参数量包含它）。",
        },
    },
}


class _EnglishFallback(dict):
    """A LOCALES entry: a language without its own text gets the English one instead of a KeyError."""

    def __missing__(self, lang):
        return self["en"]


@bends(Seam("_clean_cmd", params=("args",)))
def patch_common(common) -> None:
    """The preview and the saved training args drop False values; a switched-off memory bias must stay in them."""

    @wraps_original(common, "_clean_cmd")
    def patched_clean_cmd(clean_cmd, args: dict):
        cleaned = clean_cmd(args)
        if args.get("pmt_memory_bias") is False:
            cleaned["pmt_memory_bias"] = False
        return cleaned


@bends(Seam("LOCALES", container=dict))
def patch_locales(locales) -> None:
    if not mark_patched(locales, "pmt_locales"):
        return
    for name, texts in PMT_LOCALES.items():
        locales.LOCALES[name] = _EnglishFallback(texts)  # in place: engine.py binds the dict by name


@bends(Seam("can_quantize", params=("finetuning_type",)), Seam("gr"))
def patch_control(control) -> None:
    """Before components/top.py binds ``can_quantize`` by name."""

    @wraps_original(control, "can_quantize")
    def patched_can_quantize(can_quantize, finetuning_type: str):
        if finetuning_type in OUR_TYPES and finetuning_type not in QUANTIZABLE:
            return control.gr.Dropdown(value="none", interactive=False)
        return can_quantize(finetuning_type)


@bends(Seam("create_train_tab", params=("engine",)), Seam("gr"))
def patch_train_tab(train) -> None:
    """Before components/__init__.py binds ``create_train_tab`` by name."""

    @wraps_original(train, "create_train_tab")
    def patched_create_train_tab(create_train_tab, engine):
        gr = train.gr
        pmt_elems = create_pmt_tab(gr)  # built first, inside the Train tab; moved below LoRA afterwards
        inputs = {pmt_elems[name] for name in PMT_INPUTS}
        manager = engine.manager
        get_base_elems = manager.get_base_elems
        manager.get_base_elems = lambda: get_base_elems() | inputs  # the set Preview/Start/Save bind to
        try:
            elem_dict = create_train_tab(engine)
        finally:
            del manager.get_base_elems
        _move_after(pmt_elems["pmt_tab"], elem_dict.get("lora_tab"))

        finetuning_type = manager.get_elem_by_id("top.finetuning_type")
        finetuning_type.change(
            lambda method: gr.Accordion(visible=method == PMT, open=method == PMT),
            [finetuning_type],
            [pmt_elems["pmt_tab"]],
            queue=False,
        )
        pmt_elems["pmt_feature_map"].change(
            lambda feature_map: gr.Number(interactive=takes_feature_dim(feature_map)),
            [pmt_elems["pmt_feature_map"]],
            [pmt_elems["pmt_feature_dim"]],
            queue=False,
        )
        return {**elem_dict, **pmt_elems}


def create_pmt_tab(gr) -> dict:
    """The PrefixMemory accordion, hidden until prefixmemory is the finetuning method; labels come from LOCALES."""
    elems = {}
    with gr.Accordion(open=False, visible=False) as elems["pmt_tab"]:
        with gr.Row():
            for option in options():
                elems[PREFIX + option.name] = _input(gr, option)
    return elems


def _input(gr, option):
    """The widget for one config option, from its declaration: choices, a switch, a size, or text."""
    if "choices" in option.metadata:
        return gr.Dropdown(choices=list(option.metadata["choices"]), value=option.default)
    if option.type == "bool":
        return gr.Checkbox(value=option.default)
    if option.type == "int | None":
        return gr.Number(value=0, minimum=0, precision=0, interactive=False)  # 0: the default (None)
    return gr.Textbox(value=option.metadata.get("none", option.default))


def _move_after(block, anchor) -> None:
    """Place ``block`` right after ``anchor`` when both sit in the same layout block; else leave it."""
    parent = getattr(block, "parent", None)
    if anchor is None or parent is None or getattr(anchor, "parent", None) is not parent:
        return
    parent.children.remove(block)
    parent.children.insert(parent.children.index(anchor) + 1, block)


@bends(Seam("Runner._parse_train_args", params=("self", "data")))
def patch_runner(runner) -> None:
    @wraps_original(runner, "Runner._parse_train_args")
    def _parse_train_args(parse_train_args, self, data):
        args = parse_train_args(self, data)
        if args.get("finetuning_type") == PMT:
            values = [data[self.manager.get_elem_by_id(f"train.{name}")] for name in ("extra_args", *PMT_INPUTS)]
            extra, pmt = json.loads(values[0]), pmt_args(*values[1:])
            if "adapter_name_or_path" not in args:  # a chosen checkpoint brings its own pmt_* values
                args.update({key: value for key, value in pmt.items() if key not in extra})
            _validate(args)
        return args


def pmt_args(*values) -> dict:
    """The pmt_* keys the accordion describes (``values`` in PMT_INPUTS order): empty text and a size of 0 mean the
    default and are left out; pmt_feature_dim only with a feature map that takes it."""
    args = dict(zip(PMT_INPUTS, values, strict=True))
    for key, value in list(args.items()):
        if isinstance(value, str):
            args[key] = value.strip()
        if args[key] in ("", 0, None) and not isinstance(args[key], bool):
            del args[key]
    if not takes_feature_dim(args.get("pmt_feature_map", "")):
        args.pop("pmt_feature_dim", None)
    elif "pmt_feature_dim" in args:
        args["pmt_feature_dim"] = int(args["pmt_feature_dim"])
    return args


def _validate(args: dict) -> None:
    """Show a bad pmt_* value on Preview/Start at once, instead of in the log of a failed run."""
    import gradio as gr

    values = {f.name: args[f.name] for f in fields(PrefixMemoryArguments) if f.name in args}
    try:
        config = PrefixMemoryArguments(**values).prefixmemory_config()
        model_config = read_model_config(args["model_name_or_path"])
        if model_config is not None:
            check_model_fits(model_config, config.layers, args["model_name_or_path"], "`pmt_layers`")
    except (TypeError, ValueError) as err:
        raise gr.Error(str(err)) from None


@bends(Seam("save_model"))
def patch_export_tab(export) -> None:
    """Before create_export_tab binds ``save_model`` to the Export button: our refusals as the button's error."""
    if not mark_patched(export, "save_model"):
        return
    save_model = export.save_model

    @functools.wraps(save_model)
    def patched_save_model(*args):  # a generator function itself: gradio streams only those
        try:
            yield from save_model(*args)
        except PrefixMemoryError as err:
            raise export.gr.Error(str(err)) from None

    export.save_model = patched_save_model
