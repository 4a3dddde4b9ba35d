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
import torch

from prefixmemory_study.bench import cli, presets, runner
from prefixmemory_study.bench.report import TARGETS, TARGETS_HEADER, median_interval, paired_ratio

ARGS = ["--preset", "tiny", "--device", "cpu", "--threads", "1", "--warmup", "0", "--repeats", "2"]
TIMED = ("train_step_s", "train_tokens_per_s", "prefill_tokens_per_s", "decode_tokens_per_s", *presets.LATENCY_FIGURES)


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


def test_lora_baselines_count_their_targets(run):
    report, _, _ = run
    by_method = {result["method"]: result for result in report["results"]}
    model = presets.PRESETS["tiny"].model
    d, layers, ffn = model["hidden_size"], model["num_hidden_layers"], model["intermediate_size"]
    kv = d // model["num_attention_heads"] * model["num_key_value_heads"]
    # rank * (in + out) per adapted linear: q (d -> d) and v (d -> kv) only, or all seven linears of a block.
    qv = 32 * ((d + d) + (d + kv))
    every = qv + 32 * ((d + kv) + (d + d) + 2 * (d + ffn) + (ffn + d))
    assert by_method["lora-qv-r32"]["trainable_params"] == layers * qv
    assert by_method["lora-r32"]["trainable_params"] == layers * every


def test_prefix_variants_are_labelled_and_counted(run):
    report, printed, _ = run
    by_method = {result["method"]: result for result in report["results"]}
    model = presets.PRESETS["tiny"].model
    layers = model["num_hidden_layers"]
    kv = model["hidden_size"] // model["num_attention_heads"] * model["num_key_value_heads"]
    # A key and a value of the KV width per virtual token and layer.
    assert by_method["prefix-32"]["trainable_params"] == 32 * layers * 2 * kv
    # Reparameterised: an embedding of 32 x kv, then kv -> kv (tanh) -> layers * 2 * kv, with biases.
    mlp = 32 * kv + (kv * kv + kv) + (kv * layers * 2 * kv + layers * 2 * kv)
    assert by_method["prefix-32-mlp"]["trainable_params"] == mlp
    assert "`prefix-32`: prefix tuning, 32 virtual tokens, no reparameterisation" in printed
    assert "`prefix-32-mlp`: prefix tuning, 32 virtual tokens, through PEFT's two-layer MLP" in printed
    assert "`lora-qv-r32`: LoRA rank 32 on q_proj and v_proj only" in printed


def test_ratios_and_targets(run):
    report, _, _ = run
    assert report["ratios"]["lora-r32"]["train_step_s/lora-r32"] == pytest.approx(1.0)
    assert report["ratios"]["lora-qv-r32"]["peak_mem_bytes/lora-qv-r32"] == pytest.approx(1.0)
    by_method = {result["method"]: result for result in report["results"]}
    pmt, qv = by_method["pmt-elu"], by_method["lora-qv-r32"]
    assert report["ratios"]["pmt-elu"]["train_step_s/lora-qv-r32"] == pytest.approx(
        pmt["train_step_s"] / qv["train_step_s"]
    )
    for figure in presets.LATENCY_FIGURES:
        assert report["ratios"]["pmt-elu"][f"{figure}/base"] == pytest.approx(pmt[figure] / by_method["base"][figure])
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
    assert "train_step / lora-r32" in printed and "train_step / lora-qv-r32" in printed and TARGETS_HEADER in printed
    assert "| method | TTFT b1 (ms) | TBT b1 (ms) | TPS b1 | TTFT b2 (ms) | TBT b2 (ms) | TPS b2 |" in printed
    assert "| method | ttft_b1 / base | tbt_b1 / base | tps_b1 / base |" in printed


class FakeClock:
    """A clock that moves only when told: the delays below are the only time that passes."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_latency_splits_first_token_from_later_ones(monkeypatch):
    """TTFT is the prefill (and its token) alone; TBT the mean of the later steps; TPS counts every token."""
    clock, prefill_s, step_s, steps = FakeClock(), 0.5, 0.01, 4
    monkeypatch.setitem(runner.CLOCKS, "fake", clock)
    spec = cli.make_spec(cli.parse_args(ARGS))
    spec.clock, spec.decode_tokens = "fake", steps
    measured = runner.Runner("base", spec, runner._input_ids(spec))
    prefill, step_model = measured._prefill, measured.step_model
    calls = []

    def slow_prefill(input_ids):
        calls.append(("prefill", input_ids.shape[0]))
        clock.now += prefill_s * input_ids.shape[0]
        return prefill(input_ids)

    def slow_step(**kwargs):
        calls.append(("step", kwargs["input_ids"].shape[0]))
        clock.now += step_s
        return step_model(**kwargs)

    measured._prefill, measured.step_model = slow_prefill, slow_step
    for kind in ("infer", "infer-b1"):
        measured.sample(kind)
    result = measured.result()
    batch = spec.batch_size
    assert calls == [("prefill", batch), *[("step", batch)] * steps, ("prefill", 1), *[("step", 1)] * steps]
    assert result["ttft_b1_s"] == pytest.approx(prefill_s)
    assert result["tbt_b1_s"] == pytest.approx(step_s)
    assert result["tps_b1"] == pytest.approx((steps + 1) / (prefill_s + steps * step_s))
    assert result["ttft_bN_s"] == pytest.approx(prefill_s * batch)
    assert result["tbt_bN_s"] == pytest.approx(step_s)
    assert result["tps_bN"] == pytest.approx(batch * (steps + 1) / (prefill_s * batch + steps * step_s))


def test_decode_steps_of_two_methods_alternate_and_pair_up(monkeypatch):
    """Runners generate in lockstep, and the paired decode ratio is the median of their per-step time ratios."""
    clock, steps = FakeClock(), 3
    monkeypatch.setitem(runner.CLOCKS, "fake", clock)
    spec = cli.make_spec(cli.parse_args(ARGS))
    spec.clock, spec.decode_tokens = "fake", steps
    calls = []
    runners = [runner.Runner(method, spec, runner._input_ids(spec)) for method in ("base", "pmt-elu")]
    step_seconds = {"base": [0.010, 0.020, 0.010], "pmt-elu": [0.011, 0.020, 0.013]}
    for measured in runners:
        step_model, method = measured.step_model, measured.method

        def slow_step(step_model=step_model, method=method, **kwargs):
            clock.now += step_seconds[method][sum(name == method for name in calls)]
            calls.append(method)
            return step_model(**kwargs)

        measured.step_model = slow_step
    runner.generate(runners, "infer")
    assert calls == ["base", "pmt-elu"] * steps
    base, pmt = (measured.result() for measured in runners)
    paired = paired_ratio(pmt, base, "decode_tokens_per_s")
    assert paired["pairs"] == steps and paired["median"] == pytest.approx(0.010 / 0.011)
    assert pmt["decode_tokens_per_s"] == pytest.approx(spec.batch_size * steps / 0.044)


def test_median_interval_is_the_binomial_one():
    """The 95% interval of a median from its order statistics: ranks 40 and 61 of 100 (the textbook table); with 7
    pairs (the cpu-small rounds) no narrower interval reaches 95%, so it is the whole range."""
    assert median_interval([float(value) for value in range(100, 0, -1)]) == (40.0, 61.0)
    assert median_interval([0.9, 1.1, 1.0, 0.8, 1.3, 0.95, 1.05]) == (0.8, 1.3)


def test_adapter_share_is_the_memories_over_the_weights_a_step_reads(run):
    """pmt-elu's M and bias (fp32) over every frozen weight but the untied input embedding, counted from the config."""
    measured, printed, _ = run
    config = presets.PRESETS["tiny"].model
    hidden, layers, heads, vocab = (
        config[key] for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    )
    head_dim, kv = hidden // heads, config["num_key_value_heads"] * (hidden // heads)
    attention = hidden * hidden * 2 + 2 * hidden * kv + hidden + 2 * kv  # q, o; k, v; q/k/v biases
    block = attention + 3 * hidden * config["intermediate_size"] + 2 * hidden
    weights = 4 * (layers * block + hidden + vocab * hidden)  # the blocks, the final norm, the LM head (untied)
    memories = 4 * layers * heads * (head_dim * head_dim + head_dim)
    assert measured["adapter_share"] == pytest.approx(memories / weights)
    assert f"{memories / weights:.2%} of the weight bytes a decode step reads" in printed


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


def test_a_missed_target_reads_as_a_measurement(run):
    """A target below its bound is "not met" under a header that says the run itself succeeded."""
    _, printed, _ = run
    lines = printed.splitlines()
    targets = lines[lines.index(TARGETS_HEADER) + 1 :][: len(TARGETS)]
    assert all(line.rstrip().endswith((": met", ": not met")) or "; paired" in line for line in targets), targets
    assert "MISSED" not in printed and "not an error" in TARGETS_HEADER


def test_cpu_clock_on_a_gpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--device", "cuda", "--clock", "cpu"])
    assert "--clock cpu" in capsys.readouterr().err
    assert cli.parse_args(["--device", "cpu", "--clock", "cpu"]).clock == "cpu"


def test_cpu_defaults_are_one_thread_and_cpu_time():
    """The defaults the README quotes: on a CPU one torch thread and this process's CPU time; on a GPU wall time."""
    torch.set_num_threads(2)
    spec = cli.make_spec(cli.parse_args(["--device", "cpu"]))
    assert spec.clock == "cpu" and torch.get_num_threads() == 1
    assert cli.parse_args(["--device", "cuda"]).clock == "wall"
    cli.make_spec(cli.parse_args(["--device", "cpu", "--threads", "2"]))
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


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
