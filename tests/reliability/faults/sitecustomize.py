"""Test-only fault injection: the training process kills itself (SIGKILL) in the middle of a checkpoint write.

Put this folder first on PYTHONPATH and set PMT_KILL_IN_SAVE_AT_STEP=N: when the HF Trainer saves the checkpoint
of step N, the process dies after the adapter files are written and before the optimizer, RNG state and
trainer_state.json are, the way a kill -9 or a node loss leaves a half-written checkpoint-N.
"""

import os

if os.environ.get("PMT_KILL_IN_SAVE_AT_STEP"):
    import signal
    import sys

    from transformers import Trainer

    _kill_at = int(os.environ["PMT_KILL_IN_SAVE_AT_STEP"])
    _original_save = Trainer._save_optimizer_and_scheduler

    def _save_optimizer_and_scheduler(self, output_dir):
        if self.state.global_step == _kill_at:
            print(f"fault injection: SIGKILL while writing {output_dir}", flush=True)
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return _original_save(self, output_dir)

    Trainer._save_optimizer_and_scheduler = _save_optimizer_and_scheduler
