"""LLaMA-Factory's FinetuningArguments with two more fine-tuning types, their keys, and their PEFT config.

The class subclasses upstream's, which exists only once llamafactory/hparams/finetuning_args.py has run, so this
module is imported only from ``hparams.patch_finetuning_args``, at that moment.
"""

from dataclasses import dataclass, field, fields
from typing import Literal

from llamafactory.hparams.finetuning_args import FinetuningArguments as UpstreamArguments

from ..errors import PrefixMemoryError
from ..seams import require
from . import OUR_TYPES, as_finetuning_type
from .arguments import PrefixMemoryArguments, PrefixTuningArguments
from .raw_args import FINETUNING_TYPES

FinetuningType = Literal[FINETUNING_TYPES]
# Upstream switches that mean nothing to our methods: turning one on with them is refused. (The web UI sends them
# all, off; keys of the other methods are refused when present at all, in raw_args.)
FOREIGN_SWITCHES = [
    f for f in fields(UpstreamArguments) if f.name in ("use_galore", "use_apollo", "use_badam", "use_llama_pro")
]


@dataclass
class FinetuningArguments(UpstreamArguments, PrefixMemoryArguments, PrefixTuningArguments):
    __doc__ = UpstreamArguments.__doc__
    finetuning_type: FinetuningType = field(default="lora", metadata={"help": "Which fine-tuning method to use."})

    def __post_init__(self):
        self.peft_config = None  # prefixmemory / prefix: their PEFT config, built here and used to load the model
        if self.finetuning_type not in OUR_TYPES:
            return UpstreamArguments.__post_init__(self)
        require(self.finetuning_type)
        for f in FOREIGN_SWITCHES:
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
            UpstreamArguments.__post_init__(self)


FinetuningArguments.__module__ = UpstreamArguments.__module__
FinetuningArguments.__qualname__ = UpstreamArguments.__qualname__
