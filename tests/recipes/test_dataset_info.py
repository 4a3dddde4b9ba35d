"""data/dataset_info.json: the hub registrations the recipes rely on, and their offline _sample twins."""

import json

import pytest
from recipe_helpers import DATASET_INFO, REPO

SOURCE_KEYS = {"hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name"}
HUB = sorted(name for name, entry in DATASET_INFO.items() if "hf_hub_url" in entry)
SAMPLES = sorted(name for name in DATASET_INFO if name.endswith("_sample"))
# Evaluation sets: their samples hold a few records, and AlpacaEval's also the fields model_outputs.json carries.
EVAL_SETS = ("amc23", "minerva_math", "aime24", "truthfulqa", "alpaca_eval")
EXTRA_FIELDS = {"alpaca_eval": {"generator", "dataset"}}
# LLaMA-Factory's alpaca columns when an entry maps none (DatasetAttr defaults).
ALPACA_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output"}


def test_hub_registrations():
    """The decisions of data/README.md, as LLaMA-Factory will read them."""
    hub = {name: {key: value for key, value in DATASET_INFO[name].items() if key != "columns"} for name in HUB}
    assert hub == {
        "magpie_ultra_10k": {"hf_hub_url": "argilla/magpie-ultra-v0.1", "num_samples": 10000},
        "ultrafeedback_10k": {
            "hf_hub_url": "llamafactory/ultrafeedback_binarized",
            "ranking": True,
            "num_samples": 10000,
        },
        "webinstruct_cft_4k": {"hf_hub_url": "TIGER-Lab/WebInstruct-CFT", "subset": "WebInstruct-CFT-4K"},
        "webinstruct_cft_10k": {
            "hf_hub_url": "TIGER-Lab/WebInstruct-CFT",
            "subset": "WebInstruct-CFT-50K",
            "num_samples": 10000,
        },
        "webinstruct_cft_50k": {"hf_hub_url": "TIGER-Lab/WebInstruct-CFT", "subset": "WebInstruct-CFT-50K"},
        # Evaluation sets: Table 3's benchmarks and Tables 9-10's TruthfulQA
        "amc23": {"hf_hub_url": "math-ai/amc23", "split": "test"},
        "minerva_math": {"hf_hub_url": "math-ai/minervamath", "split": "test"},
        "aime24": {"hf_hub_url": "HuggingFaceH4/aime_2024", "split": "train"},
        "truthfulqa": {"hf_hub_url": "truthfulqa/truthful_qa", "subset": "generation", "split": "validation"},
    }
    assert DATASET_INFO["magpie_ultra_10k"]["columns"] == {"prompt": "instruction", "response": "response"}
    assert DATASET_INFO["ultrafeedback_10k"]["columns"] == {
        "prompt": "instruction",
        "chosen": "chosen",
        "rejected": "rejected",
    }


@pytest.mark.parametrize("name", HUB)
def test_every_hub_dataset_has_a_sample_twin(name):
    assert f"{name}_sample" in DATASET_INFO


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_twin_has_the_schema_of_its_dataset(name):
    sample, original = DATASET_INFO[name], DATASET_INFO[name.removesuffix("_sample")]

    def without_source(entry):
        source = SOURCE_KEYS | {"subset", "split", "num_samples"}
        return {key: value for key, value in entry.items() if key not in source}

    assert without_source(sample) == without_source(original)
    rows = json.loads((REPO / "data" / sample["file_name"]).read_text())
    original_name = name.removesuffix("_sample")
    assert (4 <= len(rows) <= 12) if original_name in EVAL_SETS else (12 <= len(rows) <= 60), "a few rows"
    columns = sample.get("columns", ALPACA_DEFAULTS)
    expected = set(columns.values()) | EXTRA_FIELDS.get(original_name, set())
    assert all(set(row) == expected for row in rows), "every row holds exactly the mapped columns"
    assert all(isinstance(value, str) for row in rows for value in row.values())
    targets = [columns[key] for key in ("response", "chosen", "rejected") if key in columns]
    assert all(row[column].strip() for row in rows for column in targets)
    if sample.get("ranking"):
        assert all(row["chosen"] != row["rejected"] for row in rows)


# Written by prefixmemory-fewshot-data build, or fetched for evaluation as docs/evaluation.md says.
NOT_SHIPPED = ("fewshot/", "alpaca_eval/")


def test_local_files_exist_except_the_built_ones():
    for name, entry in DATASET_INFO.items():
        if "file_name" in entry and not entry["file_name"].startswith(NOT_SHIPPED):
            assert (REPO / "data" / entry["file_name"]).is_file(), name
