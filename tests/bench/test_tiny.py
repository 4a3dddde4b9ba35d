"""prefixmemory-tiny writes a folder once: the same model again is left as it is, anything else is refused."""

from __future__ import annotations

import json
import os

import pytest

from prefixmemory_study import tiny
from prefixmemory_study.marker import MARKER


def test_the_same_model_again_is_left_as_it_is(tmp_path, capsys):
    folder = tmp_path / "tiny"
    tiny.main([str(folder)])
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    tiny.main([str(folder)])
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    assert json.loads((folder / MARKER).read_text())["settings"] == {"num_hidden_layers": 2}
    assert capsys.readouterr().out.count(f"tiny qwen2 model in {folder}\n") == 2


def test_a_folder_with_other_files_is_refused_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit) as exit_info:
        tiny.main([str(folder)])
    assert exit_info.value.code == (
        f"error: output_dir: {folder} exists and is not a tiny qwen2 model (num_hidden_layers=2) written by "
        "prefixmemory-tiny; name an empty or new folder."
    )
    assert os.listdir(folder) == ["notes.txt"]


def test_a_tiny_model_of_other_settings_is_refused_untouched(tmp_path):
    folder = tiny.save_tiny(tmp_path / "tiny", "llama", num_hidden_layers=1)
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    with pytest.raises(SystemExit, match=r"^error: output_dir: .* is not a tiny qwen2 model \(num_hidden_layers=3\)"):
        tiny.main([str(folder), "--num-layers", "3"])
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
