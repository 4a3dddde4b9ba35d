"""The methods of the comparison, each as the paper set it (section 6.1, appendix A.1), on any causal LM.

Every trained method gets the same budget (steps, batch, data, optimizer); only its learning rate is its own,
picked by ``prefixmemory-miniature sweep`` on the validation split (the paper runs every method at 2e-5 for 4,000
steps, a budget a CPU cannot spend; at a few dozen steps one shared rate would measure the rate, not the method).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The learning rates ``sweep`` tries per method, and the ones it picked (docs/real_model.md has the sweep's table).
LEARNING_RATE_GRID = {
    "pmt-elu": (3e-5, 1e-4, 3e-4, 1e-3),
    "pmt-gelu": (3e-5, 1e-4, 3e-4, 1e-3),
    "prefix": (3e-4, 1e-3, 3e-3, 1e-2),
    "lora": (1e-4, 3e-4, 1e-3, 3e-3),
    "full": (3e-6, 1e-5, 3e-5, 1e-4),
}


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    kind: str  # "peft", "full" (every weight trains), "zero-shot" or "icl" (no training)
    options: dict = field(default_factory=dict)

    @property
    def trains(self) -> bool:
        return self.kind in ("peft", "full")

    def peft_config(self):
        """The PEFT config of this method (PEFT's own tuner classes; ours for PrefixMemory)."""
        from peft import LoraConfig, PrefixTuningConfig

        from prefixmemory import PrefixMemoryConfig

        if self.name.startswith("pmt"):
            return PrefixMemoryConfig(**self.options)
        if self.name == "prefix":
            return PrefixTuningConfig(task_type="CAUSAL_LM", **self.options)
        if self.name == "lora":
            return LoraConfig(task_type="CAUSAL_LM", **self.options)
        raise ValueError(f"`{self.name}` has no PEFT config.")


METHODS = {
    method.name: method
    for method in (
        Method("zero-shot", "Base (zero-shot)", "zero-shot"),
        Method("icl", "Base (in-context)", "icl"),
        Method("pmt-elu", "PMT (elu)", "peft", {"feature_map": "elu"}),
        # Table 2: gelu is the paper's best feature map.
        Method("pmt-gelu", "PMT (gelu)", "peft", {"feature_map": "gelu"}),
        # Section 6.1: m = 32, and the original implementation's MLP reparameterisation.
        Method("prefix", "Prefix-tuning", "peft", {"num_virtual_tokens": 32, "prefix_projection": True}),
        # Appendix A.1: r = 64; q_proj and v_proj as Table 8 counts it; alpha = 2r, LLaMA-Factory's default.
        Method("lora", "LoRA r64", "peft", {"r": 64, "lora_alpha": 128, "target_modules": ["q_proj", "v_proj"]}),
        Method("full", "Full fine-tuning", "full"),
    )
}


def method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"`--methods`: unknown method {name!r}; known: {', '.join(METHODS)}.") from None
