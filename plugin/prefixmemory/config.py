"""Configuration of a PrefixMemory adapter."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from peft.config import PeftConfig

from .feature_maps import FEATURE_MAPS, takes_feature_dim
from .peft_type import extend_peft_type


@dataclass
class PrefixMemoryConfig(PeftConfig):
    """PrefixMemory-Tuning (arXiv 2506.13674, eq. 7): per query head, ``o_i += phi(q_i) @ M``.

    Args:
        feature_map: phi. ``elu``, ``gelu`` and ``relu`` act element-wise (feature_dim = head_dim);
            ``mlp`` is the learnable kernel ``phi_W(q) = ReLU(W q + b)`` of the paper's Remark 1.
        layers: indices of the decoder layers that get a memory (a list, or text like ``"0,2,4"``, ``"0-11"``);
            None or ``"all"`` adapts every layer.
        feature_dim: the mlp kernel's output size (default head_dim); only valid with ``feature_map="mlp"``.
        memory_bias: a zero-initialised head_dim bias per query head, added with the memory term. On by default, as
            the paper's Table 8 counts it; adapters saved without this key predate it and load with it off.
        base_model_type, base_num_layers, base_num_heads, base_head_dim: the base model the adapter was made for,
            recorded when it is created and compared when it loads (see ``fit_base_model``); not set by users.
    """

    task_type: str | None = field(
        default="CAUSAL_LM", metadata={"help": "PEFT task type; PrefixMemory targets CAUSAL_LM."}
    )
    feature_map: str = field(
        default="elu",
        metadata={
            "help": f"Feature map phi applied to each query head: one of {', '.join(FEATURE_MAPS)}.",
            "option": True,
            "choices": tuple(FEATURE_MAPS),
        },
    )
    layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "Decoder layers that get a memory (0-based): `all`, a list like `0,2,4`, or a range like `0-11`.",
            "option": True,
            "none": "all",
        },
    )
    feature_dim: int | None = field(
        default=None,
        metadata={
            "help": "Output size of the `mlp` feature map (default: head_dim); only valid with mlp.",
            "option": True,
            "none": "head_dim",
        },
    )
    memory_bias: bool = field(
        default=True,
        metadata={
            "help": "Add a trainable head_dim bias per query head with the memory term (zero at init), as the paper's "
            "Table 8 counts it; false is eq. 7 as written.",
            "option": True,
        },
    )

    # The base model's geometry (model.py records it through fit_base_model). None: an adapter saved before.
    base_model_type: str | None = field(
        default=None, metadata={"help": "model_type of the base model the adapter was made for (recorded)."}
    )
    base_num_layers: int | None = field(
        default=None, metadata={"help": "Decoder layers of the base model the adapter was made for (recorded)."}
    )
    base_num_heads: int | None = field(
        default=None, metadata={"help": "Query heads per layer of the base model the adapter was made for (recorded)."}
    )
    base_head_dim: int | None = field(
        default=None, metadata={"help": "head_dim of the base model the adapter was made for (recorded)."}
    )

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = extend_peft_type()
        # BaseTuner.inject_adapter reads target_modules; targets come from the architecture table instead.
        # A plain attribute, not a field, so it is not written to adapter_config.json.
        self.target_modules = None
        if self.feature_map not in FEATURE_MAPS:
            choices = ", ".join(FEATURE_MAPS)
            raise ConfigValueError("feature_map", f"must be one of {choices}, got {self.feature_map!r}.")
        if self.feature_dim is not None:
            if not takes_feature_dim(self.feature_map):
                raise ConfigValueError(
                    "feature_dim",
                    f"only applies to the mlp feature map; {self.feature_map!r} keeps head_dim "
                    f"(got {self.feature_dim}).",
                )
            if isinstance(self.feature_dim, bool) or not isinstance(self.feature_dim, int) or self.feature_dim < 1:
                raise ConfigValueError("feature_dim", f"must be a positive integer, got {self.feature_dim!r}.")
        if not isinstance(self.memory_bias, bool):
            raise ConfigValueError("memory_bias", f"must be true or false, got {self.memory_bias!r}.")
        self.layers = _checked_layers(self.layers)

    def fit_base_model(self, **geometry) -> None:
        """Refuse a base model other than the recorded one; record it where nothing is (a new or older adapter).

        An adapter's shapes and keys follow its model's layers, heads and head_dim, and the architecture decides
        where q is read: another model would load it partly, or not at all, without this check.
        """
        differ = [
            f"`{name}` {saved} (this model: {value})"
            for name, saved, value in base_model_differences(vars(self), geometry)
        ]
        if differ:
            raise ValueError(f"This PrefixMemory adapter was made for another model: {', '.join(differ)}.")
        for name, value in geometry.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    @classmethod
    def check_kwargs(cls, **kwargs):
        """A saved adapter_config.json without ``memory_bias`` was written before the bias existed: it has none."""
        kwargs.setdefault("memory_bias", False)
        return super().check_kwargs(**kwargs)


def base_model_differences(recorded: dict, geometry: dict) -> list[tuple[str, object, object]]:
    """(name, recorded value, this model's) of each base-model fact (``base_*`` names) ``recorded`` (an adapter's
    config fields, or its adapter_config.json) holds and ``geometry`` (this model's) differs in; a fact either side
    lacks (an adapter saved before it was recorded, a config without it) is not compared."""
    return [
        (name, recorded[name], value)
        for name, value in geometry.items()
        if recorded.get(name) is not None and value is not None and recorded[name] != value
    ]


class ConfigValueError(ValueError):
    """A bad value of one config field; ``for_key`` says the same under the name the user wrote (``pmt_layers``)."""

    def __init__(self, field_name: str, reason: str):
        self.field, self.reason = field_name, reason
        super().__init__(self.for_key(field_name))

    def for_key(self, key: str) -> str:
        return f"`{key}` {self.reason}"


def options() -> list:
    """The config fields a user chooses (name, type, default, help, choices): the one declaration of them."""
    return [f for f in fields(PrefixMemoryConfig) if f.metadata.get("option")]


def _checked_layers(layers) -> list[int] | None:
    """``None``/``all`` -> None; ``3``, ``[0, 2]``, ``"0,2,4"`` or ``"0-11"`` -> sorted distinct indices >= 0.

    The upper bound is checked against the model later.
    """
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return None
    if isinstance(layers, str):
        layers = _parse_layer_text(layers)
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    if not isinstance(layers, (list, tuple, range)) or not layers:
        raise ConfigValueError("layers", f"must be `all` or a non-empty list of layer indices, got {layers!r}.")
    bad = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or i < 0]
    if bad:
        raise ConfigValueError("layers", f"must hold non-negative integers, got {bad!r}.")
    if len(set(layers)) != len(layers):
        raise ConfigValueError("layers", f"has duplicates: {list(layers)!r}.")
    return sorted(layers)


def _parse_layer_text(text: str) -> list[int]:
    layers = []
    try:
        for part in text.split(","):
            start, dash, stop = part.strip().partition("-")
            layers.extend(range(int(start), int(stop) + 1) if dash else [int(start)])
    except ValueError:
        raise ConfigValueError(
            "layers", f"must be `all`, a list like `0,2,4` or a range like `0-11`, got {text!r}."
        ) from None
    return layers
