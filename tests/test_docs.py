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
    ],
)
def test_a_wrong_command_is_caught(argv):
    with pytest.raises(DocError):
        check_call(argv)


def test_right_commands_pass():
    for argv in (
        ["prefixmemory-bench", "--preset", "tiny"],
        ["llamafactory-cli", "train", "recipes/demo_tiny_pmt.yaml", "pmt_feature_map=gelu", "deepspeed=null"],
        ["llamafactory-cli", "chat", "--model_name_or_path", "m", "--finetuning_type", "prefixmemory"],
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
