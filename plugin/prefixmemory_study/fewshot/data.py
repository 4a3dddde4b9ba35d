"""Data of the few-shot classification study (paper section 6.1, appendix A.1), built from the hub into data/.

For BIG-Bench Hard date understanding, GoEmotions and DBpedia: five rounds of one training example per class and
the in-distribution (IID) test set; for Banking77: the out-of-distribution (OOD) test set, whose prompt lists all
77 intents. Every file holds alpaca records (instruction, input, output) and is registered in dataset_info.json.

    prefixmemory-fewshot-data build                 # downloads with datasets.load_dataset, writes data/fewshot/

Scoring is ``prefixmemory-fewshot eval`` (its one rule: prefixmemory_study.fewshot.scoring).

Choices the paper leaves open (data/README.md gives the reasons):
- The rounds are disjoint draws, so ``dataset: X_round1,X_round2`` is the two-per-class set of Figure 5's
  incremental rounds, and each round alone is one trial of Table 1.
- BIG-Bench Hard has only a 250-item test split: the items drawn for the rounds are left out of the test set.
- GoEmotions is multi-label: only its single-label comments are used, to train and to test.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import records

ROUNDS = 5
SEED = 42

BBH_LABELS = ("(A)", "(B)", "(C)", "(D)", "(E)", "(F)")
GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)  # fmt: skip
DBPEDIA_LABELS = (
    "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation", "Building",
    "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork",
)  # fmt: skip
# ClassLabel order of PolyAI/banking77 (alphabetical ignoring case; two names really are "Refund_..." and "...?").
BANKING77_LABELS = (
    "activate_my_card", "age_limit", "apple_pay_or_google_pay", "atm_support", "automatic_top_up",
    "balance_not_updated_after_bank_transfer", "balance_not_updated_after_cheque_or_cash_deposit",
    "beneficiary_not_allowed", "cancel_transfer", "card_about_to_expire", "card_acceptance", "card_arrival",
    "card_delivery_estimate", "card_linking", "card_not_working", "card_payment_fee_charged",
    "card_payment_not_recognised", "card_payment_wrong_exchange_rate", "card_swallowed", "cash_withdrawal_charge",
    "cash_withdrawal_not_recognised", "change_pin", "compromised_card", "contactless_not_working", "country_support",
    "declined_card_payment", "declined_cash_withdrawal", "declined_transfer", "direct_debit_payment_not_recognised",
    "disposable_card_limits", "edit_personal_details", "exchange_charge", "exchange_rate", "exchange_via_app",
    "extra_charge_on_statement", "failed_transfer", "fiat_currency_support", "get_disposable_virtual_card",
    "get_physical_card", "getting_spare_card", "getting_virtual_card", "lost_or_stolen_card", "lost_or_stolen_phone",
    "order_physical_card", "passcode_forgotten", "pending_card_payment", "pending_cash_withdrawal", "pending_top_up",
    "pending_transfer", "pin_blocked", "receiving_money", "Refund_not_showing_up", "request_refund",
    "reverted_card_payment?", "supported_cards_and_currencies", "terminate_account", "top_up_by_bank_transfer_charge",
    "top_up_by_card_charge", "top_up_by_cash_or_cheque", "top_up_failed", "top_up_limits", "top_up_reverted",
    "topping_up_by_card", "transaction_charged_twice", "transfer_fee_charged", "transfer_into_account",
    "transfer_not_received_by_recipient", "transfer_timing", "unable_to_verify_identity", "verify_my_identity",
    "verify_source_of_funds", "verify_top_up", "virtual_card_not_working", "visa_or_mastercard", "why_verify_identity",
    "wrong_amount_of_cash_received", "wrong_exchange_rate_for_cash_withdrawal",
)  # fmt: skip

# The paper does not publish its prompts. Each names the answer format and, where the labels are words, lists them.
BBH_INSTRUCTION = (
    "Answer the multiple-choice question about dates. Reply with the letter of the correct option in parentheses, "
    "for example (A)."
)
GOEMOTIONS_INSTRUCTION = (
    "Classify the emotion expressed in the Reddit comment. Reply with exactly one label from this list: "
    + ", ".join(GOEMOTIONS_LABELS)
    + "."
)
DBPEDIA_INSTRUCTION = (
    "Classify the Wikipedia article into its ontology class. Reply with exactly one class from this list: "
    + ", ".join(DBPEDIA_LABELS)
    + "."
)
BANKING77_INSTRUCTION = (
    "Classify the intent of the online-banking customer query. Reply with exactly one intent from this list: "
    + ", ".join(BANKING77_LABELS)
    + "."
)


def bbh_record(row: dict) -> dict:
    target = row["target"].strip()
    if target not in BBH_LABELS:
        raise ValueError(f"BIG-Bench Hard date target must be one of {', '.join(BBH_LABELS)}, got {target!r}.")
    return {"instruction": BBH_INSTRUCTION, "input": row["input"].strip(), "output": target}


def goemotions_record(row: dict) -> dict | None:
    """None for a comment with several labels."""
    if len(row["labels"]) != 1:
        return None
    label = GOEMOTIONS_LABELS[row["labels"][0]]
    return {"instruction": GOEMOTIONS_INSTRUCTION, "input": row["text"].strip(), "output": label}


def dbpedia_record(row: dict) -> dict:
    text = f"Title: {row['title'].strip()}\nArticle: {row['content'].strip()}"
    return {"instruction": DBPEDIA_INSTRUCTION, "input": text, "output": DBPEDIA_LABELS[row["label"]]}


def banking77_record(row: dict) -> dict:
    label = BANKING77_LABELS[row["label"]]
    return {"instruction": BANKING77_INSTRUCTION, "input": row["text"].strip(), "output": label}


@dataclass(frozen=True)
class Source:
    """One split of a hub dataset; ``label_column``/``labels`` let fetch() check the ClassLabel names."""

    repo: str
    config: str | None
    split: str
    label_column: str | None = None
    labels: tuple[str, ...] = ()
    # Tried in order when the main branch cannot be loaded (a loading script, refused by datasets>=4).
    revisions: tuple[str | None, ...] = (None,)


SOURCES = {
    # lukaemon/bbh is Parquet; maveriq/bigbenchhard is a loading script.
    "bbh_date": Source("lukaemon/bbh", "date_understanding", "test"),
    "goemotions_train": Source(
        "google-research-datasets/go_emotions", "simplified", "train", "labels", GOEMOTIONS_LABELS
    ),
    "goemotions_test": Source(
        "google-research-datasets/go_emotions", "simplified", "test", "labels", GOEMOTIONS_LABELS
    ),
    "dbpedia_train": Source("fancyzhx/dbpedia_14", "dbpedia_14", "train", "label", DBPEDIA_LABELS),
    "dbpedia_test": Source("fancyzhx/dbpedia_14", "dbpedia_14", "test", "label", DBPEDIA_LABELS),
    "banking77_test": Source(
        "PolyAI/banking77", None, "test", "label", BANKING77_LABELS, revisions=(None, "refs/convert/parquet")
    ),
}


def fetch(source: Source) -> Iterable[dict]:
    """Rows of a hub split; raises if its ClassLabel names differ from the ones the prompts list."""
    from datasets import ClassLabel, load_dataset

    errors = []
    for revision in source.revisions:
        try:
            dataset = load_dataset(source.repo, source.config, split=source.split, revision=revision)
            break
        except Exception as err:  # noqa: BLE001 - the next revision may load; all errors are reported below
            errors.append(f"revision {revision or 'main'}: {err}")
    else:
        raise RuntimeError(f"Cannot load {source.repo} ({source.split}):\n" + "\n".join(errors))
    if source.label_column:
        feature = dataset.features[source.label_column]
        feature = getattr(feature, "feature", feature)  # GoEmotions: a list of ClassLabel
        if isinstance(feature, ClassLabel) and tuple(feature.names) != source.labels:
            raise ValueError(f"{source.repo}: label names changed; expected {source.labels}, got {feature.names}.")
    return dataset


def draw_rounds(records: list[dict], classes: tuple[str, ...], rounds: int, rng: random.Random):
    """``rounds`` disjoint sets of one record per class, and the indices of every record drawn."""
    by_class = defaultdict(list)
    for index, record in enumerate(records):
        by_class[record["output"]].append(index)
    picks = {}
    for label in classes:
        if len(by_class[label]) < rounds:
            raise ValueError(f"class {label!r} has {len(by_class[label])} examples, {rounds} rounds need {rounds}.")
        picks[label] = rng.sample(by_class[label], rounds)
    draws = [[records[picks[label][k]] for label in classes] for k in range(rounds)]
    return draws, {index for chosen in picks.values() for index in chosen}


def build_sets(
    load: Callable[[Source], Iterable[dict]], seed: int = SEED, rounds: int = ROUNDS
) -> dict[str, list[dict]]:
    """name -> records, for every file of the study; ``load`` reads one Source (fetch, or rows in tests)."""
    sets = {}

    bbh = [bbh_record(row) for row in load(SOURCES["bbh_date"])]
    draws, used = draw_rounds(bbh, BBH_LABELS, rounds, random.Random(f"bbh_date:{seed}"))
    sets |= {f"bbh_date_round{k + 1}": draw for k, draw in enumerate(draws)}
    sets["bbh_date_test"] = [record for index, record in enumerate(bbh) if index not in used]

    tasks = (("goemotions", goemotions_record, GOEMOTIONS_LABELS), ("dbpedia", dbpedia_record, DBPEDIA_LABELS))
    for task, convert, labels in tasks:
        train = [r for r in map(convert, load(SOURCES[f"{task}_train"])) if r is not None]
        draws, _ = draw_rounds(train, labels, rounds, random.Random(f"{task}:{seed}"))
        sets |= {f"{task}_round{k + 1}": draw for k, draw in enumerate(draws)}
        sets[f"{task}_test"] = [r for r in map(convert, load(SOURCES[f"{task}_test"])) if r is not None]

    sets["banking77_ood"] = [banking77_record(row) for row in load(SOURCES["banking77_test"])]
    return sets


def write_sets(sets: dict[str, list[dict]], data_dir: str | Path, folder: str = "fewshot") -> dict[str, dict]:
    """Write data_dir/folder/<name>.json and register each in data_dir/dataset_info.json; returns the entries."""
    data_dir = Path(data_dir)
    (data_dir / folder).mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, rows in sets.items():
        (data_dir / folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        entries[name] = {"file_name": f"{folder}/{name}.json"}  # alpaca defaults: instruction, input, output
    records.register(data_dir, entries)
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="download the four datasets and write the study's files")
    build.add_argument("--data-dir", default="data", help="folder holding dataset_info.json (default: data)")
    build.add_argument("--seed", type=int, default=SEED, help=f"sampling seed (default: {SEED})")
    build.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per task (default: {ROUNDS})")
    args = parser.parse_args(argv)
    entries = write_sets(build_sets(fetch, args.seed, args.rounds), args.data_dir)
    print(f"wrote {len(entries)} datasets to {Path(args.data_dir) / 'fewshot'}: {', '.join(entries)}")


if __name__ == "__main__":
    main()
