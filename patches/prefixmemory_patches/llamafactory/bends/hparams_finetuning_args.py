"""Bends ``llamafactory.hparams.finetuning_args``: two more fine-tuning types, their keys, and their PEFT config.

| LLaMA-Factory name | change | why |
| --- | --- | --- |
| FinetuningArguments | subclass: + prefixmemory, prefix and their keys | its Literal: argparse choices |
| FinetuningArguments.__post_init__ | our types validated, their PEFT config built | upstream asserts its own list |

The subclass is made when upstream's module has run (its base class exists only then), before parser.py and
hparams/__init__.py bind the name.
"""

from dataclasses import dataclass, field, fields
from typing import Literal

from ...errors import PrefixMemoryError
from ...seams import Seam, bends, require
from .. import OUR_TYPES, as_finetuning_type, mark_patched, wraps_original
from ..checks.given_keys import FINETUNING_TYPES
from ..options import PrefixMemoryArguments, PrefixTuningArguments

# Upstream switches that mean nothing to our methods: turning one on with them is refused. (The web UI sends them
# all, off; keys of the other methods are refused when present at all, in checks/given_keys.py.)
FOREIGN_SWITCHES = ("use_galore", "use_apollo", "use_badam", "use_llama_pro")


@bends(
    Seam("FinetuningArguments", fields=("finetuning_type",)),
    Seam("FinetuningArguments.__post_init__", params=("self",)),
)
def guard_finetuning_args(module) -> None:
    """Stop our methods with one line when a seam is missing, even if the subclass below cannot be installed."""

    @wraps_original(module, "FinetuningArguments.__post_init__")
    def guarded_post_init(post_init, self):
        if self.finetuning_type in OUR_TYPES:
            require(self.finetuning_type)
        return post_init(self)


@bends(
    Seam("FinetuningArguments", fields=("stage", "ref_model", "pref_loss", *FOREIGN_SWITCHES)),
    Seam("LoraArguments", fields=("lora_rank", "lora_target")),
    Seam("OFTArguments", fields=("oft_rank",)),
    Seam("FreezeArguments", fields=("freeze_trainable_layers",)),
)
def patch_finetuning_args(module) -> None:
    """Replace FinetuningArguments with the subclass below."""
    if mark_patched(module, "finetuning_args"):
        module.FinetuningArguments = with_our_types(module.FinetuningArguments)


def with_our_types(upstream: type) -> type:
    """Upstream's FinetuningArguments plus our types and keys; pickles and prints under upstream's name."""
    switches = [f for f in fields(upstream) if f.name in FOREIGN_SWITCHES]

    @dataclass
    class FinetuningArguments(upstream, PrefixMemoryArguments, PrefixTuningArguments):
        __doc__ = upstream.__doc__
        finetuning_type: Literal[FINETUNING_TYPES] = field(
            default="lora", metadata={"help": "Which fine-tuning method to use."}
        )

        def __post_init__(self):
            self.peft_config = None  # prefixmemory / prefix: their PEFT config, built here, used to load the model
            if self.finetuning_type not in OUR_TYPES:
                return upstream.__post_init__(self)
            require(self.finetuning_type)
            for f in switches:
                if getattr(self, f.name) != f.default:
                    raise PrefixMemoryError(
                        f"`{f.name}` does not apply to finetuning_type: {self.finetuning_type} "
                        f"(got {getattr(self, f.name)!r})."
                    )
            if self.stage == "ppo":
                raise PrefixMemoryError(
                    f"`stage: ppo` is not supported with finetuning_type: {self.finetuning_type}: LLaMA-Factory's "
                    "PPO trainer needs trl<=0.9.6, which its own trl range (>=0.18) excludes."
                )
            # Built (and so validated) before any model is loaded.
            prefix = self.finetuning_type == "prefix"
            self.peft_config = self.prefix_tuning_config() if prefix else self.prefixmemory_config()
            with as_finetuning_type(self, "full"):  # upstream asserts its own list; its other checks still run
                upstream.__post_init__(self)

    FinetuningArguments.__module__ = upstream.__module__
    FinetuningArguments.__qualname__ = upstream.__qualname__
    return FinetuningArguments
