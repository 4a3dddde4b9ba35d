"""The docs' words and the facts they state: the rules of docs_prose.py, and facts that have a source elsewhere."""

import re
import tomllib

import pytest
import yaml
from docs_check import DOCS, REPO
from docs_prose import (
    GLOSSARY,
    JARGON,
    check_jargon,
    check_prose,
    check_test_counts,
    check_variables,
    check_version_claims,
    glossary_terms,
)

IDS = [str(path.relative_to(REPO)) for path in DOCS]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_prose_rules(path):
    errors = check_prose(path)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    "check, text",
    [
        (check_variables, "| Table 1 | `prefixmemory-fewshot train recipes/$R_{pmt,lora}.yaml` |"),
        (check_variables, "```bash\nfor M in pmt lora; do llamafactory-cli train recipes/x_$METHOD.yaml; done\n```"),
        (check_test_counts, "`pytest tests/reliability` (27 tests): 4 min 58 s"),
        (check_version_claims, "PEFT's prefix-tuning works with transformers 5.6 on Qwen2"),
        (check_jargon, "PMT costs 1.05x the frozen floor. See the [floor](docs/glossary.md#floor)."),
    ],
)
def test_each_kind_of_mistake_is_caught(check, text):
    assert check(text)


def test_right_words_pass():
    assert not check_variables("```bash\nfor R in a b; do prefixmemory-fewshot train recipes/${R}_pmt.yaml; done\n```")
    assert not check_test_counts("24 test rows per task; the ZeRO-3 tests")
    assert not check_version_claims("works with transformers 5.5.4 on Qwen2")
    assert not check_jargon("the frozen [floor](docs/glossary.md#floor), then the floor again")


def test_every_jargon_word_has_a_glossary_entry():
    assert {term.lower() for term in JARGON} <= glossary_terms(), f"add entries to {GLOSSARY}"


def test_license_and_citation_match_the_project():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text()[:200]
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["license"] == PYPROJECT["project"]["license"]
    arxiv = re.search(r"arxiv\.org/abs/(\d{4}\.\d{5})", (REPO / "README.md").read_text()).group(1)
    assert citation["preferred-citation"]["identifiers"][0]["value"] == f"arXiv:{arxiv}"


def _table(path, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading``, cells stripped."""
    lines = path.read_text().split(heading, 1)[1].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[2:]


def test_requirements_table_states_pyproject_ranges():
    declared = {}
    for requirement in (
        PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["deepspeed"]
    ):
        name, spec = re.match(r"([A-Za-z0-9_-]+)(.*)", requirement.split(";")[0]).groups()
        declared[name] = spec.strip()
    rows = _table(REPO / "docs" / "requirements.md", "## Software")
    stated = {row[0]: row[1].split("`")[1] for row in rows if row[1].startswith("`")}
    assert stated.pop("Python") == PYPROJECT["project"]["requires-python"]
    assert stated == {name: declared[name] for name in stated}, "docs/requirements.md disagrees with pyproject.toml"
    assert set(stated) >= {"llamafactory", "transformers", "peft", "trl", "deepspeed"}


def test_hardware_table_matches_the_recipes():
    rows = _table(REPO / "docs" / "requirements.md", "## Hardware per recipe")
    checked = 0
    for row in rows:
        pattern = row[0].split("`")[1]
        for recipe in sorted((REPO / "recipes").glob(pattern + ".yaml")):
            text = recipe.read_text()
            planned = re.search(r"^# Hardware: (\d+) GPUs?", text, re.M)
            assert row[1].split()[0] == (planned.group(1) if planned else "0"), recipe
            stage = re.search(r"^deepspeed: recipes/deepspeed/ds_z(\d)", text, re.M)
            if "ZeRO" in row[3] and "offload" not in row[3]:
                assert stage and f"ZeRO-{stage.group(1)}" in row[3], recipe
            elif row[3] == "none":
                assert stage is None, recipe
            checked += 1
    assert checked >= 12


def test_readme_states_what_the_tests_cost():
    text = (REPO / "README.md").read_text()
    after = text.split('python -m pytest -m "not slow"\n```', 1)[1].split("\n\n")[1]
    assert re.search(r"\d+-\d+ minutes", after) and re.search(r"\d+ GB", after), after
