"""Fixtures for the web UI (LLaMA Board) tests: a tiny local model, toy data, and the UI built in-process.

The in-process UI is the one ``llamafactory-cli webui`` builds (``create_ui``), with the plugin active; the
tests read its components through the engine's manager and call the same runner / chatter / export functions
the buttons are bound to. LLaMA Board writes ``saves/``, ``llamaboard_cache/`` and ``llamaboard_config/``
relative to the working directory, so every UI here runs in a temporary one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UI_ENV = {"DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
MODEL_NAME = "Custom"  # what a person picks in "Model name" to type a local path


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
