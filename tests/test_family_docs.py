"""The supported-families tables of README.md and docs/design.md are the rendering of the one table of families."""

from pathlib import Path

from family_table import design_table, readme_table

REPO = Path(__file__).resolve().parents[1]


def test_readme_table_is_rendered_from_the_family_table():
    assert readme_table() in (REPO / "README.md").read_text()


def test_design_table_is_rendered_from_the_family_table():
    assert design_table() in (REPO / "docs" / "design.md").read_text()
