"""prefixmemory-math: math-verify grading on known right and wrong answers, Table 3's layout, a real predict run."""

import json
from pathlib import Path

import pytest

from prefixmemory_study import math_eval

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("So the probability is $\\boxed{\\frac{1}{2}}$.", "0.5"),  # a \boxed{} fraction vs a decimal
        ("The answer is $\\boxed{0.5}$", "\\frac{1}{2}"),
        ("$\\boxed{2\\sqrt{2}}$", "\\sqrt{8}"),  # equivalent radicals
        ("Hence the diagonal is $\\boxed{\\sqrt{113}}$.", "\\sqrt{113}"),
        ("\\boxed{\\dfrac{3}{28}}", "\\frac{3}{28}"),
        ("Final answer: 3/4", "\\frac34"),  # no box: the last expression
        ("We get $x^2+2x+1$, so \\boxed{x^2+2x+1}", "(x+1)^2"),  # expanded vs factored
        ("\\boxed{1.5 \\times 10^{-3}}", "0.0015"),
        ("\\boxed{27}", "27"),
        ("The remainder is $\\boxed{1}$.", "The remainder is $\\boxed{1}$."),  # a reference given as a solution
    ],
)
def test_equivalent_answers_are_right(prediction, reference):
    assert math_eval.is_correct(prediction, reference)


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("\\boxed{26.9}", "27"),  # close, but not equal
        ("\\boxed{28}", "27"),
        ("\\boxed{0.333}", "\\frac{1}{3}"),  # a rounded fraction is not the fraction
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{3}"),
        ("\\boxed{2\\sqrt{3}}", "\\sqrt{8}"),
        ("I am not sure.", "5"),  # no answer at all
        ("", "5"),
    ],
)
def test_wrong_and_close_answers_are_wrong(prediction, reference):
    assert not math_eval.is_correct(prediction, reference)


def _predictions(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": "q", "predict": p, "label": g}) + "\n" for p, g in rows))
    return path


def test_a_predictions_file_is_graded_row_by_row(tmp_path):
    path = _predictions(
        tmp_path / "generated_predictions.jsonl",
        [("\\boxed{\\frac12}", "0.5"), ("\\boxed{26.9}", "27"), ("no idea", "3"), ("\\boxed{3}", "3")],
    )
    assert math_eval.grade_file(path) == {"correct": 2, "total": 4, "accuracy": 50.0, "unparsed": 1}
    path.write_text('{"predict": "1"}\n')
    with pytest.raises(ValueError, match="expected the keys prompt, predict, label"):
        math_eval.grade_file(path)


def test_table_3_layout_with_the_gain_over_lora(tmp_path):
    right, wrong = ("\\boxed{1}", "1"), ("\\boxed{2}", "1")
    for method, size, benchmark, rows in [
        ("LoRA", "10K", "amc23", [right, wrong]), ("PMT", "10K", "amc23", [right, right]),
        ("LoRA", "4K", "amc23", [right, right]), ("PMT", "4K", "amc23", [right, wrong]),
        ("LoRA", "4K", "aime24", [wrong, wrong, wrong, right]),
    ]:  # fmt: skip
        _predictions(tmp_path / method / size / benchmark / "generated_predictions.jsonl", rows)
    math_eval.main(["grade", "--runs-dir", str(tmp_path)])
    lines = (tmp_path / "table3.md").read_text().splitlines()
    assert lines[2] == "| Training samples | AMC23: LoRA | AMC23: PMT | AIME24: LoRA | AIME24: PMT |"
    assert lines[4] == "| 4K | **100.0** | 50.0 (-50.0) | 25.0 | – |"  # sizes by value: 4K before 10K
    assert lines[5] == "| 10K | 50.0 | **100.0** (+50.0) | – | – |"
    results = json.loads((tmp_path / "math_results.json").read_text())["results"]
    assert len(results) == 5 and "math-verify" in json.loads((tmp_path / "math_results.json").read_text())["grader"]


def test_predict_and_grade_through_llamafactory(tiny_model, adapters, tmp_path, monkeypatch):
    """generated_predictions.jsonl written by a real do_predict run, graded; then right answers planted."""
    monkeypatch.chdir(REPO)  # the recipe's dataset_dir: data, as for a user
    runs = tmp_path / "math"
    math_eval.main(["predict", "recipes/qwen2.5_math_cft_pmt.yaml", "--adapter", str(adapters["pmt"]),
                    "--method", "PMT", "--size", "4K", "--benchmarks", "amc23", "--dataset-suffix", "_sample",
                    "--runs-dir", str(runs), "--max-samples", "3", "--max-new-tokens", "4", "--batch-size", "3",
                    "--set", f"model_name_or_path={tiny_model}", "--set", "preprocessing_num_workers=1",
                    "--set", "bf16=false"])  # fmt: skip
    path = runs / "PMT" / "4K" / "amc23" / "generated_predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    samples = json.loads((REPO / "data" / "amc23_sample.json").read_text())
    assert [row["label"].strip() for row in rows] == [s["answer"] for s in samples[:3]]
    assert math_eval.MATH_SYSTEM in rows[0]["prompt"] and samples[0]["question"] in rows[0]["prompt"]
    config = (runs / "PMT" / "4K" / "amc23" / "predict.yaml").read_text()
    assert str(adapters["pmt"]) in config and "do_predict: true" in config

    rows[0]["predict"] = f"... so $a^2+b^2 = \\boxed{{{rows[0]['label'].strip()}}}$"
    rows[1]["predict"] = "The probability is \\boxed{\\frac{6}{56}}"  # 3/28, unreduced
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    math_eval.main(["grade", "--runs-dir", str(runs)])
    result = json.loads((runs / "math_results.json").read_text())["results"][0]
    assert (result["method"], result["size"], result["benchmark"], result["correct"]) == ("PMT", "4K", "amc23", 2)
