"""prefixmemory-gpucheck: its CPU path (what CI runs) and, on a CUDA machine, the whole check.

The CPU path runs the same code with every GPU-only check skipped: the skips must each be reported with their
reason, and the checks a CPU can run must really have run (their logs, adapters and benchmark JSON are read here).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from prefixmemory_study import gpucheck, toydata

CPU_CHECKS = [check.name for check in gpucheck.CHECKS if not check.needs]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gpucheck")
    json_path = workdir / "outcomes.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = gpucheck.main(["--device", "cpu", "--workdir", str(workdir), "--json", str(json_path)])
    return status, json.loads(json_path.read_text()), printed.getvalue(), workdir


def test_cpu_capable_checks_pass_and_nothing_fails(cpu_run):
    status, outcomes, _, _ = cpu_run
    assert [outcome["name"] for outcome in outcomes] == [check.name for check in gpucheck.CHECKS]
    assert CPU_CHECKS == ["sft sdpa", "dpo sdpa", "bench tiny"]
    assert {o["name"]: o["status"] for o in outcomes if o["name"] in CPU_CHECKS} == dict.fromkeys(CPU_CHECKS, "pass")
    assert status == 0


def test_cpu_capable_checks_really_ran(cpu_run):
    _, _, _, workdir = cpu_run
    for run in ("sft-sdpa", "dpo-sdpa"):
        rows = [json.loads(line) for line in (workdir / run / "trainer_log.jsonl").read_text().splitlines()]
        assert [row["current_steps"] for row in rows if "loss" in row] == list(range(1, gpucheck.MAX_STEPS + 1))
        memories = [t for name, t in load_file(str(workdir / run / "adapter_model.safetensors")).items()]
        assert memories and all(t.numel() > 0 for t in memories)
    bench = json.loads((workdir / "bench-tiny.json").read_text())
    assert [r["method"] for r in bench["results"]] == gpucheck.BENCH_METHODS.split(",")
    assert all(r["ttft_b1_s"] > 0 and r["tbt_bN_s"] > 0 for r in bench["results"])


def test_every_gpu_only_check_is_reported_skipped_with_its_reasons(cpu_run):
    _, outcomes, printed, _ = cpu_run
    skipped = {o["name"]: o["detail"] for o in outcomes if o["status"] == "skip"}
    assert sorted(skipped) == sorted(check.name for check in gpucheck.CHECKS if check.needs)
    packages = {"flash_attn": "flash-attn", "liger_kernel": "liger-kernel", "deepspeed": "deepspeed"}
    for check in gpucheck.CHECKS:
        if not check.needs:
            continue
        reasons = ["CPU run (--device cpu)"]
        reasons += [
            f"{packages[need]} not installed"
            for need in check.needs
            if need != "cuda" and importlib.util.find_spec(need) is None
        ]
        assert skipped[check.name] == "; ".join(reasons)
        assert f"| {check.name} | skip | 0 | {skipped[check.name]} |" in printed
    assert f"{len(CPU_CHECKS)} passed, 0 failed, {len(skipped)} skipped" in printed


def test_the_training_checks_read_the_toy_sets_the_tests_read(tmp_path):
    """One toy data module for the tests and the GPU check: gpucheck writes its sets and trains on them."""
    model, data = gpucheck.write_inputs(tmp_path)
    sets = toydata.toy_sets(gpucheck.TOY_ROWS)
    assert json.loads((data / "dataset_info.json").read_text()) == {name: entry for name, (entry, _) in sets.items()}
    for check in (check for check in gpucheck.CHECKS if check.kind == "train"):
        config = gpucheck.train_config(check, model, data, tmp_path / "run", cuda=False)
        entry, rows = sets[config["dataset"]]
        assert json.loads((data / entry["file_name"]).read_text()) == rows
        assert (config["stage"], config["dataset"], config["max_steps"]) == (
            check.settings["stage"], "toy_pref" if check.settings["stage"] == "dpo" else "toy_sft", gpucheck.MAX_STEPS
        )  # fmt: skip


def test_a_failing_command_is_one_line_with_its_last_output(tmp_path):
    argv = [
        sys.executable,
        "-c",
        "import sys; print('first'); print('ValueError: broken', file=sys.stderr); sys.exit(3)",
    ]
    with pytest.raises(gpucheck.CheckFailed, match=r"^exit 3: ValueError: broken$"):
        gpucheck._run(argv, {}, 60, tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_check_passes_on_a_gpu(tmp_path, capsys):
    status = gpucheck.main(["--device", "cuda", "--workdir", str(tmp_path), "--json", str(tmp_path / "out.json")])
    outcomes = json.loads((tmp_path / "out.json").read_text())
    assert status == 0, capsys.readouterr().out
    ran = {o["name"] for o in outcomes if o["status"] == "pass"}
    assert {"sft sdpa", "dpo sdpa", "bench qwen2.5-0.5b", "bench qwen2.5-3b"} <= ran
