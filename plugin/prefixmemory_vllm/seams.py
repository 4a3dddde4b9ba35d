"""Seam checks: does this vLLM's source have the shape the copied attention forwards follow?

This replaces a list of vLLM versions. For a family it reads, as text (no vLLM import, no torch), vLLM's model
registry and model files: the registry must map the family's architecture to a class the plugin extends, and that
class's attention must assign what the copies read and have a forward that reads the same ``self.*`` names in the
same order as the forward the copy was made from. Any change (a gate, a scaling, a norm moved) names itself in one
line, and the family is refused instead of served with a stale forward. Standard library only.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path

from .families import INSTANCE_ATTRIBUTES, REORDERS_Q, UPSTREAM_FORWARDS, Family, Implementation

# The vLLM releases whose source these checks were run on (the CPU builds served, the others read).
CHECKED_VLLM = ("0.11.0", "0.32.0", "0.33.0", "0.34.0")
Reader = Callable[[str], "str | None"]  # module under vllm.model_executor.models -> its source, None if absent


class SeamError(ImportError):
    """vLLM's source does not have the shape the plugin's copy of a family's attention forward follows."""


def installed_reader() -> Reader:
    """Reads the installed vLLM's model files without importing vLLM."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise SeamError("vLLM is not installed.")
    return folder_reader(Path(spec.submodule_search_locations[0]) / "model_executor" / "models")


def folder_reader(folder: Path) -> Reader:
    """Reads model files from ``folder`` (vllm/model_executor/models of an installed or unpacked vLLM)."""

    def read(module: str) -> str | None:
        path = folder / f"{module}.py"
        return path.read_text() if path.is_file() else None

    return read


def registered(architecture: str, read: Reader) -> str | None:
    """``module.Class`` vLLM's registry maps ``architecture`` to (the first dict entry naming it), None if absent."""
    for node in ast.walk(ast.parse(read("registry") or "")):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == architecture and isinstance(value, ast.Tuple):
                    return ".".join(str(ast.literal_eval(element)) for element in value.elts)
    return None


def implementation(family: Family, read: Reader) -> Implementation:
    """The implementation of ``family`` that this vLLM's source fits; SeamError with one line if none does."""
    model = registered(family.architecture, read)
    candidates = [impl for impl in family.implementations if impl.model == model]
    if not candidates:
        known = ", ".join(dict.fromkeys(impl.model for impl in family.implementations))
        found = f"maps it to {model}" if model else "does not list it"
        raise SeamError(f"vLLM's model registry {found}; the plugin extends {known}.")
    problems = [problem(impl, read) for impl in candidates]
    if None in problems:
        return candidates[problems.index(None)]
    raise SeamError(problems[0])


def problem(impl: Implementation, read: Reader) -> str | None:
    """None when ``impl``'s classes are in vLLM's source with the shape its copied forward follows."""
    for dotted in (impl.model, impl.attention):
        if _class(dotted, read) is None:
            return f"vllm.model_executor.models.{dotted} is missing"
    name = f"vllm.model_executor.models.{impl.attention}"
    attention = _class(impl.attention, read)
    forward = _method(attention, "forward")
    if forward is None:
        return f"{name} has no forward of its own"
    params = tuple(arg.arg for arg in forward.args.args)
    if params[:3] != ("self", "positions", "hidden_states"):
        return f"{name}.forward has parameters {params}, expected (self, positions, hidden_states, ...)"
    expected, found = UPSTREAM_FORWARDS[impl.forward], self_names(forward)
    if found != expected:
        return f"{name}.forward {_difference(expected, found)} (the PrefixMemory copy follows {', '.join(expected)})"
    assigned = _assigned(impl.attention, read)
    lacking = [attribute for attribute in INSTANCE_ATTRIBUTES if attribute not in assigned]
    if lacking:
        return f"{name}.__init__ no longer sets self.{', self.'.join(lacking)}"
    if (_method(_class(impl.model, read), REORDERS_Q) is not None) != impl.pairs_to_halves:
        does = "no longer reorders" if impl.pairs_to_halves else "reorders"
        return f"vllm.model_executor.models.{impl.model} {does} q_proj's rows at load ({REORDERS_Q})"
    return None


def self_names(function: ast.FunctionDef) -> tuple[str, ...]:
    """The ``self.x`` names a function reads, in source order."""
    nodes = [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
    ]
    return tuple(node.attr for node in sorted(nodes, key=lambda node: (node.lineno, node.col_offset)))


def _difference(expected: tuple[str, ...], found: tuple[str, ...]) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, found, strict=False)) if a != b), None)
    if at is None:
        longer, verb = (found, "also reads") if len(found) > len(expected) else (expected, "no longer reads")
        return f"{verb} self.{', self.'.join(longer[min(len(found), len(expected)) :])} at its end"
    after = f" after self.{found[at - 1]}" if at else ""
    return f"reads self.{found[at]}{after} where vLLM's forward read self.{expected[at]}"


def _assigned(dotted: str, read: Reader) -> set[str]:
    """The ``self.x`` names a class and its bases (found in vLLM's model files) assign anywhere in their bodies."""
    cls = _class(dotted, read)
    if cls is None:
        return set()
    names = {name for node in ast.walk(cls) for name in _self_targets(node)}
    for base in cls.bases:
        if isinstance(base, ast.Name):
            names |= _assigned(_where(dotted.rsplit(".", 1)[0], base.id, read), read)
    return names


def _where(module: str, name: str, read: Reader) -> str:
    """``module.name``, or where ``module`` imports ``name`` from among vLLM's model files."""
    for node in _tree(module, read).body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
            return f"{(node.module or '').rsplit('.', 1)[-1]}.{name}"
    return f"{module}.{name}"


def _tree(module: str, read: Reader) -> ast.Module:
    source = read(module)
    return ast.parse(source) if source else ast.Module(body=[], type_ignores=[])


def _class(dotted: str, read: Reader) -> ast.ClassDef | None:
    module, name = dotted.rsplit(".", 1)
    classes = (node for node in _tree(module, read).body if isinstance(node, ast.ClassDef))
    return next((node for node in classes if node.name == name), None)


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((node for node in cls.body if isinstance(node, ast.FunctionDef) and node.name == name), None)


def _self_targets(node: ast.AST) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return [t.attr for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)]
