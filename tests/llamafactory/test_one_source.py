"""One source for each fact: the pmt_* keys are PrefixMemoryConfig's options, and nothing lists them again."""

import ast
from dataclasses import fields
from pathlib import Path

from prefixmemory.config import options
from prefixmemory_patches.llamafactory.bends.webui import PMT_INPUTS, PMT_LOCALES
from prefixmemory_patches.llamafactory.options import PMT_KEYS, PrefixMemoryArguments, keys_table

REPO = Path(__file__).resolve().parents[2]
NAMES = {option.name for option in options()}
KEYS = {f"pmt_{name}" for name in NAMES}


def test_the_options_are_the_four_the_paper_and_users_set():
    assert [option.name for option in options()] == ["feature_map", "layers", "feature_dim", "memory_bias"]


def test_every_consumer_takes_the_keys_from_the_config():
    arguments = {f.name: f for f in fields(PrefixMemoryArguments)}
    assert set(arguments) == set(PMT_KEYS) == KEYS == set(PMT_INPUTS)
    for option in options():
        assert arguments[f"pmt_{option.name}"].default == option.default
        assert arguments[f"pmt_{option.name}"].metadata["help"] == option.metadata["help"]
    assert set(PMT_LOCALES) == KEYS | {"pmt_tab"}  # translations, one per key: checked, not a second source


def test_v1_params_take_every_option(monkeypatch):
    from prefixmemory_patches.llamafactory.bends.v1 import _params_class

    params = {f.name for f in fields(_params_class())}
    assert params == NAMES | {"name", "adapter_name_or_path"}  # memory_bias included


def test_readme_table_is_rendered_from_the_options():
    assert keys_table() in (REPO / "README.md").read_text()


def _literals_listing_the_keys(path: Path) -> list[int]:
    """Lines of list/tuple/set literals naming two or more options or pmt_* keys, or dicts keyed by pmt_* keys."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            items, names = node.keys, KEYS  # a dict keyed by option names is data (the vLLM entry), not a list
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items, names = node.elts, NAMES | KEYS
        else:
            continue
        named = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if len(named & names) >= 2:
            found.append(node.lineno)
    return found


def test_no_second_list_of_the_keys_in_the_packages():
    allowed = {REPO / "patches/prefixmemory_patches/llamafactory/bends/webui.py": 1}  # PMT_LOCALES, checked above
    sources = [*(REPO / "plugin").rglob("*.py"), *(REPO / "patches").rglob("*.py")]
    offenders = {
        str(path.relative_to(REPO)): lines
        for path in sources
        if len(lines := _literals_listing_the_keys(path)) > allowed.get(path, 0)
    }
    assert offenders == {}
