"""PEFT-level tests of the PrefixMemory method (no LLaMA-Factory)."""
