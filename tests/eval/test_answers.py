"""prefixmemory-answers refuses, in one line and before loading a model, a recipe it cannot answer from."""

import pytest
import yaml

from prefixmemory_study import answers

RECIPE = {"model_name_or_path": "m", "template": "smollm2", "eval_dataset": "capitals_heldout"}


def _write(tmp_path, recipe):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_a_recipe_without_eval_dataset_is_refused(tmp_path):
    recipe = {key: value for key, value in RECIPE.items() if key != "eval_dataset"}
    path = _write(tmp_path, {**recipe, "output_dir": str(tmp_path)})
    with pytest.raises(SystemExit, match="has no `eval_dataset`: prefixmemory-answers needs it"):
        answers.main([str(path)])


def test_an_untrained_recipe_is_refused(tmp_path):
    path = _write(tmp_path, {**RECIPE, "output_dir": str(tmp_path / "not-trained")})
    with pytest.raises(SystemExit, match="no adapter in .*not-trained: run `llamafactory-cli train"):
        answers.main([str(path)])
