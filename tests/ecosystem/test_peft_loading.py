"""Any program that imports peft loads a PrefixMemory adapter: the startup hook registers the method."""

import os
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

IDS = torch.tensor([[5, 80, 300, 17, 42, 9, 120]])

# A fresh interpreter that never imports prefixmemory: the PEFT loaders only.
_PEFT_ONLY = textwrap.dedent(
    """
    import sys
    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    base, adapter, out = sys.argv[1:4]
    ids = torch.tensor([[5, 80, 300, 17, 42, 9, 120]])
    with torch.no_grad():
        by_peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()(ids)
        by_auto = AutoPeftModelForCausalLM.from_pretrained(adapter).eval()(ids)
        bare = AutoModelForCausalLM.from_pretrained(base).eval()(ids)
    save_file({"peft_model": by_peft_model.logits, "auto": by_auto.logits, "base": bare.logits}, out)
    """
)


def our_logits(tiny_qwen2, adapter, ids):
    """Logits of the adapter loaded through our own API."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import prefixmemory  # noqa: F401

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), adapter).eval()
    with torch.no_grad():
        return model(ids).logits


def test_fresh_interpreter_loads_without_importing_prefixmemory(tiny_qwen2, pmt_adapter, tmp_path):
    out = tmp_path / "logits.safetensors"
    result = subprocess.run(
        [sys.executable, "-c", _PEFT_ONLY, str(tiny_qwen2), str(pmt_adapter), str(out)],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    logits = load_file(out)
    expected = our_logits(tiny_qwen2, pmt_adapter, IDS)
    torch.testing.assert_close(logits["peft_model"], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits["auto"], expected, atol=1e-6, rtol=1e-5)
    assert (logits["base"] - expected).abs().max() > 1e-2  # the adapter was applied


def test_the_hook_costs_nothing_without_peft():
    code = "import sys, json; print(sorted(m for m in ('peft', 'torch', 'prefixmemory') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert result.stdout.strip() == "[]", result.stderr
