"""Every command in the docs parses as the code parses it, and every relative link resolves (docs_check.py)."""

import pytest
from docs_check import DOCS, REPO, DocError, check_call, check_commands, check_links, shell_calls

IDS = [str(path.relative_to(REPO)) for path in DOCS]


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_commands_parse(path):
    checked, errors = check_commands(path)
    assert not errors, "\n".join(errors)


def test_commands_are_found():
    """The extraction sees the commands a reader sees: loops, variables and braces expanded."""
    calls = shell_calls("for S in a b; do prefixmemory-math grade --runs-dir r_$S; done\nX=1 llamafactory-cli t{a,b}")
    assert calls == [
        ["prefixmemory-math", "grade", "--runs-dir", "r_a"],
        ["prefixmemory-math", "grade", "--runs-dir", "r_b"],
        ["llamafactory-cli", "ta", "tb"],
    ]
    assert check_commands(REPO / "README.md")[0] >= 5


@pytest.mark.parametrize(
    "argv",
    [
        ["prefixmemory-bench", "--preset", "no-such-preset"],
        ["prefixmemory-fewshot", "eval", "--no-such-flag"],
        ["prefixmemory-tiny"],  # its output folder is required
        ["python", "-m", "prefixmemory_study.fewshot.data", "fetch"],
        ["llamafactory-cli", "train", "recipes/no_such_recipe.yaml"],
        ["llamafactory-cli", "train", "recipes/demo_tiny_pmt.yaml", "no_such_key=1"],
        ["llamafactory-cli", "train", "recipes/demo_tiny_pmt.yaml", "finetuning_type=no_such_type"],
        ["llamafactory-cli", "train", "recipes/qwen2.5_sft_pmt.yaml", "deepspeed=recipes/deepspeed/none.json"],
        ["llamafactory-cli", "chat", "--model_name_or_path", "m", "--no_such_flag", "1"],
        ["llamafactory-cli", "serve", "recipes/demo_tiny_pmt.yaml"],
        ["accelerate", "launch", "--config_file", "recipes/accelerate/none.yaml", "-m", "llamafactory.launcher", "x"],
        ["python", "-m", "pytest", "tests/no_such_folder"],
        ["pip", "install", "--no-deps", "llamafactory-prefixmemory"],  # not on the package index
        ["pip", "install", "-c", "keep.txt", "llamafactory-prefixmemory[eval]>=0.1"],
    ],
)
def test_a_wrong_command_is_caught(argv):
    with pytest.raises(DocError):
        check_call(argv)


@pytest.mark.parametrize(
    "script",
    [
        "FORCE_TORCHRUN=1 NPROC_PER_NODE=4 llamafactory-cli train recipes/qwen2.5_dpo_pmt.yaml",  # 1 x 4 x 4 = 16
        "FORCE_TORCHRUN=1 CUDA_VISIBLE_DEVICES=0,1,2,3 llamafactory-cli train recipes/qwen2.5_sft_pmt.yaml",
        "export NNODES=2 NPROC_PER_NODE=8\nllamafactory-cli train recipes/qwen2.5_dpo_pmt.yaml",
        "accelerate launch --num_processes 4 -m llamafactory.launcher recipes/qwen2.5_sft_pmt.yaml deepspeed=null",
    ],
)
def test_a_launch_that_changes_the_effective_batch_is_caught(script):
    (call,) = shell_calls(script)
    with pytest.raises(DocError, match="effective batch"):
        check_call(call)


def test_a_launch_that_keeps_the_effective_batch_passes():
    for script in (
        "NPROC_PER_NODE=4 llamafactory-cli train recipes/qwen2.5_dpo_pmt.yaml gradient_accumulation_steps=8",
        "FORCE_TORCHRUN=1 CUDA_VISIBLE_DEVICES=0,1 llamafactory-cli train recipes/qwen2.5_sft_pmt.yaml",
        "NPROC_PER_NODE=<gpus> llamafactory-cli train recipes/qwen2.5_sft_pmt.yaml",  # left to the reader
    ):
        (call,) = shell_calls(script)
        assert check_call(call)


def test_right_commands_pass():
    for argv in (
        ["prefixmemory-bench", "--preset", "tiny"],
        ["llamafactory-cli", "train", "recipes/demo_tiny_pmt.yaml", "pmt_feature_map=gelu", "deepspeed=null"],
        ["llamafactory-cli", "chat", "--model_name_or_path", "m", "--finetuning_type", "prefixmemory"],
        ["pip", "install", "--no-deps", "/path/to/llamafactory-prefixmemory"],
        ["pip", "install", "llamafactory-prefixmemory @ git+https://example.org/llamafactory-prefixmemory.git"],
    ):
        assert check_call(argv)


@pytest.mark.parametrize("path", DOCS, ids=IDS)
def test_links_resolve(path):
    errors = check_links(path)
    assert not errors, "\n".join(errors)


def test_a_broken_link_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr("docs_check.REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n[ok](a.md#title) [gone](b.md) [no heading](a.md#other)\n")
    assert len(check_links(tmp_path / "a.md")) == 2
