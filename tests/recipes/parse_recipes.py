"""Parse recipes with their own settings into LLaMA-Factory's argument classes; print one JSON object per recipe.

Run as a subprocess by test_recipes_parse.py: ``python tests/recipes/parse_recipes.py OUT.json recipes/a.yaml ...``
(LLaMA-Factory logs to stdout, so the results go to a file).
The recipes target bf16 GPUs launched by torchrun (FORCE_TORCHRUN=1) and nothing here may reach the network, so
the caller sets HF_HUB_OFFLINE=1 and a one-process torchrun environment, and two CPU-machine effects are stubbed:
the bf16-GPU probe (transformers refuses bf16 without one) and DeepSpeed's build of its CPU shared-memory
collective kernel (a compile that init_distributed triggers on CPU, unrelated to the arguments).
"""

import json
import sys
import traceback

import deepspeed.comm.torch
import transformers.training_args
from omegaconf import OmegaConf

transformers.training_args.is_torch_bf16_gpu_available = lambda *args, **kwargs: True
deepspeed.comm.torch.build_shm_op = lambda: None

from llamafactory.hparams import get_train_args  # noqa: E402
from transformers.integrations import is_deepspeed_zero3_enabled  # noqa: E402


def parse(path: str) -> dict:
    # As llamafactory-cli reads a YAML file (hparams/parser.py read_args), with no command-line overrides.
    config = OmegaConf.to_container(OmegaConf.load(path))
    try:
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(config)
    except Exception:  # noqa: BLE001 - reported to the test, which shows it
        return {"error": traceback.format_exc(limit=3)}
    return {
        "finetuning_type": finetuning_args.finetuning_type,
        "stage": finetuning_args.stage,
        "loraplus_lr_ratio": finetuning_args.loraplus_lr_ratio,
        "pref_loss": finetuning_args.pref_loss,
        "pref_beta": finetuning_args.pref_beta,
        "simpo_gamma": finetuning_args.simpo_gamma,
        "use_ref_model": finetuning_args.use_ref_model,
        "dataset": data_args.dataset,
        "template": data_args.template,
        "default_system": data_args.default_system,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "optim": getattr(training_args.optim, "value", training_args.optim),
        "weight_decay": training_args.weight_decay,
        "adam_betas": [training_args.adam_beta1, training_args.adam_beta2],
        "adam_epsilon": training_args.adam_epsilon,
        "bf16": training_args.bf16,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "deepspeed": training_args.deepspeed,
        "zero3": is_deepspeed_zero3_enabled(),
        "compute_dtype": str(model_args.compute_dtype),
        "quantization": [
            model_args.quantization_bit,
            str(model_args.quantization_method),
            model_args.quantization_type,
        ],
    }


if __name__ == "__main__":
    out, *paths = sys.argv[1:]
    with open(out, "w") as f:
        json.dump({path: parse(path) for path in paths}, f)
