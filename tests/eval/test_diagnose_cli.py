"""prefixmemory-diagnose: every command writes its JSON and a PNG, on the tiny model with all three adapter kinds."""

import json
from pathlib import Path

import pytest

from prefixmemory_study.diagnostics import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(tiny_model, adapters, texts_file, tmp_path):
    def run(command: str, *extra: str) -> tuple[dict, dict]:
        argv = [command, "--model", str(tiny_model), "--data", str(texts_file), "--output-dir", str(tmp_path),
                "--adapter", f"PMT={adapters['pmt']}", "--adapter", str(adapters["lora"]),
                "--adapter", str(adapters["prefix"])]  # fmt: skip
        returned = cli.main([*argv, *extra])
        png = (tmp_path / f"{command}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 20_000  # a real figure, not an empty canvas
        return json.loads((tmp_path / f"{command}.json").read_text()), returned

    return run


def test_spectrum(run):
    written, returned = run("spectrum", "--top-k", "10")
    assert written == json.loads(json.dumps(returned))
    assert [r["name"] for r in written["results"]] == ["PMT", "LoRA", "Prefix (p=8)"]
    assert written["layer"] == 1 and written["site"] == "attention" and written["features"] == 64
    for result in written["results"]:
        values = result["eigenvalues"]
        assert len(values) == 10 and values == sorted(values, reverse=True) and min(values) >= 0
        assert result["bias_rms"] > 0 and 1 <= result["effective_rank"] <= 64


def test_cka(run):
    written, _ = run("cka", "--pool", "tokens")
    assert written["layer"] == 1 and written["samples"] > 4  # the middle of 2 layers
    for result in written["results"]:
        assert len(result["per_layer"]) == 2 and result["cka"] == result["per_layer"][1]
        assert 0 < result["cka"] < 1  # every adapter moved the representations somewhat


def test_tradeoff(run):
    written, _ = run("tradeoff", "--length", "64", "--sequences", "2", "--bins", "8")
    by_name = {r["name"]: r for r in written["results"]}
    assert written["skipped"] == ["LoRA"]  # nothing to trade off against in LoRA
    assert by_name["PMT"]["quantity"] == "memory_ratio" and by_name["Prefix (p=8)"]["quantity"] == "alpha"
    alpha = by_name["Prefix (p=8)"]["per_position"]
    assert len(alpha) == 64 and alpha[0] > alpha[-1]
    assert all(value > 0 for value in by_name["PMT"]["per_position"])
    assert set(by_name["PMT"]["per_layer_mean"]) == {"0", "1"}


def test_tradeoff_of_one_layer(run):
    written, _ = run("tradeoff", "--length", "32", "--sequences", "1", "--layer", "-1")
    assert all(list(r["per_layer_mean"]) == ["1"] for r in written["results"])


def test_attention(run, texts_file):
    written, _ = run("attention", "--ood-data", str(texts_file), "--index", "1", "--max-length", "12")
    assert [e["example"] for e in written["examples"]] == ["IID", "OOD"]
    for example in written["examples"]:
        assert [m["name"] for m in example["maps"]] == ["Base", "PMT", "LoRA", "Prefix (p=8)"]
        assert example["maps"][0]["total_variation_from_base"] is None
        for entry in example["maps"]:
            assert len(entry["weights"]) == len(example["tokens"]) == 12
            assert all(abs(sum(row) - 1) < 1e-4 for row in entry["weights"])  # prefix columns gone, renormalised


def test_unknown_adapter_folder_is_refused(tiny_model, texts_file, tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        cli.main(["cka", "--model", str(tiny_model), "--adapter", str(tmp_path), "--data", str(texts_file)])


@pytest.mark.parametrize("command", ["spectrum", "cka", "tradeoff", "attention"])
def test_every_command_documents_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "-h"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ("--model", "--adapter", "--data", "--output-dir", "--layer"))
    words = " ".join(text.split()).lower()
    assert "appendix b" in words or "section 4.2" in words  # where in the paper the diagnostic comes from


def test_adapter_names_default_to_the_kind_and_may_hold_equals_signs(adapters):
    from prefixmemory_study.diagnostics import loading

    values = [f"Prefix (p=8)={adapters['prefix']}", *(str(adapters[name]) for name in ("prefix", "pmt", "lora"))]
    specs = loading.parse_adapters(values)
    assert [s.name for s in specs] == ["Prefix (p=8)", "Prefix (p=8) #2", "PMT", "LoRA"]
    assert [s.peft_type for s in specs] == ["PREFIX_TUNING", "PREFIX_TUNING", "PREFIXMEMORY", "LORA"]
    assert [s.num_virtual_tokens for s in specs] == [8, 8, 0, 0]


def test_cka_tables_9_and_10_on_truthfulqa(tiny_model, adapters, short_prefix_adapter, tmp_path):
    """The paper's setting in miniature: TruthfulQA as registered, the adapters of Table 9 and a prefix sweep."""
    short = short_prefix_adapter
    written = cli.main(["cka", "--model", str(tiny_model), "--data", "truthfulqa_sample", "--dataset-dir",
                        str(REPO / "data"), "--layer", "1", "--output-dir", str(tmp_path), "--adapter",
                        str(adapters["prefix"]), "--adapter", f"PMT={adapters['pmt']}", "--adapter",
                        str(adapters["lora"]), "--adapter", str(short)])  # fmt: skip
    questions = [row["question"] for row in json.loads((REPO / "data" / "truthfulqa_sample.json").read_text())]
    assert written["texts"] == len(questions) == 6
    cka = {r["name"]: r["cka"] for r in written["results"]}
    table = (tmp_path / "cka.md").read_text().splitlines()
    assert table[:3] == ["| Method | CKA similarity, layer 1 |", "|---|---|", "| Base Model | 1.0000 |"]
    assert table[3:] == [f"| {name} | {cka[name]:.4f} |" for name in ("PMT", "LoRA", "Prefix (p=4)", "Prefix (p=8)")]


def test_registered_hub_datasets_are_read_from_the_hub(tmp_path, monkeypatch):
    import datasets

    from prefixmemory_study import records

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kw: calls.append((args, kw)) or [{"question": "q"}])
    texts = [records.record_text(r) for r in records.read_records("truthfulqa", REPO / "data")]
    assert texts == ["q"] and calls == [(("truthfulqa/truthful_qa", "generation"), {"split": "validation"})]
