"""`output_dir` is checked before the model loads: a file, a folder that cannot be written, the data set's folder,
another project's folder, or a folder another training run is writing are refused in one line; `~` and `$VAR` are
expanded; an earlier run's folder is still reused.

LLaMA-Factory's parser runs in-process (as ``llamafactory-cli train`` runs it); the run holding a folder is a real
``llamafactory-cli train`` in a subprocess.
"""

import os
import signal
import subprocess
import time

import pytest
import yaml
from lfcli import OFFLINE_ENV

from prefixmemory_patches.errors import PrefixMemoryError

LOCK = ".prefixmemory.lock"


def _train_args(config, **overrides):
    from llamafactory.hparams import get_train_args

    return get_train_args(config(**overrides))


def _refusal(config, **overrides) -> str:
    with pytest.raises(PrefixMemoryError) as error:
        _train_args(config, **overrides)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_an_output_dir_that_is_a_file_is_refused(config, tmp_path):
    (tmp_path / "out").write_text("not a folder")
    line = _refusal(config, output_dir=str(tmp_path / "out"))
    assert line == f"`output_dir` {tmp_path / 'out'} is a file, not a folder; choose a folder."


@pytest.mark.parametrize("where", ["the dataset_dir", "a subfolder of it"])
def test_output_dir_in_the_dataset_dir_is_refused(where, config, toy_data):
    output_dir = toy_data if where == "the dataset_dir" else toy_data / "run"
    line = _refusal(config, output_dir=str(output_dir))
    assert line == (
        f"`output_dir` {output_dir} resolves to {output_dir.resolve()}, inside `dataset_dir` {toy_data}: the run "
        "would write into a folder it reads; choose a new folder."
    )


def test_another_projects_folder_is_refused_an_earlier_runs_is_not(config, tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "README.md").write_text("# a project")
    (project / "pyproject.toml").write_text("[project]")
    monkeypatch.chdir(project)
    line = _refusal(config, output_dir=".")
    assert line == (
        f"`output_dir` . ({project.resolve()}) holds .git, README.md, pyproject.toml and no earlier run: the run "
        "would write among another project's files; choose a new folder."
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("# not a run")
    assert "holds README.md and no earlier run" in _refusal(config, output_dir=str(docs))
    (docs / "trainer_log.jsonl").write_text("")  # a run killed after its first log step: resumable, reusable
    assert _train_args(config, output_dir=str(docs))[2].output_dir == str(docs)


def test_home_and_variables_are_expanded(config, tmp_path, monkeypatch):
    monkeypatch.setenv("PMT_RUNS", str(tmp_path / "runs"))
    assert _train_args(config, output_dir="$PMT_RUNS/a")[2].output_dir == str(tmp_path / "runs" / "a")
    assert _refusal(config, output_dir="${PMT_NO_SUCH_VARIABLE}/a") == (
        "`output_dir` ${PMT_NO_SUCH_VARIABLE}/a names the environment variable $PMT_NO_SUCH_VARIABLE, which is not "
        "set; set it or write the path out."
    )


@pytest.mark.parametrize("output_dir", ["/sys/kernel", "/sys/kernel/prefixmemory-test"], ids=["existing", "new"])
def test_an_output_dir_that_cannot_be_written_is_refused_before_training(output_dir, config):
    """sysfs refuses new files to every user, root included: a read-only folder wherever the tests run."""
    from prefixmemory_patches.llamafactory.checks.outputs import claiming

    with claiming():
        line = _refusal(config, output_dir=output_dir)
    assert line.startswith(f"`output_dir` {output_dir} cannot be written (")
    assert line.endswith("); choose a folder you can write.")


def test_a_folder_in_use_by_another_training_run_is_refused(config, tmp_path):
    """A real training run holds its folder; a second run there is refused naming its pid, until the first dies."""
    from prefixmemory_patches.llamafactory.checks.outputs import claiming

    run = tmp_path / "run"
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(config(output_dir=str(run), max_steps=10**6)))
    first = subprocess.Popen(
        ["llamafactory-cli", "train", "first.yaml"], cwd=tmp_path, env={**os.environ, **OFFLINE_ENV},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (run / LOCK).is_file() or not (run / LOCK).read_text().strip():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its folder"
            time.sleep(0.5)
        assert (run / LOCK).read_text().strip() == str(first.pid)
        with claiming():
            line = _refusal(config, output_dir=str(run))
        assert line == (
            f"`output_dir` {run} is in use by another training run (pid {first.pid}); wait for it to end or choose "
            "another folder."
        )
    finally:
        first.send_signal(signal.SIGKILL)  # as a crash would: the OS drops its lock
        first.wait()
    with claiming():
        assert _train_args(config, output_dir=str(run))[2].output_dir == str(run)
        assert (run / LOCK).read_text().strip() == str(os.getpid())
