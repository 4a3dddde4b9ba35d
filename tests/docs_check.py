"""Check the commands and links of the Markdown docs without running anything heavy.

A fenced bash block is run by bash with an empty PATH: every external command lands in `command_not_found_handle`,
which records its argv after the shell expanded variables, loops and braces. The recorded calls of our console
scripts are parsed by their own argparse parsers (stopped right after parsing); `llamafactory-cli` and
`accelerate launch` calls have their YAML and config files checked and every key looked up in LLaMA-Factory's
HfArgumentParser dataclasses. Inline code spans are checked more leniently: subcommand and `--flags` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import re
import subprocess
import tempfile
import tomllib
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from functools import cache
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), REPO / "recipes/README.md", REPO / "data/README.md"])
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
LF_COMMANDS = ("api", "chat", "eval", "export", "train", "webchat", "webui", "env", "version", "help")
PLACEHOLDER = "PLACEHOLDER_"
GRAD_ACCUMULATION = "gradient_accumulation_steps"
PLANNED_GPUS = re.compile(r"^# Hardware: (\d+) GPUs?\b", re.M)  # a recipe's header
UNPUBLISHED = re.compile(r"llamafactory[-_]prefixmemory(\[[^\]]*\])?([<>=!~].*)?", re.I)

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# The variables that decide how many processes a launch starts (LLaMA-Factory's launcher reads them).
LAUNCH_ENV = ("FORCE_TORCHRUN", "NNODES", "NPROC_PER_NODE", "CUDA_VISIBLE_DEVICES")
# One write per call: the commands of a pipeline run at once, and two writes each could interleave.
RECORDER = """command_not_found_handle() {
    local call env; call=$(printf '%s\\037' "$@"); env=$(printf '%s\\037' ENV_PAIRS)
    printf '%s\\035%s\\036' "$call" "$env" >> "$DOCS_RECORD"; return 0
}
""".replace("ENV_PAIRS", " ".join(f'"{name}=${{{name}-}}"' for name in LAUNCH_ENV))


class DocError(Exception):
    """A command or link of the docs that does not match the code."""


class Call(list):
    """One command's argv as bash expanded it; ``env``: the LAUNCH_ENV variables set for it (exported or prefixed)."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None):
        super().__init__(argv)
        self.env = env or {}


def fenced(text: str, languages=("bash", "sh", "shell")) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in languages]


def prose(text: str) -> str:
    return FENCE.sub("", text)


def fill_placeholders(script: str) -> str:
    """`<name>` placeholders become words, so bash does not read them as redirections."""
    return re.sub(r"<([A-Za-z][\w.-]*)>", PLACEHOLDER + r"\1", script)


def shell_calls(script: str) -> list[list[str]]:
    """The external commands a script would run, each argv as bash expanded it."""
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp, "calls")
        record.touch()
        env = {"PATH": str(Path(tmp, "bin")), "DOCS_RECORD": str(record), "HOME": tmp}
        subprocess.run(
            ["/bin/bash", "--noprofile", "--norc", "-c", RECORDER + fill_placeholders(script)],
            cwd=tmp,
            env=env,
            capture_output=True,
            timeout=60,
        )
        calls = [_recorded_call(entry) for entry in record.read_text().split("\x1e")[:-1]]
    nested = []  # `srun ... bash -c '...'` starts the command the docs mean
    for argv in calls:
        i = argv.index("bash") if "bash" in argv else -1
        if i >= 0 and argv[i + 1 : i + 2] == ["-c"] and len(argv) > i + 2:
            nested += shell_calls(argv[i + 2])
    return calls + nested


def _recorded_call(entry: str) -> Call:
    argv, env = entry.split("\x1d")
    pairs = (pair.partition("=") for pair in env.split("\x1f")[:-1])
    return Call(argv.split("\x1f")[:-1], {name: value for name, _, value in pairs if value})


def exists(value: str) -> bool:
    return PLACEHOLDER in value or (REPO / value).exists()


def _raise(parser: argparse.ArgumentParser, message: str):
    raise DocError(f"{parser.prog}: {message}")


@contextmanager
def parse_only():
    """Every ArgumentParser stops right after parsing; a parse error raises DocError."""
    original = argparse.ArgumentParser.parse_args

    class Parsed(Exception):
        pass

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)
        raise Parsed

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args):
        with mock.patch.object(argparse.ArgumentParser, "error", _raise):
            try:
                with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                    yield
            except (Parsed, SystemExit):  # SystemExit: --help printed its text
                pass


def script_main(name: str):
    module, function = SCRIPTS[name].split(":")
    return getattr(importlib.import_module(module), function)


def module_main(module: str):
    loaded = importlib.import_module(module)
    return loaded.main if hasattr(loaded, "main") else importlib.import_module(module + ".cli").main


@cache
def top_parser(name: str) -> argparse.ArgumentParser:
    """The parser a console script builds, caught before it parses anything."""
    caught = []

    class Caught(Exception):
        pass

    def parse_args(self, args=None, namespace=None):
        caught.append(self)
        raise Caught

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_args):
        try:
            script_main(name)([])
        except Caught:
            pass
    return caught[0]


def check_script_flags(name: str, args: list[str]) -> None:
    """Inline mentions: the subcommand exists and every --flag is one of its options."""
    parser = top_parser(name)
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if subparsers and args and not args[0].startswith("-") and PLACEHOLDER not in args[0]:
        if args[0] not in subparsers[0].choices:
            raise DocError(f"{name}: no subcommand {args[0]!r}")
        parser = subparsers[0].choices[args[0]]
    for flag in (arg.split("=")[0] for arg in args if arg.startswith("--")):
        if flag not in parser._option_string_actions:
            raise DocError(f"{name}: no option {flag} (see `{parser.prog} --help`)")


@cache
def lf_parser(command: str):
    from llamafactory.hparams import parser as lf
    from transformers import HfArgumentParser

    classes = {"train": lf._TRAIN_ARGS, "eval": lf._EVAL_ARGS}.get(command, lf._INFER_ARGS)
    fields = {field.name for cls in classes for field in dataclasses.fields(cls) if field.init}
    return HfArgumentParser(classes), fields


def check_lf_keys(command: str, config: dict) -> None:
    parser, fields = lf_parser(command)
    unknown = sorted(set(config) - fields)
    if unknown:
        raise DocError(f"llamafactory-cli {command}: not LLaMA-Factory arguments: {unknown}")
    for key, value in config.items():
        choices = parser._option_string_actions[f"--{key}"].choices
        if choices and isinstance(value, str) and PLACEHOLDER not in value and value not in map(str, choices):
            raise DocError(f"llamafactory-cli {command}: `{key}` is {value!r}, allowed: {list(choices)}")
    if isinstance(config.get("deepspeed"), str) and not exists(config["deepspeed"]):
        raise DocError(f"llamafactory-cli {command}: no DeepSpeed file {config['deepspeed']}")


def launched_processes(call: list[str]) -> int | None:
    """The training processes a documented launch starts; None where the docs leave it to the machine."""
    env = getattr(call, "env", {})
    try:
        if "NPROC_PER_NODE" in env:
            per_node = int(env["NPROC_PER_NODE"])
        elif "CUDA_VISIBLE_DEVICES" in env:
            per_node = len(env["CUDA_VISIBLE_DEVICES"].split(","))
        else:
            return None
        return per_node * int(env.get("NNODES", 1))
    except ValueError:  # a placeholder such as <gpus>
        return None


def check_effective_batch(recipe: str, config: dict, processes: int | None) -> None:
    """A launch on another number of GPUs than the recipe's keeps its effective batch (batch x accumulation x GPUs)."""
    from omegaconf import OmegaConf

    planned = PLANNED_GPUS.search((REPO / recipe).read_text())
    if processes is None or planned is None:
        return

    def effective(values: dict, gpus: int) -> int:
        return (
            int(values.get("per_device_train_batch_size", 1))
            * int(values.get("gradient_accumulation_steps", 1))
            * gpus
        )

    gpus = int(planned.group(1))
    want = effective(OmegaConf.to_container(OmegaConf.load(REPO / recipe)), gpus)
    got = effective(config, processes)
    if got != want:
        per_step = int(config.get("per_device_train_batch_size", 1)) * processes
        fix = f"gradient_accumulation_steps={want // per_step}" if want % per_step == 0 else "another batch size"
        raise DocError(
            f"{recipe} on {processes} processes has an effective batch of {got}; the recipe's is {want} "
            f"(on {gpus} GPUs): add {fix}"
        )


def check_llamafactory(args: list[str], strict: bool = True, processes: int | None = None) -> None:
    from omegaconf import OmegaConf

    if not args or args[0] not in LF_COMMANDS:
        raise DocError(f"llamafactory-cli: no command {args[:1]}, allowed: {list(LF_COMMANDS)}")
    command, rest = args[0], args[1:]
    if not rest or command not in ("train", "eval", "chat", "api", "webchat", "export") or rest[0] in ("-h", "--help"):
        return
    if rest[0].endswith((".yaml", ".yml")):
        if not exists(rest[0]):
            raise DocError(f"llamafactory-cli {command}: no file {rest[0]}")
        config = {} if PLACEHOLDER in rest[0] else OmegaConf.to_container(OmegaConf.load(REPO / rest[0]))
        overrides = [arg for arg in rest[1:] if "=" in arg]
        if strict and len(overrides) < len(rest) - 1:
            raise DocError(f"llamafactory-cli {command}: after the YAML file only key=value: {rest[1:]}")
        config |= OmegaConf.to_container(OmegaConf.from_cli(overrides))
        check_lf_keys(command, config)
        if command == "train" and PLACEHOLDER not in rest[0]:
            check_effective_batch(rest[0], config, processes)
    else:
        options = lf_parser(command)[0]._option_string_actions
        unknown = [arg for arg in rest if arg.startswith("--") and arg.split("=")[0] not in options]
        if unknown:
            raise DocError(f"llamafactory-cli {command}: not LLaMA-Factory arguments: {unknown}")


def check_accelerate(args: list[str]) -> None:
    from accelerate.commands.launch import launch_command_parser

    if args[:1] != ["launch"]:
        return
    with mock.patch.object(argparse.ArgumentParser, "error", _raise):
        parsed = launch_command_parser().parse_args(args[1:])
    if parsed.config_file and not exists(parsed.config_file):
        raise DocError(f"accelerate launch: no config file {parsed.config_file}")
    if parsed.module and parsed.training_script == "llamafactory.launcher":
        processes = parsed.num_processes * (parsed.num_machines or 1) if parsed.num_processes else None
        check_llamafactory(["train", *parsed.training_script_args], processes=processes)


def check_python(args: list[str]) -> None:
    if args[:1] != ["-m"] or len(args) < 2:
        return
    module, rest = args[1], args[2:]
    if module == "pytest":  # the test paths named exist
        values = {i + 1 for i, arg in enumerate(rest) if arg in ("-m", "-k", "-p")}
        for i, arg in enumerate(rest):
            if i not in values and not arg.startswith("-") and not (REPO / arg.split("::")[0]).exists():
                raise DocError(f"pytest: no test path {arg}")
    elif module.startswith("prefixmemory_study"):
        with parse_only():
            module_main(module)(rest)


def check_pip(args: list[str]) -> bool:
    """Installs name what can be installed: this project only from its source tree, a wheel or a git URL."""
    if args[:1] != ["install"]:
        return False
    for arg in args[1:]:
        if UNPUBLISHED.fullmatch(arg.strip()):
            raise DocError(
                f"pip install {arg}: llamafactory-prefixmemory is not on the package index; install the source tree "
                "(pip install .), a wheel built from it, or 'llamafactory-prefixmemory @ git+<url>'"
            )
    return True


def check_call(argv: list[str], strict: bool = True) -> bool:
    """Check one command; False when it is not ours to check."""
    name, args = argv[0], argv[1:]
    if name in SCRIPTS:
        if strict:
            with parse_only():
                script_main(name)(args)
        else:
            check_script_flags(name, args)
    elif name == "llamafactory-cli":
        check_llamafactory(args, strict, launched_processes(argv))
    elif name == "pip" or (name in ("python", "python3") and args[:2] == ["-m", "pip"]):
        return check_pip(args[2:] if name != "pip" else args)
    elif name == "accelerate" and strict:
        check_accelerate(args)
    elif name in ("python", "python3") and strict:
        check_python(args)
    else:
        return False
    return True


def inline_commands(text: str) -> list[str]:
    """Inline code that reads as one literal command of ours (no shell syntax, no elisions)."""
    spans = []
    for span in INLINE.findall(prose(text)):
        words = [word for word in span.split() if not re.fullmatch(r"[A-Za-z_]\w*=\S*", word)]
        literal = not any(mark in span for mark in ("$", "{", "...", "…", "|", "&&", ";"))
        literal = literal and "USE_V1=" not in span  # LLaMA-Factory v1's CLI reads another config format
        if literal and len(words) > 1 and (words[0] in SCRIPTS or words[0] == "llamafactory-cli"):
            spans.append(span)
    return spans


def check_commands(path: Path) -> tuple[int, list[str]]:
    """(commands checked, errors) for one document."""
    text, checked, errors = path.read_text(), 0, []
    work = [(block, True) for block in fenced(text)] + [(span, False) for span in inline_commands(text)]
    for script, strict in work:
        for argv in shell_calls(script):
            try:
                checked += check_call(argv, strict)
            except DocError as error:
                errors.append(f"{path.relative_to(REPO)}: `{' '.join(argv)}`: {error}")
    return checked, errors


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, counts = set(), {}
    for heading in re.findall(r"^#+\s+(.*)$", prose(path.read_text()), re.M):
        base = slug(heading)
        found.add(f"{base}-{counts[base]}" if base in counts else base)
        counts[base] = counts.get(base, 0) + 1
    return found


def check_links(path: Path) -> list[str]:
    errors = []
    for target in LINK.findall(prose(path.read_text())):
        if "://" in target or target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            errors.append(f"{path.relative_to(REPO)}: link to a missing file: {target}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            errors.append(f"{path.relative_to(REPO)}: link to a missing heading: {target}")
    return errors
