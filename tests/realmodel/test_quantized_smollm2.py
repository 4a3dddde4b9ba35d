"""A PrefixMemory adapter moves between the 4-bit and the fp32 SmolLM2-135M-Instruct: how far the logits move.

Two adapters are trained by llamafactory-cli on the README's capitals demo (recipes/demo_smollm2_pmt.yaml, 10 of its
30 steps), one on the fp32 base and one on its bitsandbytes NF4 base (`quantization_bit: 4`). Each is then served on
both bases and compared at the next-token position of the 40 held-out questions: KL divergence of the next-token
distributions, top-1 agreement, mean absolute logit difference. The bare bases give the quantization's own distance;
the adapters must add little to it. `pytest -m slow -s` prints the table quoted in docs/quantization.md.
"""

import json
from pathlib import Path

import pytest
import torch
from lfcli import run_cli
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

import prefixmemory  # noqa: F401  (registers the PEFT method)

pytest.importorskip("bitsandbytes")
REPO = Path(__file__).resolve().parents[2]


def _base(folder, quantized: bool):
    if not quantized:
        return AutoModelForCausalLM.from_pretrained(folder).eval()
    config = BitsAndBytesConfig(  # LLaMA-Factory's quantization_bit: 4 on a CPU run in fp32
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_storage=torch.float32,
    )  # fmt: skip
    return AutoModelForCausalLM.from_pretrained(folder, quantization_config=config, device_map={"": "cpu"}).eval()


def _next_token_logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits[:, -1].float()  # left padding: the last position is every row's next token


def _distance(first: torch.Tensor, second: torch.Tensor) -> dict:
    p, q = first.log_softmax(-1), second.log_softmax(-1)
    return {
        "kl": (p.exp() * (p - q)).sum(-1).mean().item(),
        "top1": (first.argmax(-1) == second.argmax(-1)).float().mean().item(),
        "mean_abs": (first - second).abs().mean().item(),
    }


@pytest.fixture(scope="module")
def adapters(smollm2_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smollm2")
    folders = {}
    for name, extra in (("fp32", []), ("nf4", ["quantization_bit=4"])):
        folders[name] = workdir / name
        overrides = [f"model_name_or_path={smollm2_dir}", f"output_dir={folders[name]}", "max_steps=10", *extra]
        run_cli("train", None, REPO, str(REPO / "recipes/demo_smollm2_pmt.yaml"), *overrides)
    return folders


@pytest.mark.slow
def test_adapters_move_between_the_4bit_and_the_fp32_base(smollm2_dir, adapters):
    from peft import PeftModel

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir, padding_side="left")
    rows = json.loads((REPO / "data/capitals_heldout.json").read_text())
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": row["instruction"]}], add_generation_prompt=True,
                                      tokenize=False)
        for row in rows
    ]  # fmt: skip
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    logits = {}
    for base in ("fp32", "nf4"):
        logits[base, None] = _next_token_logits(_base(smollm2_dir, base == "nf4"), batch)
        for trained_on, folder in adapters.items():
            model = PeftModel.from_pretrained(_base(smollm2_dir, base == "nf4"), folder).eval()
            logits[base, trained_on] = _next_token_logits(model, batch)
    table = {
        adapter or "none (bare bases)": _distance(logits["fp32", adapter], logits["nf4", adapter])
        for adapter in (None, "fp32", "nf4")
    }
    effect = {adapter: _distance(logits["fp32", adapter], logits["fp32", None]) for adapter in ("fp32", "nf4")}
    print("\nadapter trained on | KL(fp32 base || nf4 base) | top-1 agreement | mean |logit diff|")
    for adapter, row in table.items():
        print(f"{adapter} | {row['kl']:.4f} | {row['top1']:.3f} | {row['mean_abs']:.4f}")
    print("adapter effect on the fp32 base (vs bare):", {k: round(v["kl"], 4) for k, v in effect.items()})
    bare = table["none (bare bases)"]
    for adapter in ("fp32", "nf4"):
        assert effect[adapter]["kl"] > bare["kl"], "the adapter moves the model less than quantization does"
        assert table[adapter]["kl"] < 2 * bare["kl"] + 0.01, f"the {adapter}-trained adapter adds to the distance"
