"""prefixmemory-miniature end to end on a tiny random model: records, resuming, shards, the chosen rates, the report.

The numbers mean nothing here (random weights, two steps); what is checked is the bookkeeping a long study depends
on: every configuration recorded once, a stopped study continuing without repeating work, parallel workers and
shards splitting the work without overlap, the learning rate picked as the rule says, the mechanism read from the
saved adapters, a bad --shard refused in one line.
"""

import json

import pytest

from prefixmemory_study.miniature import study
from prefixmemory_study.miniature.methods import LEARNING_RATE_GRID

SMALL = ["--tasks", "emotion", "--rounds", "3", "--seeds", "2", "--steps", "2"]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(tiny_qwen2, tmp_path_factory):
    runs, out = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("report")
    common = ["--model", str(tiny_qwen2), "--runs-dir", str(runs), *SMALL]
    common += ["--methods", "zero-shot", "icl", "pmt-elu", "prefix"]
    sweep = [{"key": f"{m}|{lr}", "method": m, "lr": lr, "accuracy": 0.0, "last_loss": 1.0}
             for m in ("pmt-elu", "prefix") for lr in LEARNING_RATE_GRID[m]]  # fmt: skip
    sweep[1]["accuracy"] = 50.0  # pmt-elu's second rate wins on accuracy; prefix: a tie, its third rate's loss wins
    sweep[6]["last_loss"] = 0.5
    (runs / study.SWEEP).write_text("".join(json.dumps(entry) + "\n" for entry in sweep))
    study.main(["run", *common, "--jobs", "2"])  # two processes that claim jobs as they become free
    study.main(["mechanism", *common, "--shard", "1/2"])  # shards: every second job, from the first or the second
    study.main(["mechanism", *common, "--shard", "0/2"])
    study.main(["report", *common, "--output-dir", str(out)])
    return runs, out, common


def test_every_configuration_is_recorded_once_by_parallel_workers(finished):
    runs, _, _ = finished
    keys = [entry["key"] for entry in _lines(runs / study.RESULTS)]
    expected = {"emotion|zero-shot|3|0"} | {f"emotion|{m}|3|{s}" for m in ("icl", "pmt-elu", "prefix") for s in (0, 1)}
    assert sorted(keys) == sorted(expected)


def test_no_claims_are_left_behind(finished):
    runs, _, _ = finished
    assert not (runs / ".claims").exists()


def test_the_rate_with_the_best_validation_accuracy_then_loss_is_used(finished):
    runs, _, _ = finished
    used = {entry["method"]: entry["lr"] for entry in _lines(runs / study.RESULTS)}
    assert used["pmt-elu"] == LEARNING_RATE_GRID["pmt-elu"][1]
    assert used["prefix"] == LEARNING_RATE_GRID["prefix"][2]
    assert used["icl"] is None and used["zero-shot"] is None


def test_a_finished_study_runs_nothing_again(finished):
    runs, _, common = finished
    before = {name: (runs / name).read_text() for name in (study.RESULTS, study.MECHANISM)}
    study.main(["run", *common])
    study.main(["mechanism", *common])
    assert {name: (runs / name).read_text() for name in before} == before


def test_mechanism_grows_the_input_for_each_saved_adapter(finished):
    runs, _, _ = finished
    entries = _lines(runs / study.MECHANISM)
    assert {(e["method"], e["seed"], e["fillers"]) for e in entries} == {
        (m, s, f) for m in ("pmt-elu", "prefix") for s in (0, 1) for f in study.FILLERS
    }
    for method in ("pmt-elu", "prefix"):
        tokens = [e["tokens"] for e in entries if e["method"] == method and e["seed"] == 0]
        assert tokens == sorted(tokens) and tokens[0] < tokens[-1]
        assert all(0 < e["share"] < 10 for e in entries if e["method"] == method)


def test_report_writes_the_table_and_plots(finished):
    _, out, _ = finished
    table = (out / "results.md").read_text()
    assert "| PMT (elu) |" in table and "| Prefix-tuning: share |" in table
    assert (out / "accuracy.png").stat().st_size > 0 and (out / "mechanism.png").stat().st_size > 0


def test_run_before_the_sweep_says_what_to_do(tiny_qwen2, tmp_path):
    with pytest.raises(ValueError, match="run `sweep` first"):
        study.main(["run", "--model", str(tiny_qwen2), "--runs-dir", str(tmp_path), *SMALL, "--methods", "lora"])


@pytest.mark.parametrize("shard", ["abc", "2/2", "1"])
def test_a_bad_shard_is_refused_in_one_line(shard, capsys):
    with pytest.raises(SystemExit):
        study.main(["report", "--shard", shard])
    assert f"`--shard` must be i/n with 0 <= i < n; got {shard!r}." in capsys.readouterr().err
