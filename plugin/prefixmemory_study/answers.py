"""prefixmemory-answers: a trained recipe's held-out questions, answered by the base model and by the adapter.

    prefixmemory-answers recipes/demo_smollm2_pmt.yaml [--show 10]

Reads the recipe as LLaMA-Factory does (model, template, output_dir as the adapter, eval_dataset as the held-out
questions), prompts through LLaMA-Factory's own template (its default system prompt included, as in training),
answers greedily, and scores exact match by the study's one rule (prefixmemory_study.fewshot.scoring: the first
line, case, final period and quotes aside). Prints the first ``--show`` questions side by side and both scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from .fewshot.scoring import normalize
from .records import alpaca_records


def _recipe(path: Path) -> dict:
    recipe = yaml.safe_load(path.read_text())
    missing = [key for key in ("model_name_or_path", "output_dir", "template", "eval_dataset") if key not in recipe]
    if missing:
        raise SystemExit(f"error: {path} has no `{missing[0]}`: prefixmemory-answers needs it.")
    if not (Path(recipe["output_dir"]) / "adapter_config.json").is_file():
        raise SystemExit(f"error: no adapter in {recipe['output_dir']}: run `llamafactory-cli train {path}` first.")
    return recipe


def _questions(recipe: dict) -> list[tuple[str, str]]:
    rows, columns = alpaca_records(recipe["eval_dataset"], recipe.get("dataset_dir", "data"))
    return [(row[columns["prompt"]], row[columns["response"]]) for row in rows]


def _answers(model, tokenizer, template, questions: list[str]) -> list[str]:
    from .miniature.loop import generate

    replies = []
    for question in questions:
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
        prompt, _ = template.encode_oneturn(tokenizer, turns)
        replies.append(generate(model, tokenizer, prompt, max_new_tokens=12).strip())
    return replies


def compare(recipe: dict) -> dict:
    """{"questions", "golds", "base", "adapter"}: the held-out replies without and with the adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import prefixmemory  # noqa: F401  (registers the PEFT type, so the adapter loads)

    from .miniature.loop import load_template

    tokenizer = AutoTokenizer.from_pretrained(recipe["model_name_or_path"])
    template = load_template(tokenizer, recipe["template"])
    questions, golds = zip(*_questions(recipe), strict=True)
    base = AutoModelForCausalLM.from_pretrained(recipe["model_name_or_path"], dtype=torch.float32).eval()
    model = PeftModel.from_pretrained(base, recipe["output_dir"]).eval()
    with model.disable_adapter():
        without = _answers(model, tokenizer, template, questions)
    return {"questions": list(questions), "golds": list(golds), "base": without,
            "adapter": _answers(model, tokenizer, template, questions)}  # fmt: skip


def exact(replies: list[str], golds: list[str]) -> int:
    return sum(normalize(reply) == normalize(gold) for reply, gold in zip(replies, golds, strict=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, help="a trained recipe with eval_dataset (output_dir holds the adapter)")
    parser.add_argument("--show", type=int, default=10, help="questions printed side by side (default: 10)")
    parser.add_argument("--json", type=Path, help="also write every reply and both scores to this file")
    args = parser.parse_args(argv)
    recipe = _recipe(args.recipe)
    result = compare(recipe)
    method = recipe.get("finetuning_type", "adapter")
    width = max(len(q) for q in result["questions"][: args.show])
    print(f"{'question':<{width}} | {'base model':<40} | with the {method} adapter")
    side_by_side = zip(result["questions"], result["base"], result["adapter"], strict=True)
    for question, without, with_ in list(side_by_side)[: args.show]:
        print(f"{question:<{width}} | {without[:40]:<40} | {with_[:40]}")
    total = len(result["golds"])
    scores = {"base": exact(result["base"], result["golds"]), "adapter": exact(result["adapter"], result["golds"])}
    print(f"held-out exact match ({recipe['eval_dataset']}, {total} questions): "
          f"base model {scores['base']}/{total}, with the {method} adapter {scores['adapter']}/{total}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({**result, "scores": scores, "total": total}, indent=2) + "\n")


if __name__ == "__main__":
    main()
