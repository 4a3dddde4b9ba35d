"""prefixmemory-bench's nf4-* methods: the same methods on a 4-bit NF4 base, compared with QLoRA and the full base."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from prefixmemory_study.bench import cli, presets

pytest.importorskip("bitsandbytes")

METHODS = ["pmt-elu", "nf4-pmt-elu", "nf4-lora-qv-r32"]


@pytest.mark.slow  # 47 s on the shared 2-core CPU: five model builds (two warm-up), three timed
def test_nf4_methods_train_on_a_4bit_base_with_the_same_adapters(tmp_path):
    json_path = tmp_path / "bench.json"
    args = ["--preset", "tiny", "--threads", "1", "--warmup", "0", "--repeats", "1", "--decode-tokens", "1"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main([*args, "--methods", ",".join(METHODS), "--json", str(json_path)])
    report = json.loads(json_path.read_text())
    by_method = {result["method"]: result for result in report["results"]}
    assert list(by_method) == METHODS and all(not result["unavailable"] for result in by_method.values())
    # the memories are the same on either base; PMT on 4-bit holds fewer than LoRA q,v rank 32 does
    assert by_method["nf4-pmt-elu"]["trainable_params"] == by_method["pmt-elu"]["trainable_params"]
    assert 0 < by_method["nf4-pmt-elu"]["trainable_params"] < by_method["nf4-lora-qv-r32"]["trainable_params"]
    ratio = report["ratios"]["nf4-pmt-elu"]["train_step_s/nf4-lora-qv-r32"]
    assert ratio == pytest.approx(
        by_method["nf4-pmt-elu"]["train_step_s"] / by_method["nf4-lora-qv-r32"]["train_step_s"]
    )
    assert "| train_step / nf4-lora-r32 |" in printed.getvalue() and presets.METHOD_NOTES["nf4-pmt-elu"].endswith(
        "4-bit NF4 base"
    )


def test_nf4_of_an_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(["--methods", "nf4-base"])
    assert "--methods: unknown ['nf4-base']" in capsys.readouterr().err
