"""prefixmemory-alpacaeval: alpaca_eval's model_outputs.json from LLaMA-Factory's predictions, real and unit."""

import json
from pathlib import Path

import pytest

from prefixmemory_study import alpacaeval

REPO = Path(__file__).resolve().parents[2]
COLUMNS = {"prompt": "instruction", "response": "output"}
RECORDS = [{"instruction": "Name a colour.", "output": "Red.", "dataset": "oasst"},
           {"instruction": "Count to three.", "output": "1, 2, 3"}]  # fmt: skip


def test_outputs_follow_the_instructions_in_order():
    rows = [{"prompt": "user\nName a colour.\nassistant\n", "predict": " Blue. ", "label": "Red."},
            {"prompt": "user\nCount to  three.\nassistant\n", "predict": "1 2 3", "label": "1, 2, 3"}]  # fmt: skip
    assert alpacaeval.model_outputs(rows, RECORDS, COLUMNS, "PMT-DPO", "alpaca_eval") == [
        {"instruction": "Name a colour.", "output": "Blue.", "generator": "PMT-DPO", "dataset": "oasst"},
        {"instruction": "Count to three.", "output": "1 2 3", "generator": "PMT-DPO", "dataset": "alpaca_eval"},
    ]
    with pytest.raises(ValueError, match="prediction 1 does not answer instruction 1"):
        alpacaeval.model_outputs(rows[::-1], RECORDS, COLUMNS, "x", "alpaca_eval")
    with pytest.raises(ValueError, match="1 predictions for 2 instructions"):
        alpacaeval.model_outputs(rows[:1], RECORDS, COLUMNS, "x", "alpaca_eval")


def test_model_outputs_of_a_pmt_adapter_through_llamafactory(tiny_model, adapters, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipe's dataset_dir: data, as for a user
    path = alpacaeval.main(["recipes/qwen2.5_dpo_pmt.yaml", "--adapter", str(adapters["pmt"]), "--name", "PMT-DPO",
                            "--dataset", "alpaca_eval_sample", "--output-dir", str(tmp_path), "--max-samples", "3",
                            "--max-new-tokens", "4", "--batch-size", "3", "--set", f"model_name_or_path={tiny_model}",
                            "--set", "preprocessing_num_workers=1", "--set", "bf16=false"])  # fmt: skip
    outputs = json.loads(path.read_text())
    samples = json.loads((REPO / "data" / "alpaca_eval_sample.json").read_text())[:3]
    assert [set(o) for o in outputs] == [{"instruction", "output", "generator", "dataset"}] * 3
    assert [(o["instruction"], o["dataset"], o["generator"]) for o in outputs] == [
        (s["instruction"], s["dataset"], "PMT-DPO") for s in samples
    ]
    predictions = [json.loads(line) for line in (tmp_path / "generated_predictions.jsonl").read_text().splitlines()]
    assert [o["output"] for o in outputs] == [row["predict"].strip() for row in predictions]
    config = (tmp_path / "predict.yaml").read_text()
    assert str(adapters["pmt"]) in config and "stage: sft" in config and "deepspeed" not in config


def test_bad_input_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ValueError, match="`--adapter` .*: no adapter_config.json or config.json there"):
        alpacaeval.main(["recipes/qwen2.5_dpo_pmt.yaml", "--adapter", str(tmp_path), "--name", "x"])
    (tmp_path / "dataset_info.json").write_text(json.dumps({"alpaca_eval": {"file_name": "alpaca_eval.json"}}))
    recipe = tmp_path / "recipe.yaml"  # the DPO recipe, its data folder one where the 805 instructions are missing
    recipe.write_text(
        (REPO / "recipes/qwen2.5_dpo_pmt.yaml").read_text().replace("dataset_dir: data", f"dataset_dir: {tmp_path}")
    )
    with pytest.raises(ValueError, match="`--dataset` alpaca_eval: .*alpaca_eval.json is missing"):
        alpacaeval.main([str(recipe), "--name", "base"])
