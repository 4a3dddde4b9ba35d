"""prefixmemory-fewshot: build, train, eval and plot, with the real llamafactory-cli on the tiny model."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from prefixmemory_study import predict
from prefixmemory_study.fewshot import cli as fewshot
from prefixmemory_study.fewshot import data as fewshot_data
from prefixmemory_study.fewshot import evaluate as fewshot_eval
from prefixmemory_study.fewshot import runs as fewshot_runs
from prefixmemory_study.records import user_text

REPO = Path(__file__).resolve().parents[2]


def _recipe(path: Path, tiny_model: Path, data_dir: Path, **overrides) -> Path:
    """A few-shot recipe for the tiny model, shaped like recipes/*_fewshot_*.yaml."""
    config = {
        "model_name_or_path": str(tiny_model), "stage": "sft", "do_train": True, "finetuning_type": "prefixmemory",
        "dataset": "bbh_date_round1", "dataset_dir": str(data_dir), "template": "qwen", "cutoff_len": 1536,
        "output_dir": str(path.parent / "unused"), "per_device_train_batch_size": 2, "learning_rate": 2.0e-2,
        "max_steps": 2, "save_steps": 1, "report_to": "none", "preprocessing_num_workers": 1,
        "overwrite_output_dir": True, **overrides,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def test_build_writes_every_round_and_registers_it(fewshot_data_dir):
    info = json.loads((fewshot_data_dir / "dataset_info.json").read_text())
    for task in ("bbh_date", "goemotions", "dbpedia"):
        for k in range(1, 6):
            assert info[f"{task}_round{k}"] == {"file_name": f"fewshot/{task}_round{k}.json"}
    bbh_test = json.loads((fewshot_data_dir / "fewshot" / "bbh_date_test.json").read_text())
    assert len(bbh_test) == 6  # 6 per class, 5 drawn for the rounds
    assert len(json.loads((fewshot_data_dir / "fewshot" / "banking77_ood.json").read_text())) == 10


def test_train_records_each_round_of_each_recipe(tmp_path, capsys):
    recipes = [REPO / "recipes" / "qwen2.5_fewshot_bbh_pmt.yaml", REPO / "recipes" / "qwen2.5_fewshot_bbh_lora.yaml"]
    fewshot.main(["train", *map(str, recipes), "--rounds", "1", "3", "--runs-dir", str(tmp_path), "--no-train",
                  "--set", "max_steps=7", "--set", "output_dir=" + str(tmp_path / "ckpt" / "{round}")])  # fmt: skip
    runs = json.loads((tmp_path / "fewshot_runs.json").read_text())["runs"]
    assert [(r["method"], r["task"], r["round"]) for r in runs] == [
        ("PMT", "bbh_date", 1), ("PMT", "bbh_date", 3), ("LoRA", "bbh_date", 1), ("LoRA", "bbh_date", 3),
    ]  # fmt: skip
    assert {r["model"] for r in runs} == {"Qwen2.5-3B-Instruct"}
    config = yaml.safe_load((tmp_path / "configs" / "Qwen2.5-3B-Instruct_LoRA_bbh_date_round3.yaml").read_text())
    assert config["dataset"] == "bbh_date_round3" and config["max_steps"] == 7 and config["lora_rank"] == 64
    assert config["output_dir"] == str(tmp_path / "ckpt" / "3")
    assert "MISSING" in capsys.readouterr().out  # --no-train says when there is nothing to evaluate


def test_recipe_without_a_round_is_refused(tmp_path, tiny_model, fewshot_data_dir):
    recipe = _recipe(tmp_path / "r.yaml", tiny_model, fewshot_data_dir, dataset="bbh_date_test")
    with pytest.raises(ValueError, match="must name rounds of one task"):
        fewshot.main(["train", str(recipe), "--runs-dir", str(tmp_path), "--no-train"])


@pytest.mark.parametrize(
    "dataset, task",
    [("bbh_date_round1", ("bbh_date", "")), ("bbh_date_round1,bbh_date_round2", ("bbh_date", "")),
     ("goemotions_round1_sample, goemotions_round2_sample", ("goemotions", "_sample"))],
)  # fmt: skip
def test_combined_rounds_name_their_task(dataset, task):
    assert fewshot_runs.round_task(dataset) == task


@pytest.mark.parametrize("dataset", ["bbh_date_round1,dbpedia_round2", "bbh_date_round1,bbh_date_round2_sample", ""])
def test_rounds_of_two_tasks_are_refused(dataset):
    with pytest.raises(ValueError, match="`dataset` must name rounds of one task"):
        fewshot_runs.round_task(dataset)


def test_growing_runs_combine_the_rounds_one_after_another(tmp_path, tiny_model, fewshot_data_dir):
    recipe = _recipe(tmp_path / "r.yaml", tiny_model, fewshot_data_dir, dataset="bbh_date_round1,bbh_date_round2")
    fewshot.main(["train", str(recipe), "--growing", "--rounds", "1", "2", "3", "--runs-dir", str(tmp_path),
                  "--no-train"])  # fmt: skip
    runs = json.loads((tmp_path / "fewshot_runs.json").read_text())["runs"]
    assert [(r["task"], r["protocol"], r["config"]["dataset"], r["train_examples"]) for r in runs] == [
        ("bbh_date", "growing", "bbh_date_round1", 6),
        ("bbh_date", "growing", "bbh_date_round1,bbh_date_round2", 12),
        ("bbh_date", "growing", "bbh_date_round1,bbh_date_round2,bbh_date_round3", 18),
    ]
    assert Path(runs[2]["output_dir"]).name == "rounds1-3"


def test_two_recipes_with_one_label_are_refused(tmp_path, tiny_model, fewshot_data_dir):
    first = _recipe(tmp_path / "a.yaml", tiny_model, fewshot_data_dir)
    second = _recipe(tmp_path / "b.yaml", tiny_model, fewshot_data_dir, learning_rate=1e-3)
    with pytest.raises(ValueError, match="different --method labels"):
        fewshot.main(["train", str(first), str(second), "--runs-dir", str(tmp_path), "--no-train"])
    assert not (tmp_path / "fewshot_runs.json").exists()


def test_predict_configs_keep_what_loading_the_model_needs(tmp_path):
    run_config = {"model_name_or_path": "m", "finetuning_type": "prefix", "disable_gradient_checkpointing": True,
                  "template": "qwen", "cutoff_len": 1024, "dataset_dir": "data", "learning_rate": 1e-3,
                  "prefix_num_virtual_tokens": 32, "dataset": "bbh_date_round1"}  # fmt: skip
    overrides = predict.parse_overrides(["per_device_eval_batch_size=2"])
    config = predict.predict_config(run_config, "bbh_date_test,banking77_ood", tmp_path, tmp_path / "ckpt",
                                    overrides=overrides)  # fmt: skip
    assert config["adapter_name_or_path"] == str(tmp_path / "ckpt") and config["disable_gradient_checkpointing"]
    assert config["do_predict"] and config["predict_with_generate"] and config["do_sample"] is False
    assert config["per_device_eval_batch_size"] == 2 and config["eval_dataset"] == "bbh_date_test,banking77_ood"
    assert not {"learning_rate", "prefix_num_virtual_tokens", "dataset"} & set(config)
    full = predict.predict_config({**run_config, "finetuning_type": "full"}, "x", tmp_path, tmp_path / "ckpt")
    assert full["model_name_or_path"] == str(tmp_path / "ckpt") and "adapter_name_or_path" not in full
    base = predict.predict_config(run_config, "x", tmp_path, None)  # no adapter: nothing is added to the model
    assert base["finetuning_type"] == "lora" and "adapter_name_or_path" not in base


def test_checkpoints_are_listed_by_step_and_the_final_save_replaces_its_twin(tmp_path):
    for folder in ("checkpoint-10", "checkpoint-5", "checkpoint-20", "checkpoint-x", "."):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "adapter_config.json").write_text("{}")
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 20}))
    found = fewshot_eval.checkpoints(tmp_path)
    assert [(name, step) for name, _, step in found] == [("checkpoint-5", 5), ("checkpoint-10", 10), ("final", 20)]


def _write_predictions(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.write_text("".join(json.dumps({"prompt": p, "predict": y, "label": g + "\n"}) + "\n" for p, y, g in rows))


def test_predictions_are_split_over_the_data_sets_and_checked(fewshot_data_dir, tmp_path):
    names = ["bbh_date_test", "banking77_ood"]
    expected = fewshot_eval.expected_records(names, str(fewshot_data_dir), 2)
    golds = [r["output"] for records, _ in expected for r in records]
    prompts = [user_text(r, c) for records, c in expected for r in records]
    prompts[1] = prompts[1][:-40]  # as if cutoff_len had cut the end of the question
    path = tmp_path / "generated_predictions.jsonl"
    _write_predictions(
        path, list(zip(prompts, [golds[0], "nonsense", golds[2].replace("_", " "), "x"], golds, strict=True))
    )
    scores = fewshot_eval.score_predictions(path, names, expected)
    assert scores["bbh_date_test"] == {"dataset": "bbh_date_test", "correct": 1, "total": 2, "accuracy": 50.0,
                                       "off_label": 1, "truncated": 1}  # fmt: skip
    assert scores["banking77_ood"]["correct"] == 1 and scores["banking77_ood"]["truncated"] == 0
    _write_predictions(path, list(zip(prompts, golds, golds[::-1], strict=True)))
    with pytest.raises(ValueError, match="do not line up"):
        fewshot_eval.score_predictions(path, names, expected)
    _write_predictions(path, list(zip(prompts, golds, golds, strict=True))[:3])
    with pytest.raises(ValueError, match="3 predictions, 4 records"):
        fewshot_eval.score_predictions(path, names, expected)


def test_eval_and_plot_through_llamafactory(tiny_model, adapters, fewshot_data_dir, tmp_path):
    """A trained PMT checkpoint and the ICL baseline, each predicted by llamafactory-cli once (IID + OOD)."""
    checkpoint = shutil.copytree(adapters["pmt"], tmp_path / "trained" / "round1")
    recipe = _recipe(tmp_path / "recipe.yaml", tiny_model, fewshot_data_dir)
    runs = tmp_path / "runs"
    fewshot.main(["train", str(recipe), "--rounds", "1", "--runs-dir", str(runs), "--no-train",
                  "--set", f"output_dir={checkpoint.parent}/round{{round}}"])  # fmt: skip
    evaluate = ["eval", "--runs-dir", str(runs), "--icl", "--max-samples", "3", "--max-new-tokens", "3",
                "--batch-size", "3", "--icl-cutoff-len", "2400", "--set", "preprocessing_num_workers=1"]  # fmt: skip
    fewshot.main(evaluate)

    results = json.loads((runs / "fewshot_results.json").read_text())
    rows = {row["method"]: row for row in results["evaluations"]}
    assert set(rows) == {"PMT", "ICL"} and rows["PMT"]["checkpoint"] == "final"
    for row in rows.values():
        assert row["iid"]["total"] == row["ood"]["total"] == 3
        assert row["iid"]["truncated"] == row["ood"]["truncated"] == 0
    assert "first line" in results["label_matching"]

    icl_rows = [json.loads(line) for line in Path(rows["ICL"]["predictions"]).read_text().splitlines()]
    demonstrations = json.loads((fewshot_data_dir / "fewshot" / "bbh_date_round1.json").read_text())
    assert all(demonstrations[-1]["input"] in row["prompt"] for row in icl_rows)  # the round, in context
    assert "my card" in icl_rows[-1]["prompt"] and icl_rows[0]["label"].strip() in fewshot_data.BBH_LABELS
    pmt_rows = [json.loads(line) for line in Path(rows["PMT"]["predictions"]).read_text().splitlines()]
    assert not any(demonstrations[-1]["input"] in row["prompt"] for row in pmt_rows)

    # Plant right answers (in label variants) and score again: the predictions are reused, not regenerated.
    golds = [row["label"].strip() for row in pmt_rows]
    pmt_rows[0]["predict"], pmt_rows[2]["predict"] = golds[0].lower() + ".", f"Answer: {golds[2]}"
    pmt_rows[3]["predict"] = golds[3].replace("_", " ") + "\nbecause the card is late"
    Path(rows["PMT"]["predictions"]).write_text("".join(json.dumps(row) + "\n" for row in pmt_rows))
    fewshot.main(evaluate)
    results = json.loads((runs / "fewshot_results.json").read_text())
    pmt = next(row for row in results["evaluations"] if row["method"] == "PMT")
    assert (pmt["iid"]["correct"], pmt["ood"]["correct"]) == (2, 1)
    summary = {s["method"]: s for s in results["summary"]}
    assert summary["PMT"]["iid_mean"] == pytest.approx(200 / 3) and summary["PMT"]["rounds"] == [1]

    fewshot.main(["plot", "--runs-dir", str(runs)])
    table = (runs / "fewshot_table.md").read_text()
    assert "| Dataset | tiny-qwen2: PMT | ICL |" in table and "| BigBench | **66.7** |" in table
    assert (runs / "pareto_bbh_date.png").read_bytes().startswith(b"\x89PNG")


def test_growing_data_trains_evaluates_and_draws_through_llamafactory(tiny_model, fewshot_data_dir, tmp_path):
    """Figures 5, 8, 9: rounds 1..k combined, trained and predicted by llamafactory-cli; Table 1 leaves them out."""
    recipe = _recipe(tmp_path / "pmt.yaml", tiny_model, fewshot_data_dir, max_steps=1)
    runs = tmp_path / "runs"
    fewshot.main(["train", str(recipe), "--growing", "--rounds", "2", "--runs-dir", str(runs)])  # rounds 1 and 2
    config = yaml.safe_load((runs / "configs" / "tiny-qwen2_PMT_bbh_date_rounds1-2.yaml").read_text())
    assert config["dataset"] == "bbh_date_round1,bbh_date_round2"
    fewshot.main(["eval", "--runs-dir", str(runs), "--checkpoints", "final", "--max-samples", "2",
                  "--max-new-tokens", "2", "--set", "preprocessing_num_workers=1"])  # fmt: skip
    results = json.loads((runs / "fewshot_results.json").read_text())
    assert [(r["protocol"], r["train_examples"], r["iid"]["total"]) for r in results["evaluations"]] == [
        ("growing", 12, 2)
    ]
    assert results["summary"] == []
    fewshot.main(["plot", "--runs-dir", str(runs)])
    assert (runs / "growth_bbh_date.png").read_bytes().startswith(b"\x89PNG")
    assert not (runs / "pareto_bbh_date.png").exists()


@pytest.mark.slow
def test_train_then_eval_every_checkpoint_of_pmt_and_prefix_tuning(tiny_model, fewshot_data_dir, tmp_path):
    pmt = _recipe(tmp_path / "pmt.yaml", tiny_model, fewshot_data_dir)
    prefix = _recipe(tmp_path / "prefix.yaml", tiny_model, fewshot_data_dir, finetuning_type="prefix",
                     prefix_num_virtual_tokens=4, disable_gradient_checkpointing=True)  # fmt: skip
    runs = tmp_path / "runs"
    fewshot.main(["train", str(pmt), str(prefix), "--rounds", "2", "--runs-dir", str(runs)])
    output_dir = runs / "tiny-qwen2" / "PMT" / "bbh_date" / "round2"
    assert (output_dir / "adapter_config.json").is_file() and (output_dir / "checkpoint-1").is_dir()
    config = yaml.safe_load((runs / "configs" / "tiny-qwen2_Prefix_bbh_date_round2.yaml").read_text())
    assert config["dataset"] == "bbh_date_round2" and config["finetuning_type"] == "prefix"
    fewshot.main(["eval", "--runs-dir", str(runs), "--max-samples", "2", "--max-new-tokens", "2"])
    results = json.loads((runs / "fewshot_results.json").read_text())
    assert [(r["method"], r["checkpoint"], r["step"]) for r in results["evaluations"]] == [
        ("PMT", "checkpoint-1", 1), ("PMT", "final", 2), ("Prefix", "checkpoint-1", 1), ("Prefix", "final", 2),
    ]  # fmt: skip
    fewshot.main(["plot", "--runs-dir", str(runs), "--output-dir", str(tmp_path / "report")])
    assert (tmp_path / "report" / "pareto_bbh_date.png").is_file()
    assert "| BigBench |" in (tmp_path / "report" / "fewshot_table.md").read_text()


@pytest.mark.parametrize("command, words", [("build", "--data-dir"), ("train", "--no-train"), ("eval", "--icl"),
                                            ("plot", "--output-dir")])  # fmt: skip
def test_every_command_documents_itself(command, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fewshot.main([command, "-h"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert words in text and "--runs-dir" in text or command == "build"
    if command == "eval":
        assert "first line" in text and "off_label" in text  # the label-matching rules are in the help
