"""PrefixMemory-Tuning as a PEFT method: ``import prefixmemory`` registers ``PeftType.PREFIXMEMORY``."""

from peft.utils import register_peft_method

from .config import PrefixMemoryConfig
from .layer import Memory, MemoryInjector, PrefixMemoryLayer
from .model import PrefixMemoryModel
from .peft_type import extend_peft_type
from .reference import attach_reference

__all__ = [
    "attach_reference",
    "Memory",
    "MemoryInjector",
    "PrefixMemoryConfig",
    "PrefixMemoryLayer",
    "PrefixMemoryModel",
]
__version__ = "0.1.0"

extend_peft_type()
register_peft_method(name="prefixmemory", config_cls=PrefixMemoryConfig, model_cls=PrefixMemoryModel)
