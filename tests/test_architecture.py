"""The shape of the code: the method imports neither the patches nor the study tools, the patches never import the
tools, the vLLM serving package imports none of the others and only the export patch imports it (its converter,
which needs no vLLM), no two packages import each other (also through a third), and files and functions stay small.

Imports are read with ``ast`` from every module of the three packages, function-level imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "prefixmemory": REPO / "plugin" / "prefixmemory",
    "prefixmemory_patches": REPO / "patches" / "prefixmemory_patches",
    "prefixmemory_study": REPO / "plugin" / "prefixmemory_study",
    "prefixmemory_vllm": REPO / "plugin" / "prefixmemory_vllm",
}
FORBIDDEN = {
    "prefixmemory": {"prefixmemory_patches", "prefixmemory_study", "prefixmemory_vllm"},
    "prefixmemory_patches": {"prefixmemory_study"},
    "prefixmemory_study": {"prefixmemory_vllm"},
    "prefixmemory_vllm": {"prefixmemory", "prefixmemory_patches", "prefixmemory_study"},
}
# What of the serving package another package may import: the folder format and its converter, free of vLLM.
VLLM_FREE = {"prefixmemory_vllm", "prefixmemory_vllm.convert"}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[str, Path]]:
    """(dotted module name, path) of every module of the three packages."""
    found = []
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            found.append((".".join(parts), path))
    return found


def _imported(module: str, path: Path) -> set[str]:
    """The absolute names of the modules ``path`` imports anywhere in its body; relative imports resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, *([node.module] if node.module else [])]))
    return names


def _package_graph() -> dict[str, dict[str, list[str]]]:
    """package -> {other package it imports: [the modules that import it]}."""
    graph: dict[str, dict[str, list[str]]] = {package: {} for package in PACKAGES}
    for module, path in _modules():
        source = module.split(".")[0]
        for name in _imported(module, path):
            target = name.split(".")[0]
            if target in PACKAGES and target != source:
                graph[source].setdefault(target, []).append(module)
    return graph


def test_the_graph_is_read():
    """A check of the reader itself: relative imports resolve, and the expected edges are there."""
    graph = _package_graph()
    assert "prefixmemory" in graph["prefixmemory_patches"]  # the patches use the method
    assert "prefixmemory" in graph["prefixmemory_study"]  # so do the tools
    model = PACKAGES["prefixmemory"] / "model.py"
    assert "prefixmemory.layer" in _imported("prefixmemory.model", model)  # from .layer import ...


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    graph = _package_graph()
    wrong = {target: graph[package][target] for target in FORBIDDEN[package] if target in graph[package]}
    assert not wrong, f"{package} imports {wrong}"


def test_only_the_vllm_free_part_of_the_serving_package_is_imported():
    wrong = [
        f"{module} imports {name}"
        for module, path in _modules()
        if not module.startswith("prefixmemory_vllm")
        for name in _imported(module, path)
        if name.split(".")[0] == "prefixmemory_vllm" and name not in VLLM_FREE
    ]
    assert not wrong, wrong
    free = [(module, path) for module, path in _modules() if module.removesuffix(".__init__") in VLLM_FREE]
    assert len(free) == len(VLLM_FREE)
    heavy = {
        module: names
        for module, path in free
        if (names := {n for n in _imported(module, path) if "vllm" == n.split(".")[0] or n == "torch"})
    }
    assert not heavy, f"the serving package's format modules import {heavy}"


def test_no_cycle_between_packages():
    graph = {package: set(targets) for package, targets in _package_graph().items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    cycles = [package for package in graph if reaches(package, package, {package})]
    assert not cycles, f"packages on an import cycle: {cycles} ({graph})"


@pytest.mark.parametrize("module, path", _modules(), ids=[module for module, _ in _modules()])
def test_files_and_functions_are_small(module, path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{module}: {len(text.splitlines())} lines"
    long = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({node.end_lineno - start + 1} lines)")
    assert not long, f"{module}: functions over {MAX_FUNCTION_LINES} lines: {long}"
