"""prefixmemory-alpacaeval: Table 4's inputs, AlpacaEval 2 answers of a base, LoRA or PMT model.

    prefixmemory-alpacaeval recipes/qwen2.5_dpo_pmt.yaml --adapter saves/.../dpo --name PMT-DPO
    prefixmemory-alpacaeval recipes/qwen2.5_dpo_pmt.yaml --name base        # no adapter: the starting model

Generates answers to AlpacaEval's 805 instructions (the ``alpaca_eval`` data set) through LLaMA-Factory's own
predict path (greedy, the recipe's model and template) and writes alpaca_eval's ``model_outputs.json``: a JSON list
of ``instruction``, ``output``, ``generator`` (``--name``) and ``dataset`` (AlpacaEval's subset of the instruction),
in the order of the instructions. The win rate needs alpaca_eval's LLM judge (an API key and a network):
docs/evaluation.md gives the commands and how Table 4's deltas over the base model follow.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from . import predict
from .records import alpaca_records

OUTPUTS = "model_outputs.json"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)  # decoding may move spaces, never drop text


def model_outputs(rows: list[dict], records: list[dict], columns: dict, generator: str, default: str) -> list[dict]:
    """alpaca_eval's records from LLaMA-Factory's predictions and the instructions they answer, in order."""
    if len(rows) != len(records):
        raise ValueError(f"{len(rows)} predictions for {len(records)} instructions: predict again.")
    outputs = []
    for number, (row, record) in enumerate(zip(rows, records, strict=True), 1):
        instruction = record[columns["prompt"]]
        if _squash(instruction)[-24:] not in _squash(row["prompt"]):
            raise ValueError(f"prediction {number} does not answer instruction {number}: predict again.")
        outputs.append({"instruction": instruction, "output": row["predict"].strip(), "generator": generator,
                        "dataset": record.get("dataset", default)})  # fmt: skip
    return outputs


def generate(args) -> Path:
    out = Path(args.output_dir or Path("saves/alpaca_eval") / args.name)
    adapter = predict.adapter_folder(args.adapter)
    dataset_dir = yaml.safe_load(Path(args.recipe).read_text()).get("dataset_dir", "data")
    try:  # checked before any model is loaded
        records, columns = alpaca_records(args.dataset, dataset_dir)
    except FileNotFoundError as err:
        raise ValueError(f"`--dataset` {args.dataset}: {err.filename} is missing; fetch it as docs/evaluation.md "
                         "says.") from None  # fmt: skip
    path = predict.predict(args.recipe, args.dataset, out, adapter, max_new_tokens=args.max_new_tokens,
                           batch_size=args.batch_size, max_samples=args.max_samples,
                           overrides=predict.parse_overrides(args.set))  # fmt: skip
    records = records[: args.max_samples] if args.max_samples else records
    outputs = model_outputs(predict.read_predictions(path), records, columns, args.name, args.dataset)
    (out / OUTPUTS).write_text(json.dumps(outputs, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out / OUTPUTS} ({len(outputs)} answers by {args.name})")
    return out / OUTPUTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefixmemory-alpacaeval", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="the training recipe: its model, template and dataset_dir are used")
    parser.add_argument("--adapter", help="the trained adapter folder; none: the base model")
    parser.add_argument("--name", required=True, help="the generator name in model_outputs.json, e.g. PMT-DPO")
    parser.add_argument("--dataset", default="alpaca_eval",
                        help="the instructions, registered in dataset_info.json (default: alpaca_eval; "
                        "alpaca_eval_sample: six offline ones)")  # fmt: skip
    parser.add_argument("--output-dir", help="default: saves/alpaca_eval/<name>")
    parser.add_argument("--max-samples", type=int, help="only the first N instructions")
    parser.add_argument("--max-new-tokens", type=int, default=2048, help="generated tokens per answer (default: 2048)")
    parser.add_argument("--batch-size", type=int, default=8, help="per_device_eval_batch_size (default: 8)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of the predict config")
    return parser


def main(argv: list[str] | None = None) -> Path:
    return generate(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
