"""Neat packing with PrefixMemory, through LLaMA-Factory's own data pipeline, collator and trainer.

The memory term is per token, so with neat packing's block-diagonal mask each packed example gets the logits, loss
and memory gradients it gets alone. One LLaMA-Factory rule matters for the comparison: with ``packing`` on,
``DataArguments.__post_init__`` lowers ``cutoff_len`` by one, so an example of exactly ``cutoff_len`` tokens loses a
prompt token when packed and not when unpacked (with the toy set at ``cutoff_len: 64`` that alone moved the bare
model's loss from 6.44021 to 6.43569). The comparisons here use a ``cutoff_len`` longer than every example.
"""

import json
from pathlib import Path

import pytest
import torch
from lfcli import train_in_one_process
from safetensors.torch import load_file

CUTOFF_LEN = 256  # each toy example is 61-65 tokens: four share a packed row, none is truncated
EXAMPLES = 8


def _sft_batch(model_dir, data_dir, tmp_path, neat_packing: bool, attn: str = "sdpa"):
    """LLaMA-Factory's model, dataset rows and collated batch for the first 8 toy examples, as its sft workflow
    builds them (SFTDataCollatorWith4DAttentionMask turns neat packing's segment indices into a 4D mask)."""
    from llamafactory.data import SFTDataCollatorWith4DAttentionMask, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.extras.constants import IGNORE_INDEX
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_model, load_tokenizer

    args = dict(
        model_name_or_path=str(model_dir), finetuning_type="prefixmemory", stage="sft", do_train=True,
        output_dir=str(tmp_path / "unused"), template="qwen", dataset="toy_sft", dataset_dir=str(data_dir),
        cutoff_len=CUTOFF_LEN, max_samples=EXAMPLES, neat_packing=neat_packing, flash_attn=attn, report_to="none",
        preprocessing_num_workers=1, overwrite_cache=True,
    )  # fmt: skip
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)["train_dataset"]
    model = load_model(tokenizer_module["tokenizer"], model_args, finetuning_args, is_trainable=True).eval()
    collator = SFTDataCollatorWith4DAttentionMask(
        template=template, model=model, pad_to_multiple_of=8, label_pad_token_id=IGNORE_INDEX,
        block_diag_attn=model_args.block_diag_attn, neat_packing=data_args.neat_packing,
        attn_implementation=model.config._attn_implementation, compute_dtype=model_args.compute_dtype,
        **tokenizer_module,
    )  # fmt: skip
    rows = [dataset[i] for i in range(len(dataset))]
    return model, rows, collator([dict(row) for row in rows])


def _randomize_memories(*models) -> None:
    """The same nonzero memories in each model (a fresh adapter's memories are zero: no PrefixMemory term)."""
    generator = torch.Generator().manual_seed(0)
    names = [name for name, param in models[0].named_parameters() if param.requires_grad]
    assert names and all("prefixmemory_" in name for name in names), names
    with torch.no_grad():
        for name in names:
            noise = torch.randn(models[0].get_parameter(name).shape, generator=generator)
            for model in models:
                model.get_parameter(name).add_(noise)


def _segments(row: dict):
    """(start, end) of each example in a neat-packed row: its attention_mask holds the example's index, 1, 2, ..."""
    mask = row["attention_mask"]
    return [(mask.index(k), len(mask) - mask[::-1].index(k)) for k in range(1, max(mask) + 1)]


@pytest.mark.parametrize("attn", ["sdpa", "disabled"])  # LLaMA-Factory's flash_attn: sdpa, eager
def test_each_packed_example_gets_its_logits_alone(attn, tiny_qwen2, toy_data, tmp_path):
    model, rows, batch = _sft_batch(tiny_qwen2, toy_data, tmp_path, neat_packing=True, attn=attn)
    assert batch["attention_mask"].dim() == 4 and all(max(row["attention_mask"]) > 1 for row in rows)
    _randomize_memories(model)
    with torch.no_grad():
        packed = model(**batch).logits
        examples = 0
        for index, row in enumerate(rows):
            for start, end in _segments(row):
                ids = torch.tensor([row["input_ids"][start:end]])
                alone = model(input_ids=ids).logits[0]
                torch.testing.assert_close(packed[index, start:end], alone, rtol=0, atol=1e-5)
                with model.disable_adapter():
                    assert (model(input_ids=ids).logits[0] - alone).abs().max() > 1e-3  # the memories act
                examples += 1
    assert examples == EXAMPLES


def test_packed_loss_and_memory_gradients_equal_unpacked(tiny_qwen2, toy_data, tmp_path):
    packed_model, _, packed_batch = _sft_batch(tiny_qwen2, toy_data, tmp_path, neat_packing=True)
    plain_model, _, plain_batch = _sft_batch(tiny_qwen2, toy_data, tmp_path, neat_packing=False)
    assert len(packed_batch["input_ids"]) < len(plain_batch["input_ids"]) == EXAMPLES
    _randomize_memories(packed_model, plain_model)
    losses = []
    for model, batch in ((packed_model, packed_batch), (plain_model, plain_batch)):
        losses.append(model(**batch).loss)
        losses[-1].backward()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=0)
    plain_parameters = dict(plain_model.named_parameters())
    for name, packed in packed_model.named_parameters():
        if packed.requires_grad:
            plain = plain_parameters[name]
            assert plain.grad.abs().max() > 0, name
            torch.testing.assert_close(packed.grad, plain.grad, rtol=1e-5, atol=1e-7, msg=name)


def _trainer_log(folder: Path) -> list[dict]:
    state = json.loads((folder / "trainer_state.json").read_text())
    return [row for row in state["log_history"] if "loss" in row]


def test_cli_neat_packing_trains_what_unpacked_trains(train_config, tmp_path):
    """Two SGD steps over the same 8 examples, neat-packed and not, run by LLaMA-Factory's own train entry.

    Step 1 starts at zero memories (the base model's loss), step 2 at the memories step 1 wrote.
    """
    common = dict(
        cutoff_len=CUTOFF_LEN, max_samples=EXAMPLES, per_device_train_batch_size=EXAMPLES, max_steps=2,
        optim="sgd", learning_rate=1.0, flash_attn="sdpa",
    )  # fmt: skip
    configs = {
        name: train_config(**common, output_dir=str(tmp_path / name), **extra)
        for name, extra in (("packed", dict(neat_packing=True)), ("plain", {}))
    }
    train_in_one_process(configs, tmp_path)
    for name in configs:
        assert not (tmp_path / name / "error.txt").exists(), (tmp_path / name / "error.txt").read_text()

    packed, plain = (_trainer_log(tmp_path / name) for name in configs)
    assert len(packed) == len(plain) == 2
    for packed_row, plain_row in zip(packed, plain, strict=True):
        assert packed_row["loss"] == pytest.approx(plain_row["loss"], rel=1e-5)
        assert packed_row["grad_norm"] == pytest.approx(plain_row["grad_norm"], rel=1e-4)
    packed_memories, plain_memories = (load_file(tmp_path / name / "adapter_model.safetensors") for name in configs)
    assert sorted(packed_memories) == sorted(plain_memories)
    for key, memory in plain_memories.items():
        assert memory.abs().max() > 1e-3, key
        torch.testing.assert_close(packed_memories[key], memory, rtol=0, atol=1e-5)
