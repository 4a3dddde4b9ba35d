"""Shared fixtures: offline settings, seeds, tiny models per architecture and the local tokenizer.

Nothing here touches the network: the models are built from configs with random weights and the tokenizer is
trained on a built-in text (``prefixmemory_study.tiny``).
"""

from __future__ import annotations

import os

# Before transformers / datasets are imported by any test module: never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# The models are tiny: intra-op threads only add synchronisation, which costs 10x on a loaded 2-core machine.
torch.set_num_threads(1)

# Two sentences of the tokenizer's training text, so they tokenize into a handful of merged tokens.
SAMPLE_TEXTS = (
    "The quick brown fox jumps over the lazy dog. What is 12 plus 30? The answer is 42.",
    "Write a short poem about the sea.",
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tokenizer():
    from prefixmemory_study.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def sample_ids(tokenizer) -> torch.Tensor:
    """One unpadded row of token ids, shape (1, T)."""
    return tokenizer(SAMPLE_TEXTS[0], return_tensors="pt").input_ids


@pytest.fixture(scope="session")
def sample_pair(tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unpadded rows of different lengths, each shape (1, T_i)."""
    first, second = (tokenizer(text, return_tensors="pt").input_ids for text in SAMPLE_TEXTS)
    assert first.shape[1] != second.shape[1]
    return first, second


@pytest.fixture(scope="session")
def batch_ids(sample_pair) -> torch.Tensor:
    """Two unpadded rows (B=2): the shorter sample and the first tokens of the longer one reversed."""
    short = sample_pair[1]
    return torch.cat([short, sample_pair[0][:, : short.shape[1]].flip(-1)])


@pytest.fixture
def tiny_model():
    """Factory for a tiny random-weight causal LM in eval mode; same seed, same weights."""
    from prefixmemory_study.tiny import build_model

    def make(architecture: str = "qwen2", seed: int = 0, **overrides):
        return build_model(architecture, seed=seed, **overrides).eval()

    return make


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    """A tiny Qwen2 model folder (random weights, local tokenizer) that llamafactory-cli loads."""
    from prefixmemory_study.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    from prefixmemory_study.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-llama", "llama-gqa")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """A dataset_dir with the toy sft, pref, kto and pt sets (prefixmemory_study.toydata)."""
    from prefixmemory_study.toydata import write_toy_data

    return write_toy_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct converted by prefixmemory-smollm2, kept in the project's cache between runs."""
    from prefixmemory_study import smollm2

    return smollm2.convert(smollm2.CACHE / "models" / "smollm2-135m-instruct")
