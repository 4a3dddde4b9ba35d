"""The ``pmt_*`` and ``prefix_*`` keys of LLaMA-Factory's arguments, and the PEFT configs they describe.

``finetuning_type: prefixmemory`` takes the ``pmt_*`` keys, ``finetuning_type: prefix`` (classic prefix-tuning,
PEFT's PrefixTuningConfig, the paper's baseline) the ``prefix_*`` keys. The ``pmt_*`` keys are not declared here:
each is ``pmt_`` + an option of PrefixMemoryConfig (``prefixmemory.config.options``), with its default and help, so
the adapter checks, the web UI, v1 and the docs all read one declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

from peft import PrefixTuningConfig

from prefixmemory import PrefixMemoryConfig
from prefixmemory.config import ConfigValueError, options

from ..errors import PrefixMemoryError

PREFIX = "pmt_"
# pmt_* key -> the PrefixMemoryConfig field (and adapter_config.json entry) it sets
PMT_KEYS = {PREFIX + option.name: option.name for option in options()}
# How a field's type is written on a command line: a list of layers is written as text (`0,2,4`, `0-11`, `all`).
_ARGUMENT_TYPES = {"str": str, "bool": bool, "int | None": int | None}


def _argument(option):
    """The LLaMA-Factory argument of one config option: same default and help; argparse gets only `help`."""
    kind = _ARGUMENT_TYPES.get(option.type, str | None)
    return PREFIX + option.name, kind, field(default=option.default, metadata={"help": option.metadata["help"]})


def _prefixmemory_config(self) -> PrefixMemoryConfig:
    """The PEFT config these arguments describe; raises PrefixMemoryError naming the bad `pmt_*` key."""
    try:
        return PrefixMemoryConfig(**{name: getattr(self, key) for key, name in PMT_KEYS.items()})
    except ConfigValueError as err:
        raise PrefixMemoryError(err.for_key(PREFIX + err.field)) from None


PrefixMemoryArguments = make_dataclass(
    "PrefixMemoryArguments",
    [_argument(option) for option in options()],
    namespace={"prefixmemory_config": _prefixmemory_config, "__doc__": "Arguments of finetuning_type: prefixmemory."},
)
PrefixMemoryArguments.__module__ = __name__


@dataclass
class PrefixTuningArguments:
    """Arguments of ``finetuning_type: prefix`` (Li and Liang, 2021), the baseline of the paper's comparisons."""

    prefix_num_virtual_tokens: int = field(
        default=32,
        metadata={"help": "Number of virtual prefix tokens per layer (the paper's Prefix-Tuning uses 32)."},
    )
    prefix_projection: bool = field(
        default=False,
        metadata={"help": "Reparameterise the prefix through a two-layer MLP, as in the original prefix-tuning."},
    )

    def prefix_tuning_config(self) -> PrefixTuningConfig:
        if isinstance(self.prefix_num_virtual_tokens, bool) or self.prefix_num_virtual_tokens < 1:
            raise PrefixMemoryError(
                f"`prefix_num_virtual_tokens` must be a positive integer, got {self.prefix_num_virtual_tokens!r}."
            )
        return PrefixTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=self.prefix_num_virtual_tokens,
            prefix_projection=self.prefix_projection,
        )


def keys_table() -> str:
    """The markdown table of the pmt_* keys (README's), rendered from the one declaration."""
    rows = ["| key | default | what it sets |", "| --- | --- | --- |"]
    for option in options():
        default = option.metadata.get("none", option.default) if option.default is None else option.default
        rows.append(f"| `{PREFIX + option.name}` | {str(default).lower()} | {option.metadata['help']} |")
    return "\n".join(rows)


# finetuning_type -> the argument class that holds its keys
METHOD_ARGUMENTS = {"prefixmemory": PrefixMemoryArguments, "prefix": PrefixTuningArguments}
