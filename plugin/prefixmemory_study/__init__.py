"""Study tools of PrefixMemory-Tuning: benchmark, few-shot study, diagnostics, tiny models, the README's figures.

They use the method (``prefixmemory``) and LLaMA-Factory's CLI; neither imports them.
"""
