"""Two CPU processes (DDP, ZeRO-2, ZeRO-3, ZeRO-3 + offload) train exactly what one process trains.

Both sides see the same global batch of 2 and the same seed (see conftest.py). Tolerances, fp32 throughout:
- per-step loss: relative 1e-5; grad norm and DPO rewards: relative 1e-4. The two runs add the same numbers in a
  different order (one batched forward/backward of two rows, against two one-row passes whose gradients gloo adds,
  or DeepSpeed reduce-scatters in flat buckets). Each order changes a sum by a few ulp (fp32 eps = 1.2e-7);
  measured: at most 6e-7 on losses, 2.3e-6 on grad norms (ZeRO-3 offload), over 6 steps. A real fault moves these
  by percents: another row in a step, a missing or doubled all-reduce (the grad norm halves or doubles; Adam hides
  the scale in M but not in the norm).
- saved memories: absolute 1e-5 for entries of size ~0.1 (measured: at most 5.5e-7). Adam with lr 2e-2 moves each
  entry by up to 2e-2 a step, so a single wrong update is three orders of magnitude above the tolerance.
"""

from pathlib import Path

import pytest
import torch
from distrun import MEMORY_NUMEL, STEPS, assert_same_training, history

# ZeRO-2 shards only the optimizer state, which DDP and ZeRO-3 bracket: its run is in the slow suite.
ENGINES = [
    "ddp",
    pytest.param("zero2", marks=pytest.mark.slow),
    "zero3",
    pytest.param("zero3_offload", marks=pytest.mark.slow),
]


def zero_shards(checkpoint: Path) -> dict:
    """Per rank: numel of the memories held in the module state, and of the fp32 optimizer partition."""
    folder = next(Path(checkpoint).glob("global_step*"))
    shards = {}
    for rank in (0, 1):
        optim = torch.load(folder / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt", weights_only=False)
        state = optim["optimizer_state_dict"]
        flat = state.get("fp32_flat_groups") or state["single_partition_of_fp32_groups"]  # ZeRO-3 / ZeRO-2
        model_file = folder / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt"  # ZeRO-3: one per rank
        if not model_file.exists():
            model_file = folder / "mp_rank_00_model_states.pt"  # ZeRO-2: one for all
        model = torch.load(model_file, weights_only=False)
        module_numel = sum(t.numel() for name, t in model["module"].items() if "prefixmemory_memory" in name)
        shards[rank] = (module_numel, sum(t.numel() for t in flat))
    return shards


@pytest.mark.parametrize("engine", ENGINES)
def test_sft_matches_single_process(engine, runs):
    run = runs.distributed(engine, "sft")
    assert_same_training(run, runs.single("sft"))
    checkpoint = run / f"checkpoint-{STEPS}"
    if engine == "ddp":
        assert not list(checkpoint.glob("global_step*"))
        return
    shards = zero_shards(checkpoint)
    # The optimizer holds half the memories on each rank; ZeRO-3 also partitioned the memories themselves (the
    # module state keeps empty placeholders), yet the saved adapter above holds the full, gathered tensors.
    module_numel = 0 if engine.startswith("zero3") else MEMORY_NUMEL
    assert shards == {0: (module_numel, MEMORY_NUMEL // 2), 1: (module_numel, MEMORY_NUMEL // 2)}


@pytest.mark.parametrize("engine", [pytest.param("ddp", marks=pytest.mark.slow), "zero3"])
def test_dpo_matches_single_process(engine, runs):
    """DPO's reference pass is the policy with the memory switched off, also while ZeRO-3 shards the memory."""
    run = runs.distributed(engine, "dpo")
    keys = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected")
    assert_same_training(run, runs.single("dpo"), keys)
    losses = [row["loss"] for row in history(run)]
    assert losses[0] == pytest.approx(0.6931472, abs=1e-6)  # M = 0 at step 1: policy == reference
    assert losses[-1] < 0.5  # later the memory is on in the policy pass and off in the reference pass


@pytest.mark.slow
def test_dpo_from_sft_adapter_under_zero3(runs):
    """Continuing from an SFT adapter, the reference is the SFT model (a frozen copy of its memories), not the bare
    base model, also when ZeRO-3 partitions the parameters."""
    start = {"adapter_name_or_path": str(runs.single("sft"))}
    run = runs.distributed("zero3", "dpo", "from_sft", **start)
    keys = ("loss", "grad_norm", "rewards/chosen", "rewards/rejected")
    assert_same_training(run, runs.single("dpo", "from_sft", **start), keys)
    first = history(run)[0]  # policy == reference == the SFT model
    assert first["loss"] == pytest.approx(0.6931472, abs=1e-6) and abs(first["rewards/chosen"]) < 1e-6
