"""Toy data sets for LLaMA-Factory runs that finish in seconds: the tests' end-to-end runs and prefixmemory-gpucheck.

One sft, one preference (DPO), one KTO and one pre-training set, registered in a dataset_info.json, and the settings
of a short PrefixMemory sft run on them. Kept in the package, not in tests/, because the GPU check ships with it.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS = 48  # rows per set


def toy_sets(rows: int = ROWS) -> dict[str, tuple[dict, list]]:
    """name -> (dataset_info entry, ``rows`` rows). Repetitive on purpose, so a few steps visibly lower every loss."""
    numbers = range(rows)
    sft = [
        {"instruction": f"Count to {i % 5 + 1}.", "input": "", "output": " ".join(map(str, range(1, i % 5 + 2)))}
        for i in numbers
    ]
    pref = [
        {"instruction": f"Say yes {i}.", "input": "", "chosen": "yes yes yes", "rejected": f"no {i} no"}
        for i in numbers
    ]
    kto = [
        {
            "messages": [
                {"role": "user", "content": f"Say yes {i}."},
                {"role": "assistant", "content": "yes yes yes" if i % 2 else f"no {i} no"},
            ],
            "label": bool(i % 2),
        }
        for i in numbers
    ]
    pt = [{"text": "the sea is wide, the sea is deep. " * 4} for _ in numbers]
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    pref_columns = {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}
    return {
        "toy_sft": ({"file_name": "toy_sft.json"}, sft),
        "toy_pref": ({"file_name": "toy_pref.json", "ranking": True, "columns": pref_columns}, pref),
        "toy_kto": (
            {
                "file_name": "toy_kto.json",
                "formatting": "sharegpt",
                "columns": {"messages": "messages", "kto_tag": "label"},
                "tags": tags,
            },
            kto,
        ),
        "toy_pt": ({"file_name": "toy_pt.json", "columns": {"prompt": "text"}}, pt),
    }


def write_toy_data(folder: Path, rows: int = ROWS) -> Path:
    """Write every toy set and its dataset_info.json into ``folder`` (a LLaMA-Factory dataset_dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, (entry, records) in toy_sets(rows).items():
        (folder / entry["file_name"]).write_text(json.dumps(records))
        info[name] = entry
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return folder


def toy_train_config(model, data, output_dir, **overrides) -> dict:
    """A short PMT sft run of ``model`` on the toy sets: the settings every end-to-end suite shares."""
    config = {
        "model_name_or_path": str(model),
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "prefixmemory",
        "dataset": "toy_sft",
        "dataset_dir": str(data),
        "template": "qwen",
        "cutoff_len": 64,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 2.0e-2,
        "lr_scheduler_type": "constant",
        "max_steps": 30,
        "logging_steps": 1,
        "save_steps": 1000,
        "report_to": "none",
        "seed": 7,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
    }
    config.update(overrides)
    return config
