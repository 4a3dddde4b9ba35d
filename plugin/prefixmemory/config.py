"""Configuration of a PrefixMemory adapter."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from .feature_maps import FEATURE_MAPS, takes_feature_dim
from .peft_type import extend_peft_type


@dataclass
class PrefixMemoryConfig(PeftConfig):
    """PrefixMemory-Tuning (arXiv 2506.13674, eq. 7): per query head, ``o_i += phi(q_i) @ M``.

    Args:
        feature_map: phi. ``elu``, ``gelu`` and ``relu`` act element-wise (feature_dim = head_dim);
            ``mlp`` is the learnable kernel ``phi_W(q) = ReLU(W q + b)`` of the paper's Remark 1.
        layers: indices of the decoder layers that get a memory; None adapts every layer.
        feature_dim: the mlp kernel's output size (default head_dim); only valid with ``feature_map="mlp"``.
        memory_bias: a zero-initialised head_dim bias per query head, added with the memory term. On by default, as
            the paper's Table 8 counts it; adapters saved without this key predate it and load with it off.
    """

    task_type: str | None = field(
        default="CAUSAL_LM", metadata={"help": "PEFT task type; PrefixMemory targets CAUSAL_LM."}
    )
    feature_map: str = field(
        default="elu",
        metadata={"help": f"Feature map phi applied to each query head: one of {', '.join(FEATURE_MAPS)}."},
    )
    layers: list[int] | None = field(
        default=None,
        metadata={"help": "Indices of the decoder layers that get a memory (0-based); None adapts every layer."},
    )
    feature_dim: int | None = field(
        default=None,
        metadata={"help": "Output size of the `mlp` feature map (default: head_dim). Not allowed for other maps."},
    )
    memory_bias: bool = field(
        default=True,
        metadata={
            "help": "Add a trainable head_dim bias per query head with the memory term (zero at init), as the paper's "
            "Table 8 counts it. False is eq. 7 as written."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = extend_peft_type()
        # BaseTuner.inject_adapter reads target_modules; targets come from the architecture table instead.
        # A plain attribute, not a field, so it is not written to adapter_config.json.
        self.target_modules = None
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"`feature_map` must be one of {', '.join(FEATURE_MAPS)}, got {self.feature_map!r}.")
        if self.feature_dim is not None:
            if not takes_feature_dim(self.feature_map):
                raise ValueError(
                    f"`feature_dim` only applies to feature_map='mlp'; {self.feature_map!r} keeps head_dim "
                    f"(got feature_dim={self.feature_dim})."
                )
            if isinstance(self.feature_dim, bool) or not isinstance(self.feature_dim, int) or self.feature_dim < 1:
                raise ValueError(f"`feature_dim` must be a positive integer, got {self.feature_dim!r}.")
        if not isinstance(self.memory_bias, bool):
            raise ValueError(f"`memory_bias` must be true or false, got {self.memory_bias!r}.")
        if self.layers is not None:
            self.layers = _checked_layer_list(self.layers)

    @classmethod
    def check_kwargs(cls, **kwargs):
        """A saved adapter_config.json without ``memory_bias`` was written before the bias existed: it has none."""
        kwargs.setdefault("memory_bias", False)
        return super().check_kwargs(**kwargs)


def _checked_layer_list(layers) -> list[int]:
    """Validate ``layers`` as distinct non-negative ints; the upper bound is checked against the model later."""
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, (list, tuple, range)) or not layers:
        raise ValueError(f"`layers` must be None or a non-empty list of layer indices, got {layers!r}.")
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad:
        raise ValueError(f"`layers` must hold non-negative integers, got {bad!r}.")
    if len(set(layers)) != len(layers):
        raise ValueError(f"`layers` has duplicates: {list(layers)!r}.")
    return sorted(layers)
