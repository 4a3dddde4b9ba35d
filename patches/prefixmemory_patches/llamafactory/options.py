"""The ``pmt_*`` and ``prefix_*`` argument dataclasses, and the PEFT configs they describe.

``finetuning_type: prefixmemory`` takes the ``pmt_*`` keys; ``finetuning_type: prefix`` (classic prefix-tuning,
PEFT's PrefixTuningConfig, the paper's baseline) the ``prefix_*`` keys. These are the fields that appear in YAML
recipes and ``llamafactory-cli train -h``; finetuning_args.py mixes them into LLaMA-Factory's FinetuningArguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import PrefixTuningConfig

from prefixmemory import PrefixMemoryConfig
from prefixmemory.feature_maps import FEATURE_MAPS

from ..errors import PrefixMemoryError


@dataclass
class PrefixMemoryArguments:
    """Arguments of ``finetuning_type: prefixmemory``."""

    pmt_feature_map: str = field(
        default="elu",
        metadata={"help": f"PrefixMemory feature map phi: one of {', '.join(FEATURE_MAPS)}."},
    )
    pmt_layers: str = field(
        default="all",
        metadata={"help": "Decoder layers that get a memory: `all`, a list like `0,2,4`, or a range like `0-11`."},
    )
    pmt_feature_dim: int | None = field(
        default=None,
        metadata={"help": "Output size of the `mlp` feature map (default: head_dim); only valid with mlp."},
    )
    pmt_memory_bias: bool = field(
        default=True,
        metadata={
            "help": "Add a trainable head_dim bias per query head with the memory term, as the paper's Table 8 "
            "counts it; false is eq. 7 as written."
        },
    )

    def prefixmemory_config(self) -> PrefixMemoryConfig:
        """The PEFT config these arguments describe; raises PrefixMemoryError naming the bad `pmt_*` key."""
        try:
            return PrefixMemoryConfig(
                feature_map=self.pmt_feature_map,
                layers=parse_layers(self.pmt_layers),
                feature_dim=self.pmt_feature_dim,
                memory_bias=self.pmt_memory_bias,
            )
        except ValueError as err:
            raise PrefixMemoryError(
                str(err)
                .replace("`feature_map`", "`pmt_feature_map`")
                .replace("`feature_dim`", "`pmt_feature_dim`")
                .replace("`layers`", "`pmt_layers`")
                .replace("`memory_bias`", "`pmt_memory_bias`")
            ) from None


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


# finetuning_type -> the argument class that holds its keys
METHOD_ARGUMENTS = {"prefixmemory": PrefixMemoryArguments, "prefix": PrefixTuningArguments}


def parse_layers(value) -> list[int] | None:
    """``all`` -> None; ``"0,2,4"``, ``"0-11"``, ``[0, 2]`` or ``3`` -> a list of layer indices."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    if isinstance(value, (int, list, tuple)):
        return list(value) if not isinstance(value, int) else [value]
    layers = []
    try:
        for part in str(value).split(","):
            start, dash, stop = part.strip().partition("-")
            layers.extend(range(int(start), int(stop) + 1) if dash else [int(start)])
    except ValueError:
        raise PrefixMemoryError(
            f"`pmt_layers` must be `all`, a list like `0,2,4` or a range like `0-11`, got {value!r}."
        ) from None
    return layers
