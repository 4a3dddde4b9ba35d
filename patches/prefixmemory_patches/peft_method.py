"""PEFT everywhere: register the PrefixMemory method in any program that imports peft.

Applied by the startup hook right after ``peft/__init__.py`` has executed (all of peft is loaded then), so
``PeftModel.from_pretrained`` and ``AutoPeftModelForCausalLM`` load a PrefixMemory adapter without the program
importing prefixmemory. Importing prefixmemory first also works: it is already in sys.modules then.
"""


def register(peft) -> None:
    """Import prefixmemory, which extends PeftType and calls peft's register_peft_method."""
    import prefixmemory  # noqa: F401
