"""The README's figures, made offline on a CPU: a tiny random Qwen2, three adapters trained briefly, every command.

    python -m prefixmemory_study.demo docs/diagnostics [--parts diagnostics fewshot]

The adapters (PMT, prefix-tuning with p=16, LoRA r=8) are trained in-process with PEFT on the same GoEmotions sample
rows (data/goemotions_sample.json), with the same loop, so that prefix-tuning, which LLaMA-Factory 0.9.5 cannot
train, is trained like the others. ``--parts fewshot`` runs ``prefixmemory-fewshot`` end to end (train, eval with
ICL, plot) through llamafactory-cli on synthetic few-shot data, about 15 minutes on 2 CPU cores. The numbers say
nothing about the method: the model is random and tiny. They show what the commands produce.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
from pathlib import Path

import torch

from .diagnostics import cli
from .fewshot import cli as fewshot
from .fewshot import data as fewshot_data
from .fewshot.evaluate import RESULTS
from .tiny import save_tiny

OOD_QUERIES = [  # written for this demo in Banking77's style; not from the data set
    {"instruction": "Classify the intent.", "input": "I ordered my card two weeks ago and it still has not arrived."},
    {"instruction": "Classify the intent.", "input": "Why was I charged a fee when I took cash out of the ATM?"},
]


def synthetic_rows(source: fewshot_data.Source) -> list[dict]:
    """A few rows per hub split in that data set's own schema (6 per class): few-shot data without the hub."""
    sources = fewshot_data.SOURCES
    if source == sources["bbh_date"]:
        return [
            {
                "input": f"Item {k}{i}: which date?\nOptions:\n(A) 01/0{k + 1}/2001\n(B) 02/0{k + 1}/2001",
                "target": label,
            }
            for k in range(6)
            for i, label in enumerate(fewshot_data.BBH_LABELS)
        ]
    if source in (sources["goemotions_train"], sources["goemotions_test"]):
        return [{"text": f"comment {k} about {i}", "labels": [i]} for k in range(6) for i in range(28)]
    if source in (sources["dbpedia_train"], sources["dbpedia_test"]):
        return [
            {"label": i, "title": f"Entity {i}-{k}", "content": f"About {i}-{k}."} for k in range(6) for i in range(14)
        ]
    if source == sources["banking77_test"]:
        return [{"text": f"my card {i} has not arrived", "label": i} for i in range(10)]
    raise KeyError(source)


def train_adapter(model_dir: Path, config, texts: list[str], out: Path, steps: int = 120, lr: float = 2e-2) -> Path:
    """A plain PEFT training loop, one text per step, language-modelling loss on every token."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    order = random.Random(0)
    for step in range(steps):
        ids = tokenizer(order.choice(texts), return_tensors="pt").input_ids[:, :128]
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 20 == 0 or step == steps - 1:
            print(f"{out.name}: step {step} loss {loss.item():.3f}")
    model.save_pretrained(out)
    return out


def diagnostics(out: Path, work: Path, repo: Path) -> None:
    from peft import LoraConfig, PrefixTuningConfig

    from prefixmemory import PrefixMemoryConfig

    # Weights 10x the usual init scale, so that the random model's attention is not almost uniform.
    model = save_tiny(work / "tiny-qwen2", "qwen2", num_hidden_layers=4, initializer_range=0.2)
    records = json.loads((repo / "data" / "goemotions_sample.json").read_text())
    texts = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in records]
    adapters = {
        "PMT": train_adapter(model, PrefixMemoryConfig(feature_map="elu"), texts, work / "pmt"),
        "Prefix (p=16)": train_adapter(
            model, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=16), texts, work / "prefix"
        ),
        "LoRA": train_adapter(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]), texts, work / "lora"),
    }
    (work / "ood.json").write_text(json.dumps(OOD_QUERIES))
    common = ["--model", str(model), "--data", str(repo / "data" / "goemotions_sample.json"), "--output-dir", str(out)]
    for name, path in adapters.items():
        common += ["--adapter", f"{name}={path}"]
    cli.main(["spectrum", *common])
    cli.main(["cka", *common])
    cli.main(["tradeoff", *common, "--length", "512"])
    cli.main(["attention", *common, "--ood-data", str(work / "ood.json"), "--max-length", "24"])


def fewshot_demo(out: Path, work: Path) -> None:
    model = save_tiny(work / "tiny-qwen2-fewshot", "qwen2")
    data_dir = work / "data"
    fewshot_data.write_sets(fewshot_data.build_sets(synthetic_rows), data_dir)
    recipes = []
    for method, extra in (("prefixmemory", {}), ("lora", {"lora_rank": 8, "lora_target": "q_proj,v_proj"})):
        config = {
            "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": method, **extra,
            "dataset": "bbh_date_round1", "dataset_dir": str(data_dir), "template": "qwen", "cutoff_len": 1024,
            "output_dir": str(work / "unused"), "per_device_train_batch_size": 2, "learning_rate": 2.0e-2,
            "max_steps": 150, "save_steps": 50, "report_to": "none", "overwrite_output_dir": True,
        }  # fmt: skip
        recipes.append(work / f"demo_{method}.yaml")
        recipes[-1].write_text(json.dumps(config))  # JSON is YAML
    runs = str(work / "runs")
    fewshot.main(["train", *map(str, recipes), "--rounds", "1", "2", "--runs-dir", runs])
    fewshot.main(["eval", "--runs-dir", runs, "--icl", "--icl-cutoff-len", "2400", "--max-samples", "6",
                  "--max-new-tokens", "4"])  # fmt: skip
    fewshot.main(["plot", "--runs-dir", runs, "--output-dir", str(out)])
    shutil.copy(work / "runs" / RESULTS, out / RESULTS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="where the PNG and JSON files go, e.g. docs/diagnostics")
    parser.add_argument("--repo", default=".", help="repository root, for data/goemotions_sample.json (default: .)")
    parser.add_argument(
        "--parts", nargs="+", default=["diagnostics"], choices=["diagnostics", "fewshot"],
        help="diagnostics (minutes) and/or fewshot (slow: llamafactory-cli); default: diagnostics",
    )  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    with tempfile.TemporaryDirectory() as work:
        if "diagnostics" in args.parts:
            diagnostics(out, Path(work), Path(args.repo))
        if "fewshot" in args.parts:
            fewshot_demo(out, Path(work))


if __name__ == "__main__":
    main()
