"""Test-only fault injection: one torchrun worker kills itself with SIGKILL at a chosen training step.

Python imports ``sitecustomize`` at start-up from the first folder on sys.path that has one, so a test that puts
this folder on PYTHONPATH reaches every worker torchrun starts, with LLaMA-Factory left unmodified. In the worker
whose RANK equals PMT_KILL_RANK, ``Trainer.training_step`` sends SIGKILL to its own process when
``state.global_step`` equals PMT_KILL_AT_STEP, i.e. at the start of step PMT_KILL_AT_STEP + 1.
"""

import os
import sys

if os.environ.get("PMT_KILL_RANK") is not None and os.environ.get("RANK") == os.environ["PMT_KILL_RANK"]:
    import signal

    from transformers import Trainer

    _kill_at = int(os.environ["PMT_KILL_AT_STEP"])
    _training_step = Trainer.training_step

    def training_step(self, *args, **kwargs):
        if self.state.global_step == _kill_at:
            print(f"fault injection: rank {os.environ['RANK']} sends itself SIGKILL at step {_kill_at + 1}")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return _training_step(self, *args, **kwargs)

    Trainer.training_step = training_step
