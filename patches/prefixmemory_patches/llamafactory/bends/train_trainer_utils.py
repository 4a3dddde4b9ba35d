"""Bends ``llamafactory.train.trainer_utils``: training stages.

| LLaMA-Factory function               | change                | why                                                  |
|--------------------------------------|-----------------------|------------------------------------------------------|
| train.trainer_utils.create_ref_model | None for our methods | reference = same weights, adapter off: no copy |

Patched in trainer_utils itself, before the dpo/kto/sft workflows bind ``create_ref_model`` by name.
"""

from __future__ import annotations

from ...seams import Seam, bends
from .. import OUR_TYPES, wraps_original


@bends(Seam("create_ref_model", params=("model_args", "finetuning_args", "add_valuehead")))
def patch_trainer_utils(trainer_utils) -> None:
    @wraps_original(trainer_utils, "create_ref_model")
    def patched_create_ref_model(create_ref_model, model_args, finetuning_args, add_valuehead: bool = False):
        if finetuning_args.finetuning_type in OUR_TYPES and finetuning_args.ref_model is None:
            return None  # the trainers then call model.disable_adapter() for the reference pass
        return create_ref_model(model_args, finetuning_args, add_valuehead)
