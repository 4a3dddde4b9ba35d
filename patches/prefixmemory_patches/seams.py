"""Seam checks: verify the shape of what a patch bends in LLaMA-Factory before bending it.

This replaces a pin on one LLaMA-Factory version. Each patch function declares its seams with :func:`bends`; the
hook applies it through :func:`guarded_apply`, which checks them first. A seam that is missing or has another
shape leaves that module unpatched and is recorded, so programs that never use our methods keep working on any
version. :func:`require` is the single stop point of a ``prefixmemory`` / ``prefix`` run. Standard library only.
"""

import dataclasses
import importlib
import inspect
import logging
import sys
from dataclasses import dataclass

from .errors import PrefixMemoryError

TESTED_VERSION = "0.9.5"
# Imported by require(), so that their seams are checked before a run starts (on the CLI they already are).
RUN_CRITICAL = ("llamafactory.hparams.parser", "llamafactory.model.adapter", "llamafactory.train.trainer_utils")
# Their seams concern only themselves: without them the web UI lacks our methods, v1 does not know them, the API
# server passes requests unchecked.
OTHER_ENTRY_POINTS = ("llamafactory.webui", "llamafactory.v1", "llamafactory.api")
_MISSING = object()
_problems: dict[str, str] = {}  # module name -> the first problem found there
_version_noted = []


class SeamError(PrefixMemoryError):
    """A LLaMA-Factory seam that finetuning_type prefixmemory / prefix needs is missing or has another shape."""


@dataclass(frozen=True)
class Seam:
    """One name a patch reads or replaces, and the shape the patch was written against.

    ``params``: the leading parameters of a callable, in order (patches call upstream positionally); further
    parameters must have defaults. ``fields``: dataclass fields the class must have. ``container``: the type of a
    module-level constant changed in place.
    """

    attribute: str
    params: tuple[str, ...] | None = None
    fields: tuple[str, ...] = ()
    container: type | None = None

    def check(self, module) -> str | None:
        """None when the seam has the expected shape, else one line naming it and what differs."""
        name = f"{module.__name__}.{self.attribute}"
        obj = module
        for part in self.attribute.split("."):
            obj = getattr(obj, part, _MISSING)
            if obj is _MISSING:
                return f"{name} is missing"
        if self.container is not None and not isinstance(obj, self.container):
            return f"{name} is a {type(obj).__name__}, not a {self.container.__name__}"
        if self.params is not None and not _leading_params_match(obj, self.params):
            return f"{name} has parameters {_signature(obj)}, expected ({', '.join(self.params)}, ...)"
        if self.fields and not dataclasses.is_dataclass(obj):
            return f"{name} is not a dataclass"
        lacking = [f for f in self.fields if f not in {f.name for f in dataclasses.fields(obj)}] if self.fields else []
        if lacking:
            return f"{name} lacks the field(s) {', '.join(lacking)}"
        return None


def bends(*seams: Seam):
    """Decorator: declare the seams a ``patch_*`` function relies on; guarded_apply checks them first."""

    def declare(patch):
        patch.seams = seams
        return patch

    return declare


def guarded_apply(patch, module) -> bool:
    """Apply ``patch`` to ``module`` if all its seams check out; else record the first problem. Never raises."""
    problem = next(filter(None, (seam.check(module) for seam in getattr(patch, "seams", ()))), None)
    if problem is None:
        try:
            patch(module)
            return True
        except Exception as error:  # a patch that cannot apply must not break programs that do not use it
            problem = f"patching {module.__name__} failed: {type(error).__name__}: {error}"
    _problems.setdefault(module.__name__, problem)
    return False


def problems() -> dict[str, str]:
    """What could not be patched so far: module name -> its first problem."""
    return dict(_problems)


def require(finetuning_type: str) -> None:
    """Stop a ``prefixmemory`` / ``prefix`` run with one line when a seam it depends on does not check out."""
    for name in RUN_CRITICAL:
        importlib.import_module(name)
    for module_name, problem in _problems.items():
        if not module_name.startswith(OTHER_ENTRY_POINTS):
            raise SeamError(
                f"finetuning_type: {finetuning_type} is not available with llamafactory {installed_version()}: "
                f"{problem}."
            )
    version = installed_version()
    if version != TESTED_VERSION and not _version_noted:
        _version_noted.append(version)
        logging.getLogger("llamafactory.prefixmemory").info(
            f"llamafactory {version}: every seam of the prefixmemory patches checks out (tested: {TESTED_VERSION})."
        )


def installed_version() -> str:
    return getattr(sys.modules.get("llamafactory"), "__version__", "unknown")


def _leading_params_match(function, expected: tuple[str, ...]) -> bool:
    try:
        params = list(inspect.signature(inspect.unwrap(function)).parameters.values())
    except (TypeError, ValueError):
        return False
    leading, rest = params[: len(expected)], params[len(expected) :]
    named = tuple(p.name for p in leading if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    return named == expected and all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in rest
    )


def _signature(function) -> str:
    try:
        return str(inspect.signature(inspect.unwrap(function)))
    except (TypeError, ValueError):
        return "(unreadable)"
