"""prefixmemory/peft_type.py: PREFIXMEMORY added to PEFT's closed PeftType enum, once, usable everywhere."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftConfig
from peft.utils.peft_types import PeftType
from safetensors.torch import load_file

from prefixmemory import PrefixMemoryConfig
from prefixmemory.peft_type import extend_peft_type

from .testing_common import build_adapted, logits


def test_extend_is_idempotent():
    members = list(PeftType)
    assert extend_peft_type() is extend_peft_type() is PeftType.PREFIXMEMORY
    assert list(PeftType) == members
    assert PeftType._member_names_.count("PREFIXMEMORY") == 1


def test_member_behaves_like_the_others():
    member = PeftType.PREFIXMEMORY
    assert PeftType("PREFIXMEMORY") is member
    assert PeftType["PREFIXMEMORY"] is member
    assert member == "PREFIXMEMORY" and member.value == "PREFIXMEMORY" and member.name == "PREFIXMEMORY"
    assert isinstance(member, PeftType) and isinstance(member, str)
    assert member in PeftType and list(PeftType).count(member) == 1
    assert pickle.loads(pickle.dumps(member)) is member
    assert copy.deepcopy(member) is member
    assert PeftType("LORA") is PeftType.LORA  # the existing members are untouched


def test_config_round_trip(tmp_path):
    config = PrefixMemoryConfig(feature_map="mlp", feature_dim=16, layers=[1, 0])
    as_dict = config.to_dict()
    assert as_dict["peft_type"] == "PREFIXMEMORY"
    assert json.loads(json.dumps(as_dict))["peft_type"] == "PREFIXMEMORY"

    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "PREFIXMEMORY"
    assert (saved["feature_map"], saved["feature_dim"], saved["layers"]) == ("mlp", 16, [0, 1])

    loaded = PeftConfig.from_pretrained(tmp_path)
    assert type(loaded) is PrefixMemoryConfig
    assert loaded.peft_type is PeftType.PREFIXMEMORY
    assert (loaded.feature_map, loaded.feature_dim, loaded.layers) == ("mlp", 16, [0, 1])
    assert loaded.to_dict() == as_dict
    assert copy.deepcopy(loaded).to_dict() == as_dict


_FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    from peft.utils.peft_types import PeftType  # the startup hook registers the method once peft is imported
    assert "PREFIXMEMORY" in PeftType.__members__ and "prefixmemory" in sys.modules
    members = len(PeftType)

    from prefixmemory.peft_type import extend_peft_type
    first, second = extend_peft_type(), extend_peft_type()
    assert first is second is PeftType("PREFIXMEMORY")
    assert len(PeftType) == members

    from peft import PeftModel
    from safetensors.torch import save_file
    from prefixmemory_study.tiny import build_model
    model = PeftModel.from_pretrained(build_model(sys.argv[2]).eval(), sys.argv[1]).eval()
    ids = __import__("torch").tensor([[5, 80, 300, 17, 42, 9]])
    save_file({"logits": model(ids).logits.detach().contiguous()}, sys.argv[3])
    """
)


@pytest.mark.filterwarnings("ignore:Could not find a config file")
def test_fresh_process_extends_and_loads(tiny_model, tmp_path):
    """In a new interpreter that imports only peft: the member is there once, extending is idempotent, it loads."""
    model, _, _ = build_adapted(tiny_model("qwen3"), dict(feature_map="mlp", feature_dim=16))
    model.save_pretrained(tmp_path / "adapter")
    ids = torch.tensor([[5, 80, 300, 17, 42, 9]])

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(tmp_path / "adapter"), "qwen3", str(tmp_path / "out.safetensors")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Another process may use another number of threads: equal up to float summation order.
    loaded = load_file(tmp_path / "out.safetensors")["logits"]
    torch.testing.assert_close(loaded, logits(model, ids), atol=1e-6, rtol=1e-5)
