"""The miniature study's generated tasks: deterministic, balanced, disjoint splits, growing rounds, right answers."""

import datetime as dt
import re
import statistics
from collections import Counter

import pytest

from prefixmemory_study.miniature import report
from prefixmemory_study.miniature.tasks import EMOTION_CUES, EMOTION_FILLERS, TASKS, TOPIC_THINGS

DAYS = {"tomorrow": 1, "yesterday": -1, "one week from today": 7, "one week ago": -7, "10 days ago": -10,
        "24 hours later": 1}  # fmt: skip


@pytest.mark.parametrize("name", TASKS)
def test_rows_are_deterministic_and_balanced(name):
    task = TASKS[name]
    rows = task.rows("train", 3, seed=5)
    assert rows == task.rows("train", 3, seed=5)
    assert rows != task.rows("train", 3, seed=6)
    assert Counter(row["output"] for row in rows) == {label: 3 for label in task.labels}
    assert all(row["instruction"] == task.instruction for row in rows)


@pytest.mark.parametrize("name", TASKS)
def test_a_round_holds_the_rounds_before_it(name):
    """The paper's incremental rounds: round 3's examples include round 1's."""
    task = TASKS[name]
    first, third = task.rows("train", 1, seed=2), task.rows("train", 3, seed=2)
    assert all(row in third for row in first)


def test_topic_and_emotion_splits_share_no_thing_or_cue():
    def used(task, split, vocabulary):
        texts = [row["input"] for row in TASKS[task].rows(split, 20, seed=0)]
        return {item for item in vocabulary if any(re.search(rf"(?<!\w){re.escape(item)}(?!\w)", t) for t in texts)}

    things = [thing for group in TOPIC_THINGS.values() for thing in group]
    cues = [cue for group in EMOTION_CUES.values() for cue in group]
    for task, vocabulary in (("topic", things), ("emotion", cues)):
        train, validation, test = (used(task, split, vocabulary) for split in ("train", "validation", "test"))
        assert train and validation and test
        assert not (train & test) and not (train & validation) and not (validation & test)


def test_date_answers_by_independent_arithmetic():
    for row in TASKS["date"].rows("test", 10, seed=0):
        today = dt.datetime.strptime(re.search(r"Today is (\S+)\.", row["input"]).group(1), "%m/%d/%Y").date()
        phrase = re.search(r"What is the date (.+) in MM/DD/YYYY", row["input"]).group(1)
        options = dict(re.findall(r"^(\([A-F]\)) (\S+)$", row["input"], re.MULTILINE))
        assert len(set(options.values())) == 6
        answer = dt.datetime.strptime(options[row["output"]], "%m/%d/%Y").date()
        if phrase in DAYS:
            assert answer - today == dt.timedelta(days=DAYS[phrase])
        elif phrase == "one year ago":
            assert (answer.year, answer.month, answer.day) == (today.year - 1, today.month, today.day)
        else:
            assert phrase == "one month from today"
            assert (answer.year * 12 + answer.month) - (today.year * 12 + today.month) == 1
            assert answer.day == today.day


def test_fillers_set_the_emotion_input_length():
    task = TASKS["emotion"]
    for count in (0, 4, 16):
        for row in task.rows("test", 2, seed=0, fillers=count):
            fillers = sum(row["input"].count(filler) for filler in EMOTION_FILLERS)
            assert fillers == count


def test_report_mean_and_spread_are_the_sample_statistics():
    values = [50.0, 62.5, 75.0]
    assert report.mean_spread(values) == pytest.approx((statistics.mean(values), statistics.stdev(values)))
    results = [{"task": "topic", "method": "pmt-elu", "round": 1, "seed": s, "lr": 1e-4, "trainable": 10,
                "accuracy": v} for s, v in enumerate(values)]  # fmt: skip
    table = report.accuracy_table(results)
    assert "| PMT (elu) | 10 | 0.0001 | 62.5 ± 12.5 | 62.5 |" in table
