"""prefixmemory-bench --mixed-adapters on the tiny preset: the variants it times and the table it prints."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from prefixmemory_study.bench import cli, mixed

ARGS = ["--preset", "tiny", "--device", "cpu", "--threads", "1", "--warmup", "0", "--repeats", "1", "--mixed-adapters"]


def test_table_and_json(tmp_path):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main([*ARGS, "--seq-len", "8", "--decode-tokens", "2", "--json", str(tmp_path / "mixed.json")])
    report = json.loads((tmp_path / "mixed.json").read_text())
    assert report["batch_size"] == 16 and report["seq_len"] == 8 and report["decode_tokens"] == 2
    variants = [(row["method"], row["distinct_adapters"]) for row in report["results"]]
    assert variants == [(method, count) for method in mixed.MIXED_METHODS for count in (0, 1, 4, 16)]
    assert all(row["prefill_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0 for row in report["results"])
    table = [
        line for line in printed.getvalue().splitlines() if line.startswith("| pmt-elu") or line.startswith("| lora")
    ]
    assert len(table) == 8 and "| pmt-elu | 1, no adapter_names |" in table[0]
    rows = {row["distinct_adapters"]: row for row in report["results"] if row["method"] == "pmt-elu"}
    for figure in ("prefill_tokens_per_s", "decode_tokens_per_s"):
        ratio = rows[16][figure] / rows[0][figure]
        verdict = "met" if ratio >= 0.95 else "not met"
        assert f"pmt-elu {figure}, 16 distinct adapters / one: {ratio:.3f} (>= 0.95): {verdict}" in printed.getvalue()


def test_rows_use_distinct_adapters_with_distinct_values():
    names = mixed.row_adapters(16, 4)
    assert len(names) == 16 and {names.count(f"a{i}") for i in range(4)} == {4}
    assert mixed.row_adapters(16, mixed.FAST_PATH) is None

    spec = cli.make_spec(cli.parse_args(["--preset", "tiny", "--device", "cpu"]))
    for method in mixed.MIXED_METHODS:
        model = mixed.build_model(method, spec, adapters=2)
        ids = torch.arange(6).repeat(2, 1)
        with torch.no_grad():
            out = model(input_ids=ids, adapter_names=["a0", "a1"]).logits
            base = model(input_ids=ids, adapter_names=["__base__", "__base__"]).logits
        assert (out[0] - out[1]).abs().max() > 1e-4, method  # the two adapters hold different values
        assert (out[0] - base[0]).abs().max() > 1e-4, method


@pytest.mark.parametrize(
    "extra, message",
    [(["--batch-size", "10"], "multiple of 16"), (["--plot", "x.png"], "--plot does not apply")],
)
def test_bad_flags_fail_before_measuring(capsys, extra, message):
    with pytest.raises(SystemExit):
        cli.parse_args([*ARGS, *extra])
    assert message in capsys.readouterr().err
