"""Test only: ``accelerate launch -m cpu_fsdp <yaml>`` runs LLaMA-Factory's launcher with FSDP on CPU processes.

accelerate 1.11 turns FSDP on only for accelerator devices: in ``AcceleratorState.__init__`` the FSDP branch sits
under ``distributed_type in [MULTI_GPU, MULTI_NPU, ...]`` (accelerate/state.py:981-1009), so with CPU processes
``accelerate launch`` with an FSDP config silently trains plain DDP (MULTI_CPU) and no test of ours would notice.
Torch's FSDP itself runs on CPU with gloo. This module opens that one gate: when accelerate was given an FSDP plugin
and chose MULTI_CPU, the state becomes FSDP with device ``cpu`` (FSDP refuses ``cpu:0``: parameters report ``cpu``).
Everything after it is unmodified: accelerate's FSDP wrapping with the policy the Trainer picks for PEFT models,
the Trainer's FSDP checkpoints and its adapter saving, and LLaMA-Factory's launcher module, run as
``accelerate launch -m llamafactory.launcher`` runs it.
"""

import runpy

import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

_init = AcceleratorState.__init__


def _init_allowing_cpu_fsdp(self, *args, fsdp_plugin=None, **kwargs):
    _init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
    if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
        self.fsdp_plugin = fsdp_plugin
        # As the GPU branch does, in both shared states (state.py:1007 and :1037): later AcceleratorState() calls
        # copy PartialState's values over their own.
        for state in (self.__dict__, PartialState._shared_state):
            state.update(distributed_type=DistributedType.FSDP, device=torch.device("cpu"))


if __name__ == "__main__":
    AcceleratorState.__init__ = _init_allowing_cpu_fsdp
    runpy.run_module("llamafactory.launcher", run_name="__main__", alter_sys=True)
