"""prefixmemory-bench on the tiny preset: well-formed output only. The targets are checked by running the benchmark.

One run of every method is shared by the checks (a few seconds on one CPU thread).
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pytest

from prefixmemory_study.bench import cli, presets, runner
from prefixmemory_study.bench.report import TARGETS

ARGS = ["--preset", "tiny", "--device", "cpu", "--threads", "1", "--warmup", "0", "--repeats", "2"]
TIMED = ("train_step_s", "train_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    json_path, png_path = folder / "bench.json", folder / "bench.png"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main([*ARGS, "--json", str(json_path), "--plot", str(png_path)])
    return json.loads(json_path.read_text()), printed.getvalue(), png_path


def test_json_has_every_method_and_figure(run):
    report, _, _ = run
    assert report["preset"] == "tiny" and report["device"] == "cpu"
    assert [result["method"] for result in report["results"]] == list(presets.METHODS)
    for result in report["results"]:
        assert set(presets.FIGURES) <= set(result), result["method"]


def test_figures_are_positive_where_measured(run):
    report, _, _ = run
    by_method = {result["method"]: result for result in report["results"]}
    for method, result in by_method.items():
        missing = set(result["unavailable"])
        for figure in (*TIMED, "peak_mem_bytes"):
            if figure in missing:
                assert result[figure] is None, (method, figure)
            else:
                assert result[figure] > 0, (method, figure)
    # Only the base model has nothing to train; on transformers 5.6 every method measures every figure.
    assert set(by_method["base"]["unavailable"]) == {"train_step_s", "train_tokens_per_s", "peak_mem_bytes"}
    assert all(not result["unavailable"] for method, result in by_method.items() if method != "base")
    assert by_method["base"]["trainable_params"] == 0
    assert by_method["floor"]["trainable_params"] == 1
    assert 0 < by_method["pmt-elu"]["trainable_params"] < by_method["lora-r32"]["trainable_params"]


def test_ratios_and_targets(run):
    report, _, _ = run
    assert report["ratios"]["lora-r32"]["train_step_s/lora-r32"] == pytest.approx(1.0)
    assert report["ratios"]["base"]["decode_tokens_per_s/base"] == pytest.approx(1.0)
    assert [(t["method"], t["figure"], t["reference"]) for t in report["targets"]] == [
        target[:3] for target in TARGETS
    ]
    assert all(t["ratio"] > 0 and t["met"] in (True, False) for t in report["targets"])


def test_markdown_table_printed(run):
    _, printed, _ = run
    assert "| method | train step (s) |" in printed
    for method in presets.METHODS:
        assert f"| {method} |" in printed
    assert "train_step / lora-r32" in printed and "targets:" in printed


def test_plot_written(run):
    _, _, png_path = run
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failing_method_is_reported_not_raised(monkeypatch, capsys):
    original = runner.apply_method

    def broken(model, method):
        if method == "prefix-32":
            raise RuntimeError("prefix tuning broke")
        return original(model, method)

    monkeypatch.setattr(runner, "apply_method", broken)
    report = cli.benchmark(cli.parse_args([*ARGS, "--repeats", "1", "--methods", "base,prefix-32"]))
    prefix = report["results"][1]
    assert prefix["train_step_s"] is None and prefix["decode_tokens_per_s"] is None
    assert prefix["unavailable"]["train_step_s"] == "RuntimeError: prefix tuning broke"
    assert report["results"][0]["decode_tokens_per_s"] > 0
    assert "prefix-32 train_step_s: RuntimeError: prefix tuning broke" in capsys.readouterr().out


def test_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--methods", "pmt-elu,lora-r8"])
    assert "lora-r8" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--json", "--plot", "--profile"])
def test_output_in_a_missing_folder_is_a_usage_error(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args([flag, str(tmp_path / "missing" / "out")])
    assert f"{flag}: the folder of" in capsys.readouterr().err


def test_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "prefixmemory_study.bench", *ARGS, "--repeats", "1", "--methods", "base,pmt-elu"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    assert "| pmt-elu |" in out.stdout


def test_profile_tables_show_each_methods_own_operators(tmp_path, capsys):
    path = tmp_path / "profile.txt"
    cli.main([*ARGS, "--repeats", "1", "--methods", "base,pmt-elu", "--profile", str(path)])
    sections = dict(
        section.split("\n", 1) for section in path.read_text().split("## ")[1:]
    )  # "<method>: <phase>" -> table
    assert list(sections) == [
        "base: prefill",
        "base: decode",
        "pmt-elu: train step",
        "pmt-elu: prefill",
        "pmt-elu: decode",
    ]
    # phi = elu runs in every PMT phase, and never in the base model's.
    assert all("aten::elu" in table for name, table in sections.items() if name.startswith("pmt-elu"))
    assert not any("aten::elu" in table for name, table in sections.items() if name.startswith("base"))
    assert "_ELUBackward" in sections["pmt-elu: train step"] and "AdamW.step" in sections["pmt-elu: train step"]
