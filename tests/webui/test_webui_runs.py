"""Real runs started from the web UI's handlers (what Start, Abort, Load model, Export and Evaluate call).

Each run is the UI's own ``llamafactory-cli train <yaml>`` subprocess, monitored by the UI's runner, on a tiny
model; the Chat and Export tabs run in this process, as in ``llamafactory-cli webui``.
"""

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import PeftConfig, PeftModel
from transformers import AutoModelForCausalLM

pytestmark = pytest.mark.slow

# Few steps, one process, no mixed precision: what a person types into "Extra arguments" for a CPU smoke run.
EXTRA = {
    "optim": "adamw_torch", "max_steps": 8, "logging_steps": 1, "gradient_accumulation_steps": 1,
    "preprocessing_num_workers": 1, "dataloader_num_workers": 0, "save_steps": 1000, "seed": 7,
}  # fmt: skip


@pytest.fixture(scope="module")
def filled(ui, tiny_qwen2, toy_data):
    """A filled form for ``method``; element ids as keyword arguments override."""

    def make(method: str = "prefixmemory", extra: dict | None = None, **values) -> dict:
        base = {
            "top.model_name": "Custom", "top.model_path": str(tiny_qwen2), "top.finetuning_type": method,
            "top.template": "qwen", "train.dataset_dir": str(toy_data), "train.dataset": ["toy_sft"],
            "train.compute_type": "fp32", "train.learning_rate": "2e-2", "train.lr_scheduler_type": "constant",
            "train.extra_args": json.dumps({**EXTRA, **(extra or {})}),
            "eval.dataset_dir": str(toy_data), "eval.dataset": ["toy_sft"], "eval.max_samples": "4",
            "eval.max_new_tokens": 4, "eval.cutoff_len": 64, "eval.batch_size": 2,
        }  # fmt: skip
        return ui.form({**base, **values})

    return make


def _train(ui, data) -> list[dict]:
    updates = list(ui.runner.run_train(data))
    final = updates[-1][ui.elem("train.output_box")]
    assert final.startswith("Finished."), final[-4000:]
    return updates


def _losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "trainer_log.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if row.get("loss") is not None]


def _run_dir(ui, name: str, method: str = "prefixmemory") -> Path:
    return ui.workdir / "saves" / "Custom" / method / name  # saves/<model>/<method>/<run>, as for LoRA


@pytest.fixture(scope="module")
def sft(ui, filled) -> SimpleNamespace:
    """Start on the Train tab: prefixmemory, feature map gelu, memories in layer 1 only."""
    data = filled(**{"train.output_dir": "sft", "train.pmt_feature_map": "gelu", "train.pmt_layers": "1"})
    updates = _train(ui, data)
    return SimpleNamespace(dir=_run_dir(ui, "sft"), updates=updates)


def test_start_trains_and_reports_like_lora(ui, sft):
    assert (sft.dir / "adapter_model.safetensors").is_file()
    config = PeftConfig.from_pretrained(sft.dir)
    assert config.peft_type == "PREFIXMEMORY" and config.feature_map == "gelu" and config.layers == [1]
    losses = _losses(sft.dir)
    assert len(losses) == EXTRA["max_steps"] and losses[-1] < losses[0]
    progress, plot = ui.elem("train.progress_bar"), ui.elem("train.loss_viewer")
    assert any(progress in update and update[progress].constructor_args.get("visible") for update in sft.updates)
    assert any(plot in update for update in sft.updates)  # the loss plot, refreshed while it runs


def test_checkpoint_dropdown_lists_the_run(ui, sft):
    from llamafactory.webui.control import list_checkpoints

    dropdown = list_checkpoints("Custom", "prefixmemory")
    assert ("sft", "sft") in dropdown.choices and dropdown.multiselect  # adapters, like LoRA's


def test_evaluate_and_predict_with_the_adapter(ui, filled, sft):
    data = filled(**{"top.checkpoint_path": ["sft"], "eval.output_dir": "predict", "eval.predict": True})
    updates = list(ui.runner.run_eval(data))
    final = updates[-1][ui.elem("eval.output_box")]
    assert "predict_" in final, final[-4000:]  # the all_results.json the UI prints
    out = _run_dir(ui, "predict")
    rows = (out / "generated_predictions.jsonl").read_text().splitlines()
    assert len(rows) == 4
    assert "adapter_name_or_path" in (out / "training_args.yaml").read_text()


def test_chat_loads_the_adapter_and_answers(ui, filled, sft, tiny_qwen2):
    chatter = ui.engine.chatter
    data = filled(**{"top.checkpoint_path": ["sft"], "infer.extra_args": "{}"})
    assert list(chatter.load_model(data))[-1].startswith("Model loaded")
    try:
        model = chatter.engine.model
        assert isinstance(model, PeftModel) and model.peft_config["default"].peft_type == "PREFIXMEMORY"
        tokens = torch.tensor([[11, 42, 7, 99, 5]])
        reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), sft.dir)
        with torch.no_grad():
            torch.testing.assert_close(model(tokens).logits.float(), reference(tokens).logits, rtol=0, atol=1e-5)
        messages = [{"role": "user", "content": "Count to 3."}]
        *_, (chatbot, _) = chatter.stream(
            [], messages, "en", "", "", None, None, None, 8, 0.7, 0.01, True, True, False
        )
        assert chatbot[-1]["role"] == "assistant" and chatbot[-1]["content"]
    finally:
        list(chatter.unload_model(data))


def test_export_writes_base_and_adapter(ui, sft, tiny_qwen2):
    from llamafactory.webui.components.export import save_model

    export_dir = ui.workdir / "exported"
    updates = list(save_model(
        "en", "Custom", str(tiny_qwen2), "prefixmemory", ["sft"], "qwen", 1, "none", "", "cpu", False,
        str(export_dir), "", "{}",
    ))  # fmt: skip
    assert updates[-1] == "Model exported."
    assert (export_dir / "model.safetensors").is_file() and (export_dir / "README.md").is_file()
    adapter = export_dir / "prefixmemory_adapter"
    assert PeftConfig.from_pretrained(adapter).peft_type == "PREFIXMEMORY"


def test_dpo_continues_from_the_sft_memory(ui, filled, sft):
    """DPO chosen in the UI on an SFT checkpoint: the reference is the SFT model, so step 0 sits at log 2."""
    data = filled(
        extra={"max_steps": 2},
        **{"train.training_stage": "DPO", "train.dataset": ["toy_pref"], "top.checkpoint_path": ["sft"],
           "train.output_dir": "dpo"},
    )  # fmt: skip
    _train(ui, data)
    losses = _losses(_run_dir(ui, "dpo"))
    assert abs(losses[0] - math.log(2)) < 1e-3


def test_kto_runs_with_the_memory_disabled_reference(ui, filled):
    data = filled(extra={"max_steps": 2}, **{"train.training_stage": "KTO", "train.dataset": ["toy_kto"],
                                             "train.output_dir": "kto"})  # fmt: skip
    _train(ui, data)
    losses = _losses(_run_dir(ui, "kto"))
    assert abs(losses[0] - 0.5) < 1e-3  # policy == reference (memory 0 == memory off): 1 - sigmoid(0)


def test_abort_stops_the_run(ui, filled):
    """Abort sends SIGABRT; LLaMA-Factory's callback then stops the trainer at the next step, as for LoRA."""
    data = filled(extra={"max_steps": 100000, "save_steps": 100000}, **{"train.output_dir": "aborted"})
    runner, progress = ui.runner, ui.elem("train.progress_bar")
    process = started = None
    for update in runner.run_train(data):
        process = process or runner.trainer
        if started is None and progress in update and update[progress].constructor_args.get("visible"):
            started = time.monotonic()
            runner.set_abort()  # what the Abort button calls
    assert started is not None and time.monotonic() - started < 60
    assert process.poll() is not None and not runner.running and runner.trainer is None
    assert len(_losses(_run_dir(ui, "aborted"))) < 100


def test_lora_from_the_ui_still_trains(ui, filled):
    _train(ui, filled("lora", extra={"max_steps": 2}, **{"train.output_dir": "lora"}))
    assert PeftConfig.from_pretrained(_run_dir(ui, "lora", "lora")).peft_type == "LORA"
