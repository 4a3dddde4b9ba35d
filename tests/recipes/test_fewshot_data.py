"""The few-shot data builder on small in-memory rows: no downloads."""

import json
import random
from collections import Counter

import pytest
from recipe_helpers import DATASET_INFO, REPO

from prefixmemory_study.fewshot import data as fd

PER_CLASS = 7  # enough for 5 rounds, and then some left for BIG-Bench Hard's test items


def _bbh_rows():
    rows = []
    for k in range(PER_CLASS):
        for index, label in enumerate(fd.BBH_LABELS):
            options = 5 if k % 3 == 0 and label != "(F)" else 6  # BBH mixes 5- and 6-option items
            lines = "\n".join(f"({chr(65 + j)}) 0{j + 1}/1{k}/2001" for j in range(options))
            rows.append({"input": f"Item {k}-{index}: which date?\nOptions:\n{lines}", "target": label})
    return rows


def _rows_by_source():
    """Raw rows in each hub dataset's own schema, keyed by the Source they stand in for."""
    emotions = range(len(fd.GOEMOTIONS_LABELS))
    goemotions_train = [
        {"text": f"comment {k} about {i}", "labels": [i], "id": f"{i}-{k}"} for i in emotions for k in range(PER_CLASS)
    ]
    goemotions_train += [{"text": f"mixed {i}", "labels": [i, (i + 1) % 28], "id": f"m{i}"} for i in emotions]
    dbpedia = [
        {"label": i, "title": f"Entity {i}-{k}", "content": f" An article about entity {i}-{k}. "}
        for i in range(len(fd.DBPEDIA_LABELS))
        for k in range(PER_CLASS)
    ]
    return {
        fd.SOURCES["bbh_date"]: _bbh_rows(),
        fd.SOURCES["goemotions_train"]: goemotions_train,
        fd.SOURCES["goemotions_test"]: [
            {"text": "single", "labels": [3], "id": "t1"},
            {"text": "several", "labels": [3, 27], "id": "t2"},
        ],
        fd.SOURCES["dbpedia_train"]: dbpedia,
        fd.SOURCES["dbpedia_test"]: dbpedia[:5],
        fd.SOURCES["banking77_test"]: [{"text": f"query {i} ", "label": i} for i in range(77)],
    }


def load(source):
    return _rows_by_source()[source]


@pytest.fixture(scope="module")
def sets():
    return fd.build_sets(load, seed=42, rounds=5)


def test_builds_every_registered_dataset(sets):
    registered = {name for name, entry in DATASET_INFO.items() if entry.get("file_name", "").startswith("fewshot/")}
    assert set(sets) == registered
    assert all(DATASET_INFO[name] == {"file_name": f"fewshot/{name}.json"} for name in sets)


@pytest.mark.parametrize(
    "task, labels", [("bbh_date", fd.BBH_LABELS), ("goemotions", fd.GOEMOTIONS_LABELS), ("dbpedia", fd.DBPEDIA_LABELS)]
)
def test_rounds_hold_one_example_per_class_and_are_disjoint(sets, task, labels):
    rounds = [sets[f"{task}_round{k}"] for k in range(1, 6)]
    for records in rounds:
        assert sorted(record["output"] for record in records) == sorted(labels)
        assert all(set(record) == {"instruction", "input", "output"} for record in records)
    inputs = [record["input"] for records in rounds for record in records]
    assert len(inputs) == len(set(inputs)) == 5 * len(labels)


def test_bbh_test_set_is_what_the_rounds_left(sets):
    drawn = {record["input"] for k in range(1, 6) for record in sets[f"bbh_date_round{k}"]}
    test = [record["input"] for record in sets["bbh_date_test"]]
    assert len(test) == 6 * PER_CLASS - 30
    assert not drawn & set(test)
    assert drawn | set(test) == {row["input"] for row in _bbh_rows()}


def test_goemotions_keeps_only_single_label_comments(sets):
    train_inputs = {record["input"] for k in range(1, 6) for record in sets[f"goemotions_round{k}"]}
    assert not any(text.startswith("mixed") for text in train_inputs)
    assert sets["goemotions_test"] == [
        {"instruction": fd.GOEMOTIONS_INSTRUCTION, "input": "single", "output": "annoyance"}
    ]


def test_banking77_prompt_lists_all_intents(sets):
    ood = sets["banking77_ood"]
    assert [record["output"] for record in ood] == list(fd.BANKING77_LABELS)
    assert ood[0] == {"instruction": fd.BANKING77_INSTRUCTION, "input": "query 0", "output": "activate_my_card"}
    assert all(
        f" {label}," in fd.BANKING77_INSTRUCTION or fd.BANKING77_INSTRUCTION.endswith(f" {label}.")
        for label in fd.BANKING77_LABELS
    )
    assert len(fd.BANKING77_LABELS) == len(set(fd.BANKING77_LABELS)) == 77


def test_dbpedia_record_keeps_title_and_article():
    record = fd.dbpedia_record({"label": 9, "title": "Azure goby ", "content": " A fish. "})
    assert record == {
        "instruction": fd.DBPEDIA_INSTRUCTION,
        "input": "Title: Azure goby\nArticle: A fish.",
        "output": "Animal",
    }


def test_seed_fixes_the_draw(sets):
    assert fd.build_sets(load, seed=42, rounds=5) == sets
    assert fd.build_sets(load, seed=7, rounds=5)["dbpedia_round1"] != sets["dbpedia_round1"]


def test_too_few_examples_of_a_class_is_an_error():
    records = [{"output": "a"}] * 5 + [{"output": "b"}] * 4
    with pytest.raises(ValueError, match="'b' has 4 examples"):
        fd.draw_rounds(records, ("a", "b"), 5, random.Random(0))


def test_write_sets_registers_and_keeps_other_entries(tmp_path, sets):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"zeta": {"file_name": "z.json"}, "bbh_date_round1": {}}))
    entries = fd.write_sets(sets, tmp_path)
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert list(info)[:2] == ["zeta", "bbh_date_round1"] and info["zeta"] == {"file_name": "z.json"}
    assert all(info[name] == entry for name, entry in entries.items())
    for name, records in sets.items():
        assert json.loads((tmp_path / "fewshot" / f"{name}.json").read_text()) == records
    before = (tmp_path / "dataset_info.json").read_text()
    fd.write_sets(sets, tmp_path)
    assert (tmp_path / "dataset_info.json").read_text() == before


def test_build_command_writes_the_study(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fd, "fetch", load)
    fd.main(["build", "--data-dir", str(tmp_path), "--seed", "3"])
    assert "wrote 19 datasets" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "fewshot" / "goemotions_round5.json").read_text())) == 28


def test_fetch_falls_back_to_the_parquet_branch_and_checks_label_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(fd.BANKING77_LABELS))}
    )
    table = datasets.Dataset.from_dict({"text": ["hi"], "label": [3]}, features=features)
    calls = []

    def fake_load_dataset(repo, config, split, revision):
        calls.append(revision)
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported")
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(fd.fetch(fd.SOURCES["banking77_test"])) == [{"text": "hi", "label": 3}]
    assert calls == [None, "refs/convert/parquet"]

    renamed = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=[f"x{i}" for i in range(77)])}
    )
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: table.cast(renamed))
    with pytest.raises(ValueError, match="label names changed"):
        fd.fetch(fd.SOURCES["banking77_test"])


def test_the_data_builder_has_no_scoring_command_of_its_own():
    """Scoring is prefixmemory-fewshot eval's, under the one rule of fewshot.scoring."""
    with pytest.raises(SystemExit):
        fd.main(["score", "generated_predictions.jsonl"])


@pytest.mark.parametrize(
    "name, instruction, labels",
    [
        ("bbh_date_round1_sample", fd.BBH_INSTRUCTION, fd.BBH_LABELS),
        ("goemotions_round1_sample", fd.GOEMOTIONS_INSTRUCTION, fd.GOEMOTIONS_LABELS),
        ("dbpedia_round1_sample", fd.DBPEDIA_INSTRUCTION, fd.DBPEDIA_LABELS),
    ],
)
def test_committed_samples_use_the_builders_prompts(name, instruction, labels):
    rows = json.loads((REPO / "data" / DATASET_INFO[name]["file_name"]).read_text())
    assert all(row["instruction"] == instruction and row["output"] in labels for row in rows)
    assert set(Counter(row["output"] for row in rows)) == set(labels), "every class appears"
