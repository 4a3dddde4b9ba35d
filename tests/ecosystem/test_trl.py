"""TRL's SFTTrainer continues training a loaded PrefixMemory adapter."""

import torch
from datasets import Dataset
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 12 plus 30? The answer is 42.",
    "Write a short poem about the sea.",
    "Translate good morning into French: bonjour.",
]


def test_sft_trainer_continues_a_loaded_adapter(tiny_qwen2, pmt_adapter, tmp_path):
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), pmt_adapter, is_trainable=True)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    args = SFTConfig(
        output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], save_strategy="no", use_cpu=True, bf16=False, max_length=64, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict({"text": TEXTS * 3}),
        processing_class=AutoTokenizer.from_pretrained(tiny_qwen2),
    )
    trainer.train()

    changed = {name for name, param in model.named_parameters() if not torch.equal(param, before[name])}
    adapter = {name for name, param in model.named_parameters() if param.requires_grad}
    assert changed == adapter and all("prefixmemory" in name for name in adapter)
    trainer.save_model(str(tmp_path / "continued"))
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_qwen2), tmp_path / "continued")
    ids = torch.tensor([[5, 80, 300, 17, 42, 9]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval()(ids).logits, model.eval()(ids).logits, atol=1e-6, rtol=1e-5)
