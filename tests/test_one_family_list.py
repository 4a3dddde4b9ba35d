"""One list of families: the method's table (prefixmemory.architectures.ATTENTION_LAYOUTS). Nothing else in the
packages or the tests lists model types, but the files below, each keyed by the table's model types or choosing
from them, and held to the table here or where it says."""

import ast
import re
from pathlib import Path

from prefixmemory.architectures import ATTENTION_LAYOUTS
from prefixmemory_study.tiny import ARCHITECTURES as TINY_MODELS
from prefixmemory_vllm.families import NOT_SERVED, SERVED

REPO = Path(__file__).resolve().parents[1]
KNOWN = set(ATTENTION_LAYOUTS) | set(TINY_MODELS)  # the model types, and the tiny variants of one (llama-gqa)
ALLOWED = {
    "plugin/prefixmemory/architectures.py": "the table",
    "plugin/prefixmemory_study/tiny.py": "tiny configs keyed by the table (tests/method/test_families.py)",
    "plugin/prefixmemory_vllm/families.py": "served or not, keyed by the table (tests/serving/test_vllm_seams.py)",
    "tests/method/testing_common.py": "where q is read, written down independently; the feature maps' models",
    "tests/method/test_mixed_batch.py": "three tiny models for one check",
    "tests/llamafactory/test_adapter_checks.py": "the families whose sizes config.json's top level lacks",
}


def _literals(path: Path):
    """(line, model types named) of each dict, list, tuple or set literal naming model types, and of each string
    alternating three or more of them (as a regex ``a|b|c`` would)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "|" in node.value:
            named = set(re.findall(r"[\w-]+", node.value)) & KNOWN
            if len(named) >= 3:
                yield node.lineno, named
            continue
        else:
            continue
        named = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if named & KNOWN:
            yield node.lineno, named


def _sources() -> list[Path]:
    return [path for folder in ("plugin", "patches", "tests") for path in (REPO / folder).rglob("*.py")]


def test_no_second_list_of_families():
    found = {
        f"{path.relative_to(REPO)}:{line}": sorted(named & KNOWN)
        for path in _sources()
        if str(path.relative_to(REPO)) not in ALLOWED
        for line, named in _literals(path)
        if len(named & KNOWN) >= 3
    }
    assert not found, f"lists of model types outside the table (derive them from it, or say why here): {found}"


def test_the_allowed_lists_have_the_tables_keys():
    """Keyed by the table, or choosing from it: a family removed from the table cannot linger in them (the tests'
    selections of tiny models fail in the tiny builder)."""
    from method.testing_common import ARCHITECTURES, QUERY_READ

    assert {config["model_type"] for config in TINY_MODELS.values()} == set(ATTENTION_LAYOUTS)
    assert set(SERVED) | set(NOT_SERVED) == set(ATTENTION_LAYOUTS)
    assert set(QUERY_READ) <= set(ATTENTION_LAYOUTS) and set(ARCHITECTURES) <= set(TINY_MODELS)


def test_the_serving_cases_are_served_families():
    """tests/serving/cases.py picks tiny models per case: each one of a family the vLLM plugin serves."""
    from serving.cases import CASES, FAMILY_CASES

    model_types = {TINY_MODELS[case.architecture]["model_type"] for case in [*CASES.values(), *FAMILY_CASES.values()]}
    assert model_types <= set(SERVED)
