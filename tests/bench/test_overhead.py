"""prefixmemory-bench --overhead on the tiny preset: the operators it attributes to PrefixMemory, per layer."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from prefixmemory_study.bench import cli, presets

ARGS = ["--preset", "tiny", "--device", "cpu", "--threads", "1", "--warmup", "0", "--repeats", "2", "--overhead"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("overhead") / "overhead.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main([*ARGS, "--json", str(path)])
    return json.loads(path.read_text()), printed.getvalue()


def test_every_phase_against_its_floor(run):
    report, printed = run
    assert [(row["phase"], row["reference"]) for row in report["rows"]] == [
        ("decode, batch 1", "base"),
        ("decode, preset batch", "base"),
        ("prefill, preset batch", "base"),
        ("train step, preset batch", "floor"),
    ]
    assert all(row["pairs"] == 2 * 4 for row in report["rows"][:2])  # 2 rounds x the preset's 4 decode steps
    assert all(row["wrappers_s"] is not None for row in report["rows"][:3]) and report["rows"][3]["wrappers_s"] is None
    assert "| PMT extra, timed |" in printed and "| the rest: Python, dispatch, cold caches |" in printed


def test_the_layer_adds_one_phi_one_matmul_one_add_per_layer_and_forward(run):
    """eq. 7 per layer: phi(q) (elu), one batched matmul with the bias (baddbmm), one add into o_proj's input."""
    report, _ = run
    for row in report["rows"][:3]:
        assert row["calls"]["aten::elu"] == pytest.approx(1.0), row["phase"]
        assert row["calls"]["aten::baddbmm"] == pytest.approx(1.0), row["phase"]
        assert row["calls"]["aten::add"] == pytest.approx(1.0), row["phase"]
    # In training, phi's backward runs in every layer but the first, whose q needs no gradient (nothing trains below).
    layers = presets.PRESETS["tiny"].model["num_hidden_layers"]
    train = report["rows"][3]["calls"]
    assert train["aten::elu"] == pytest.approx(1.0)
    assert train["aten::elu_backward"] == pytest.approx((layers - 1) / layers)


@pytest.mark.parametrize("other", [["--mixed-adapters"], ["--plot", "out.png"], ["--profile", "out.txt"]])
def test_overhead_goes_alone(other, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--overhead", *other])
    assert "--overhead: goes alone" in capsys.readouterr().err
