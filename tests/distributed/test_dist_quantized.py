"""A 4-bit bitsandbytes base (QLoRA's setting) across two CPU processes, as LLaMA-Factory allows it for LoRA.

DDP and DeepSpeed ZeRO-3 train exactly what one process trains, with the tolerances of test_dist_equivalence.py:
the frozen 4-bit layers dequantize the same way in every process (LLaMA-Factory stores them in the compute dtype
under ZeRO-3, `bnb_4bit_quant_storage`), so only the order of the gradient sums differs.
"""

import pytest
from distrun import assert_same_training

pytest.importorskip("bitsandbytes")


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "zero3"])
def test_4bit_base_matches_single_process(engine, runs):
    run = runs.distributed(engine, "sft", "4bit", quantization_bit=4)
    assert_same_training(run, runs.single("sft", "4bit", quantization_bit=4))
