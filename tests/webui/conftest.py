"""Fixtures for the web UI (LLaMA Board) tests: a tiny local model, toy data, and the UI built in-process.

The in-process UI is the one ``llamafactory-cli webui`` builds (``create_ui``), with the plugin active; the
tests read its components through the engine's manager and call the same runner / chatter / export functions
the buttons are bound to. LLaMA Board writes ``saves/``, ``llamaboard_cache/`` and ``llamaboard_config/``
relative to the working directory, so every UI here runs in a temporary one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefixmemory.tiny import save_tiny

UI_ENV = {"DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
MODEL_NAME = "Custom"  # what a person picks in "Model name" to type a local path


def toy_sets() -> dict[str, tuple[dict, list]]:
    """name -> (dataset_info entry, rows); repetitive, so a few steps visibly lower the loss."""
    sft = [
        {"instruction": f"Count to {i % 5 + 1}.", "input": "", "output": " ".join(map(str, range(1, i % 5 + 2)))}
        for i in range(48)
    ]
    pref = [
        {"instruction": f"Say yes {i}.", "input": "", "chosen": "yes yes yes", "rejected": f"no {i} no"}
        for i in range(48)
    ]
    kto = [
        {
            "messages": [
                {"role": "user", "content": f"Say yes {i}."},
                {"role": "assistant", "content": "yes yes yes" if i % 2 else f"no {i} no"},
            ],
            "label": bool(i % 2),
        }
        for i in range(48)
    ]
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    return {
        "toy_sft": ({"file_name": "toy_sft.json"}, sft),
        "toy_pref": (
            {
                "file_name": "toy_pref.json",
                "ranking": True,
                "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
            },
            pref,
        ),
        "toy_kto": (
            {
                "file_name": "toy_kto.json",
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": tags,
            },
            kto,
        ),
    }


def write_toy_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, (entry, rows) in toy_sets().items():
        (folder / entry["file_name"]).write_text(json.dumps(rows))
        info[name] = entry
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_data(tmp_path_factory.mktemp("data"))


class UI:
    """The built Blocks, its engine, and a form filled the way a person fills it, as the handlers receive it."""

    def __init__(self, demo, engine, workdir: Path):
        self.demo, self.engine, self.workdir = demo, engine, workdir
        self.manager, self.runner = engine.manager, engine.runner

    def elem(self, elem_id: str):
        return self.manager.get_elem_by_id(elem_id)

    def form(self, values: dict[str, object]) -> dict:
        """{component: value} for every component: its built default, or ``values[elem_id]``."""
        data = {elem: getattr(elem, "value", None) for elem in self.manager.get_elem_list()}
        defaults = {"top.lang": "en", "top.checkpoint_path": [], "train.output_dir": "run", "eval.output_dir": "eval"}
        for elem_id, value in {**defaults, **values}.items():
            data[self.elem(elem_id)] = value
        return data

    def fns(self, name: str) -> list:
        """The event handlers whose function is called ``name`` (e.g. preview_train)."""
        return [fn for fn in self.demo.fns.values() if fn.name == name]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """``create_ui()`` as ``llamafactory-cli webui`` builds it, in a fresh working directory."""
    import llamafactory.webui.interface as interface
    from llamafactory.webui.engine import Engine

    workdir = tmp_path_factory.mktemp("llamaboard")
    engines = []

    class RecordingEngine(Engine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engines.append(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        for key, value in UI_ENV.items():
            mp.setenv(key, value)
        mp.setattr(interface, "Engine", RecordingEngine)
        demo = interface.create_ui()
        yield UI(demo, engines[0], workdir)
