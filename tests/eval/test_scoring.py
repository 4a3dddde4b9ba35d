"""Label matching of the few-shot study: exact label after normalisation, with its variants, extra text and ties."""

import pytest

from prefixmemory_study.fewshot import data as fewshot_data
from prefixmemory_study.fewshot import scoring

BBH = fewshot_data.BBH_LABELS
BANKING = fewshot_data.BANKING77_LABELS
DBPEDIA = fewshot_data.DBPEDIA_LABELS


@pytest.mark.parametrize(
    "prediction, gold, labels",
    [
        ("(A)", "(A)", BBH),
        ("(a)", "(A)", BBH),
        ("  (B).  ", "(B)", BBH),
        ("B", "(B)", BBH),  # a bare option letter
        ("C)", "(C)", BBH),
        ("Answer: (D)", "(D)", BBH),
        ("Company", "Company", DBPEDIA),
        ("company.", "Company", DBPEDIA),
        ("**Company**", "Company", DBPEDIA),
        ('"Company"', "Company", DBPEDIA),
        ("`Company`", "Company", DBPEDIA),
        ("Company\nThe article describes a firm.", "Company", DBPEDIA),  # only the first line counts
        ("\n\nCompany", "Company", DBPEDIA),  # the first non-empty line
        ("card arrival", "card_arrival", BANKING),
        ("Card-Arrival", "card_arrival", BANKING),
        ("reverted_card_payment?", "reverted_card_payment?", BANKING),
        ("refund not showing up", "Refund_not_showing_up", BANKING),
    ],
)
def test_label_variants_are_correct(prediction, gold, labels):
    assert scoring.score([prediction], [gold], labels)["correct"] == 1
    assert scoring.match(prediction, labels) == gold


@pytest.mark.parametrize(
    "prediction, gold, labels",
    [
        ("(B)", "(A)", BBH),
        ("A", "(B)", BBH),
        ("(A) 03/08/2024", "(A)", BBH),  # extra text on the answer line
        ("Company, because it makes valves", "Company", DBPEDIA),
        ("Company or Artist", "Company", DBPEDIA),  # naming two labels is not a tie broken in our favour
        ("The answer is Company", "Company", DBPEDIA),  # no substring search
        ("Companies", "Company", DBPEDIA),
        ("card", "card_arrival", BANKING),
        ("", "Company", DBPEDIA),
    ],
)
def test_extra_text_and_wrong_labels_are_wrong(prediction, gold, labels):
    assert scoring.score([prediction], [gold], labels)["correct"] == 0


def test_bare_letters_only_count_for_option_label_sets():
    assert scoring.score(["a"], ["a"], ["a", "b"])["correct"] == 1  # plain labels: "a" is just "a"
    assert scoring.match("a", ["apple", "banana"]) is None
    assert scoring.match("a", BBH) == "(A)"


def test_first_line_case_and_final_periods():
    """The edge cases of the first-line step, each scored as a whole file of predictions would be."""
    predictions = ["(B)", " Joy.\nbecause ...", "(C) 03/08/2024", "", "ANGER", "card_arrival...", "neutral"]
    golds = ["(B)", "joy", "(C)", "neutral", "anger", "card_arrival", "joy"]
    correct = [scoring.score([p], [g])["correct"] for p, g in zip(predictions, golds, strict=True)]
    assert correct == [1, 1, 0, 0, 1, 1, 0]


def test_off_label_predictions_are_counted():
    result = scoring.score(["(A)", "(B)", "maybe (C)", "Z"], ["(A)", "(A)", "(C)", "(D)"], BBH)
    assert result == {"correct": 1, "total": 4, "accuracy": 25.0, "off_label": 2}


def test_label_sets_whose_labels_collide_are_refused():
    with pytest.raises(ValueError, match="same after normalisation"):
        scoring.label_index(["card_arrival", "Card Arrival"])
    for labels in (BBH, fewshot_data.GOEMOTIONS_LABELS, DBPEDIA, BANKING):  # the study's sets never collide
        assert len(scoring.label_index(labels)) == len(labels)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        scoring.score(["a", "b"], ["a"])
