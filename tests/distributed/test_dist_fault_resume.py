"""A rank killed mid-run under ZeRO-3: the launcher fails loudly, the last checkpoint loads, and resuming from it
ends exactly where the uninterrupted run ends.

Rank 1 sends itself SIGKILL at the start of step KILL_AT + 1 (faults/sitecustomize.py). The checkpoint of step
SAVE_EVERY is complete by then: step KILL_AT's all-reduces needed rank 0, which writes the checkpoint before it
starts the next step. No later checkpoint is due before the kill, so the run stops with exactly one.
"""

import os
import re
from pathlib import Path

import pytest
import torch
from distrun import DEEPSPEED, HERE, SAVE_EVERY, STEPS, adapter, history, torchrun_train
from transformers.trainer_utils import get_last_checkpoint

KILL_AT = SAVE_EVERY + 1
assert KILL_AT < 2 * SAVE_EVERY
ZERO3 = f"deepspeed={DEEPSPEED['zero3']}"


@pytest.fixture(scope="module")
def killed_zero3(runs):
    """The ZeRO-3 sft run of the equivalence test, with rank 1 killed after step KILL_AT."""
    config = runs.config("killed_zero3_sft", "sft")
    pythonpath = os.pathsep.join(filter(None, [str(HERE / "faults"), os.environ.get("PYTHONPATH")]))
    result = torchrun_train(
        config, runs.workdir("killed_zero3_sft"), ZERO3, check=False,
        PYTHONPATH=pythonpath, PMT_KILL_RANK=1, PMT_KILL_AT_STEP=KILL_AT,
    )  # fmt: skip
    return config, result


def test_killed_rank_fails_the_launcher_with_its_error(killed_zero3):
    _, result = killed_zero3
    assert result.returncode != 0
    assert f"fault injection: rank 1 sends itself SIGKILL at step {KILL_AT + 1}" in result.stdout
    # torchrun's failure report (which LLaMA-Factory's launcher passes through) lists the rank that died and how. It
    # is usually the "Root Cause"; rank 0 can take that place if its own error lands in the same second.
    report = result.stderr[result.stderr.rindex("FAILED") :]
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*\n\s*exitcode\s*: -9 .*\(SIGKILL\)", report), report
    assert "Signal 9 (SIGKILL) received by PID" in report, report


def test_last_checkpoint_of_killed_run_loads(killed_zero3, tiny_qwen2):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    import prefixmemory  # noqa: F401  registers the PEFT method

    config, _ = killed_zero3
    out = Path(config["output_dir"])
    last = Path(get_last_checkpoint(out))
    assert last.name == f"checkpoint-{SAVE_EVERY}"
    assert not (out / "adapter_model.safetensors").exists()  # the run never reached its final save

    saved = adapter(last)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), last)
    loaded = {k: v for k, v in model.state_dict().items() if "prefixmemory_memory" in k}
    assert len(loaded) == len(saved) == 4  # M and its bias in each of the 2 layers
    for key, tensor in loaded.items():
        torch.testing.assert_close(tensor, saved[key.replace(".default.", ".")], rtol=0, atol=0)
        assert tensor.abs().max() > 0

    # Both ranks' ZeRO-3 shards are there and consistent: they rebuild the same memories.
    rebuilt = get_fp32_state_dict_from_zero_checkpoint(str(last))
    assert sorted(rebuilt) == sorted(loaded)
    for key, tensor in rebuilt.items():
        torch.testing.assert_close(tensor.detach(), loaded[key], rtol=0, atol=0)


def test_zero3_resume_matches_uninterrupted_run(killed_zero3, runs):
    config, _ = killed_zero3
    out = Path(config["output_dir"])
    resume = dict(config, resume_from_checkpoint=str(out / f"checkpoint-{SAVE_EVERY}"))
    torchrun_train(resume, runs.workdir("killed_zero3_sft"), ZERO3)

    uninterrupted = runs.distributed("zero3", "sft")
    got, want = history(out), history(uninterrupted)
    assert [row["step"] for row in got] == list(range(1, STEPS + 1))
    for key in ("loss", "grad_norm"):
        # Same processes, same operations in the same order: measured identical; 1e-6 leaves room for nothing else.
        assert [row[key] for row in got] == pytest.approx([row[key] for row in want], rel=1e-6, abs=1e-6), key
    got_memories, want_memories = adapter(out), adapter(uninterrupted)
    assert sorted(got_memories) == sorted(want_memories)
    for key in want_memories:
        torch.testing.assert_close(got_memories[key], want_memories[key], rtol=0, atol=1e-6, msg=key)
