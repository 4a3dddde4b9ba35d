"""An export is written whole or not at all, and never over files we did not write.

``llamafactory-cli export``'s function (``export_model``) runs in-process on the tiny model and the trained run's
adapter: an ``export_dir`` holding files is refused unless it is an earlier export of ours and
PREFIXMEMORY_OVERWRITE_EXPORT=1 asks to replace it; a failure mid-write (a full disk) leaves no half folder and the
earlier export as it was; ``~`` and ``$VAR`` are expanded.
"""

import errno
import json
from pathlib import Path

import pytest
from reliability_checks import fingerprint, unchanged

from prefixmemory_patches.errors import PrefixMemoryError

OVERWRITE = "PREFIXMEMORY_OVERWRITE_EXPORT"


def _args(tiny_qwen2, trained_run, export_dir, **overrides) -> dict:
    return {
        "model_name_or_path": str(tiny_qwen2), "adapter_name_or_path": str(trained_run / "checkpoint-2"),
        "finetuning_type": "prefixmemory", "template": "qwen", "export_dir": str(export_dir), **overrides,
    }  # fmt: skip


def _export(args: dict) -> None:
    from llamafactory.train.tuner import export_model

    export_model(args)


def _refusal(args: dict) -> str:
    with pytest.raises(PrefixMemoryError) as error:
        _export(args)
    assert "\n" not in str(error.value)
    return str(error.value)


def _leftovers(export_dir: Path) -> list[str]:
    """Hidden siblings an export writes into before moving into place: none may remain."""
    return [path.name for path in export_dir.parent.iterdir() if path.name.startswith(f".{export_dir.name}.")]


@pytest.fixture(scope="module")
def earlier_export(tiny_qwen2, trained_run, tmp_path_factory) -> Path:
    """A complete export of ours (float32); tests copy it before changing anything."""
    export_dir = tmp_path_factory.mktemp("exports") / "export"
    _export(_args(tiny_qwen2, trained_run, export_dir, infer_dtype="float32"))
    return export_dir


def test_home_and_variables_are_expanded(tiny_qwen2, trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _export(_args(tiny_qwen2, trained_run, "~/exports/pmt"))
    export_dir = tmp_path / "home" / "exports" / "pmt"
    assert (export_dir / "prefixmemory_adapter" / "adapter_model.safetensors").is_file()
    assert f"model_name_or_path: {export_dir}`" in (export_dir / "README.md").read_text()
    assert not (tmp_path / "~").exists() and not _leftovers(export_dir)
    line = _refusal(_args(tiny_qwen2, trained_run, "$PMT_NO_SUCH_VARIABLE/pmt"))
    assert line == (
        "`export_dir` $PMT_NO_SUCH_VARIABLE/pmt names the environment variable $PMT_NO_SUCH_VARIABLE, which is not "
        "set; set it or write the path out."
    )


@pytest.mark.parametrize("asked", [False, True], ids=["not asked", "asked to overwrite"])
def test_files_we_did_not_write_are_never_replaced(asked, tiny_qwen2, trained_run, tmp_path, monkeypatch):
    """The probe's case: a folder with a README.md, a config.json and an old weight shard of another model."""
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    for name in ("README.md", "config.json", "model-00001-of-00002.safetensors"):
        (export_dir / name).write_text(f"{name} of another project")
    if asked:
        monkeypatch.setenv(OVERWRITE, "1")
    with unchanged(export_dir, tiny_qwen2, trained_run):
        line = _refusal(_args(tiny_qwen2, trained_run, export_dir))
    assert line == (
        f"`export_dir` {export_dir} holds files that no export of ours wrote (README.md, config.json, "
        "model-00001-of-00002.safetensors); they are never replaced: choose a new or empty folder."
    )
    assert not _leftovers(export_dir)


def test_an_earlier_export_is_replaced_only_when_asked(earlier_export, tiny_qwen2, trained_run, copy_of, monkeypatch):
    export_dir = copy_of(earlier_export, "export")
    args = _args(tiny_qwen2, trained_run, export_dir, infer_dtype="bfloat16")
    with unchanged(export_dir):
        line = _refusal(args)
    assert line == (
        f"`export_dir` {export_dir} holds an earlier export; set {OVERWRITE}=1 to replace it, or choose a new folder."
    )
    (export_dir / "notes.txt").write_text("the user's own notes")
    monkeypatch.setenv(OVERWRITE, "1")
    with unchanged(export_dir):
        assert "no export of ours wrote (notes.txt)" in _refusal(args)
    (export_dir / "notes.txt").unlink()
    _export(args)
    assert json.loads((export_dir / "config.json").read_text())["dtype"] == "bfloat16"
    marker = json.loads((export_dir / "prefixmemory_export.json").read_text())
    written = {str(path.relative_to(export_dir)) for path in export_dir.rglob("*") if path.is_file()}
    assert set(marker["files"]) == written - {"prefixmemory_export.json"} and "README.md" in written
    assert ".partial-" not in (export_dir / "README.md").read_text() and not _leftovers(export_dir)


@pytest.mark.parametrize("replacing", [False, True], ids=["new folder", "replacing an earlier export"])
def test_a_full_disk_leaves_no_half_export(
    replacing, earlier_export, tiny_qwen2, trained_run, copy_of, tmp_path, monkeypatch
):
    from transformers import PreTrainedModel

    def full_disk(self, folder, **kwargs):
        Path(folder, "model.safetensors").write_bytes(b"\0" * 1000)  # half a weight file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    export_dir = copy_of(earlier_export, "export") if replacing else tmp_path / "export"
    if replacing:
        monkeypatch.setenv(OVERWRITE, "1")
    before = fingerprint(export_dir)
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_disk)
    line = _refusal(_args(tiny_qwen2, trained_run, export_dir))
    kept = "the earlier export is unchanged" if replacing else "nothing was left behind"
    assert line == f"`export_dir` {export_dir}: writing the export failed (No space left on device); {kept}."
    assert fingerprint(export_dir) == before and export_dir.exists() == replacing
    assert not _leftovers(export_dir)


def test_the_run_folder_of_the_adapter_is_refused(tiny_qwen2, trained_run):
    """The probe's case: `export_dir` is the run whose checkpoint-2 is the adapter (it overwrote the run's README)."""
    with unchanged(trained_run):
        line = _refusal(_args(tiny_qwen2, trained_run, trained_run))
    assert line == (
        f"`export_dir` {trained_run} resolves to {trained_run.resolve()}, which holds `adapter_name_or_path` "
        f"{trained_run / 'checkpoint-2'}: the run would replace a folder it reads; choose a new folder."
    )
