"""An adapter loaded onto a model it was not made for is refused with one line naming what differs.

Before, a 4-layer adapter on a 2-layer model dropped two layers, a Qwen2 adapter on Qwen3 gave the base model's
logits (PEFT's generic missing-keys warning only), and another head count failed late. Adapters now record their
base model (model_type, layers, query heads, head_dim); older ones, without that record, are checked key by key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from peft import PeftModel, get_peft_model

from prefixmemory import PrefixMemoryConfig, PrefixMemoryLayer

from .testing_common import build_adapted, eq7_logits, logits, transformers_load_adapter

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_adapters"
GEOMETRY_KEYS = ("base_model_type", "base_num_layers", "base_num_heads", "base_head_dim")

# name -> (architecture, build_model overrides)
MODELS = {
    "qwen2": ("qwen2", {}),
    "qwen2-4-layers": ("qwen2", dict(num_hidden_layers=4)),
    "qwen2-8-heads": ("qwen2", dict(num_attention_heads=8, num_key_value_heads=4)),
    "qwen3": ("qwen3", {}),
}

# (adapter made on, loaded onto, what the message names)
MISFITS = [
    ("qwen2-4-layers", "qwen2", "`base_num_layers` 4 (this model: 2)"),
    ("qwen2", "qwen2-4-layers", "`base_num_layers` 2 (this model: 4)"),
    ("qwen2", "qwen3", "`base_model_type` qwen2 (this model: qwen3)"),
    ("qwen2", "qwen2-8-heads", "`base_num_heads` 4 (this model: 8), `base_head_dim` 16 (this model: 8)"),
]
MISFIT_IDS = [f"{made_on}-on-{loaded_on}" for made_on, loaded_on, _ in MISFITS]


def _model(name: str, **overrides):
    from prefixmemory_study.tiny import build_model

    architecture, settings = MODELS[name]
    return build_model(architecture, seed=0, **settings, **overrides).eval()


def _save_adapter(folder: Path, model_name: str, legacy: bool = False):
    """An mlp adapter with random values made on ``model_name``; ``legacy`` drops the recorded base model.

    Returns the folder and eq. 7's logits function for the adapter's values on a fresh copy of that model.
    """
    model, reference, values = build_adapted(_model(model_name), dict(feature_map="mlp"))
    model.save_pretrained(folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert all(config[key] is not None for key in GEOMETRY_KEYS), "the base model was not recorded"
    if legacy:
        config = {key: value for key, value in config.items() if key not in GEOMETRY_KEYS}
        (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder, lambda input_ids: eq7_logits(reference, [values], input_ids)


def _peft_load_adapter(base, folder, low_cpu_mem_usage=False):
    """PeftModel.load_adapter beside an adapter made on ``base`` itself; the loaded one made active."""
    model = get_peft_model(base, PrefixMemoryConfig(feature_map="elu"))
    model.load_adapter(folder, adapter_name="other", low_cpu_mem_usage=low_cpu_mem_usage)
    model.set_adapter("other")
    return model


LOADERS = {
    "from_pretrained": lambda base, folder: PeftModel.from_pretrained(base, folder),
    "from_pretrained-low-cpu": lambda base, folder: PeftModel.from_pretrained(base, folder, low_cpu_mem_usage=True),
    "load_adapter": _peft_load_adapter,
    "load_adapter-low-cpu": lambda base, folder: _peft_load_adapter(base, folder, low_cpu_mem_usage=True),
    "transformers-load_adapter": transformers_load_adapter,
}
# transformers' loader bypasses load_state_dict: an adapter without the record is checked by PEFT's loaders only.
PEFT_LOADERS = [name for name in LOADERS if not name.startswith("transformers")]


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # the tiny base has no hub name
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("made_on, loaded_on, differs", MISFITS, ids=MISFIT_IDS)
def test_misfit_adapter_is_refused(tmp_path, made_on, loaded_on, differs, loader):
    """The recorded base model is compared before any layer is wrapped for it or any weight loaded."""
    folder, _ = _save_adapter(tmp_path / "adapter", made_on)
    base = _model(loaded_on)
    with pytest.raises(ValueError, match="made for another model") as raised:
        LOADERS[loader](base, folder)
    assert differs in str(raised.value) and "\n" not in str(raised.value)
    if not loader.startswith("load_adapter"):  # there the model holds a first adapter, made on it
        assert not [module for module in base.modules() if isinstance(module, PrefixMemoryLayer)]


@pytest.mark.filterwarnings("ignore:Could not find a config file")
@pytest.mark.parametrize("loader", PEFT_LOADERS)
@pytest.mark.parametrize("made_on, loaded_on, differs", MISFITS, ids=MISFIT_IDS)
def test_misfit_older_adapter_is_refused(tmp_path, made_on, loaded_on, differs, loader):
    """An adapter saved before the record: its weights must be exactly the model's memories, in their shapes."""
    folder, _ = _save_adapter(tmp_path / "adapter", made_on, legacy=True)
    with pytest.raises(ValueError, match="does not fit this model") as raised:
        LOADERS[loader](_model(loaded_on), folder)
    assert "\n" not in str(raised.value)


@pytest.mark.filterwarnings("ignore:Could not find a config file")
@pytest.mark.parametrize("fixture, loaded_on", [("qwen2-elu", "qwen2-4-layers"), ("qwen3-mlp", "qwen2")])
def test_misfit_stored_legacy_adapter_is_refused(fixture, loaded_on):
    """The adapters stored in fixtures/legacy_adapters (see its README), on another model than theirs."""
    with pytest.raises(ValueError, match="does not fit this model"):
        PeftModel.from_pretrained(
            _model(loaded_on, vocab_size=128, intermediate_size=32), FIXTURES / fixture / "adapter"
        )


@pytest.mark.filterwarnings("ignore:Could not find a config file")
@pytest.mark.parametrize("legacy", [False, True], ids=["recorded", "older"])
@pytest.mark.parametrize("loader", LOADERS)
def test_fitting_adapter_loads(tmp_path, sample_ids, loader, legacy):
    """On the model it was made for, an adapter (with the record or without) loads and computes eq. 7."""
    folder, eq7 = _save_adapter(tmp_path / "adapter", "qwen2", legacy=legacy)
    model = LOADERS[loader](_model("qwen2"), folder)
    assert model.peft_config["other" if loader.startswith("load_adapter") else "default"].base_num_layers == 2
    assert (logits(model, sample_ids) - eq7(sample_ids)).abs().max() < 1e-5
