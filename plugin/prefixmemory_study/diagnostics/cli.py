"""prefixmemory-diagnose: the paper's mechanism diagnostics on any supported model and any PEFT adapter.

    prefixmemory-diagnose spectrum  --model BASE --adapter PMT=saves/pmt --adapter saves/pt --data goemotions_test
    prefixmemory-diagnose cka       --model BASE --adapter ... --data truthfulqa --layer 18
    prefixmemory-diagnose tradeoff  --model BASE --adapter ... --data goemotions_test
    prefixmemory-diagnose attention --model BASE --adapter ... --data goemotions_test --ood-data banking77_ood

Each writes <command>.json (every number) and <command>.png into --output-dir. Adapters: PrefixMemory, LoRA, or
PEFT prefix-tuning (any PEFT type loads; ``tradeoff`` needs PrefixMemory or prefix-tuning).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import records

SITES = ("attention", "o_proj")  # probes.SITES, repeated so that -h imports no torch


def _common(parser: argparse.ArgumentParser, data_help: str, layer_default: int | None, layer_help: str) -> None:
    parser.add_argument("--model", required=True, help="base model: a hub id or a local folder")
    parser.add_argument(
        "--adapter", action="append", required=True, metavar="[NAME=]PATH",
        help="a PEFT adapter folder, optionally named for the plots; repeat for several (default names: PMT, LoRA, "
        "Prefix (p=N))",
    )  # fmt: skip
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument(
        "--dataset-dir", default="data", help="where dataset_info.json is, for registered names (default: data)"
    )
    parser.add_argument("--max-texts", type=int, default=64, help="use at most this many records (default: 64)")
    parser.add_argument("--chat-template", action="store_true", help="wrap each text in the tokenizer's chat template")
    parser.add_argument("--layer", type=int, default=layer_default, help=layer_help)
    parser.add_argument(
        "--output-dir", default="diagnostics", help="folder for the JSON and PNG (default: diagnostics)"
    )
    parser.add_argument("--device", default="auto", help="torch device (default: cuda when there is one, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="model dtype (default: auto = bfloat16 on GPU, float32 on CPU)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefixmemory-diagnose", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    data_help = "texts: a dataset name in --dataset-dir/dataset_info.json, or a .json/.jsonl/.txt file"
    _add_spectrum_and_cka(commands, data_help)
    _add_tradeoff_and_attention(commands, data_help)
    return parser


def _add_spectrum_and_cka(commands, data_help: str) -> None:
    spectrum = commands.add_parser(
        "spectrum", help="eigenvalues of cov(tuned - base attention output): section 5.3, Figure 3, appendix B.1",
        description="Eigenvalues of the covariance of the output bias F_tuned - F_base at one layer's attention "
        "output over a text set (section 5.3, Figure 3, appendix B.1). Slow decay: the bias spans many directions.",
    )  # fmt: skip
    _common(spectrum, data_help, -1, "decoder layer (default: -1, the last, as appendix B.1)")
    spectrum.add_argument("--site", default="attention", choices=SITES,
                          help="attention: o_proj input, the concatenated heads where eq. 3 and eq. 7 add their bias "
                          "(default); o_proj: the attention block's output")  # fmt: skip
    spectrum.add_argument("--top-k", type=int, default=50, help="eigenvalues kept and plotted (default: 50)")
    spectrum.add_argument("--normalize", default="none", choices=["none", "trace", "scale"],
                          help="none: raw variances (default); trace: share of variance; scale: bias divided by its "
                          "RMS")  # fmt: skip

    cka = commands.add_parser(
        "cka", help="linear CKA of base vs tuned hidden states: appendix B.3, Tables 9-10",
        description="Linear CKA between the base and the tuned model's hidden states (appendix B.3, Tables 9-10), "
        "at the chosen layer and at every layer; cka.md holds the table (prefix-tuning adapters by prefix length: "
        "Table 10's sweep). The paper's setting: --model Qwen/Qwen2.5-3B-Instruct --layer 18 --data truthfulqa.",
    )  # fmt: skip
    _common(
        cka, data_help, None, "decoder layer of the headline number (default: the middle one; Table 9 uses 18 of 36)"
    )
    cka.add_argument("--pool", default="last", choices=["last", "mean", "tokens"],
                     help="one sample per text: its last token (REEF's protocol, default) or the mean of its "
                     "tokens; or one sample per token")  # fmt: skip
    for per_text_command in (spectrum, cka):
        per_text_command.add_argument(
            "--max-length",
            type=int,
            default=256,
            help="tokens per text; a longer one keeps its last tokens (default: 256)",
        )


def _add_tradeoff_and_attention(commands, data_help: str) -> None:
    tradeoff = commands.add_parser(
        "tradeoff", help="prefix-tuning's alpha_i and PMT's memory/attention norm ratio vs input length: section 4.2",
        description="Section 4.2's tradeoff as a function of input length: for prefix-tuning alpha_i, the attention "
        "mass on the prefix (eager attention weights); for PMT ||phi(q_i) M|| / ||o_i||, from the memory term the "
        "PrefixMemory layers computed. The texts are joined into long sequences; position i has seen i+1 tokens.",
    )  # fmt: skip
    _common(tradeoff, data_help, None, "one decoder layer (default: the mean over all layers)")
    tradeoff.add_argument(
        "--length", type=int, default=512, help="tokens per sequence: the longest input (default: 512)"
    )
    tradeoff.add_argument("--sequences", type=int, default=4, help="sequences averaged (default: 4)")
    tradeoff.add_argument("--bins", type=int, default=24, help="log-spaced length bins in the plot (default: 24)")

    attention = commands.add_parser(
        "attention", help="last-layer attention heatmaps, base vs tuned, IID and OOD example: appendix B.2",
        description="Head-averaged attention weights of one layer for one IID and one OOD example, base and tuned "
        "(appendix B.2, Figure 10). Prefix-tuning's prefix columns are removed and each row renormalised.",
    )  # fmt: skip
    _common(attention, "the IID example's source: " + data_help, -1, "decoder layer (default: -1, the last)")
    attention.add_argument("--ood-data", help="the OOD example's source (same forms as --data)")
    attention.add_argument("--index", type=int, default=0, help="which record of each source (default: 0)")
    attention.add_argument(
        "--max-length", type=int, default=32, help="tokens shown: the last ones of the example (default: 32)"
    )


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    from . import commands, loading  # torch, transformers and peft load only once the arguments are valid

    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    adapters = loading.parse_adapters(args.adapter)
    tokenizer = loading.load_tokenizer(args.model)
    sources = records.read_records(args.data, args.dataset_dir)[: args.max_texts]
    texts = [records.record_text(record) for record in sources]
    result = getattr(commands, args.command)(args, adapters, tokenizer, texts)
    result = {
        "command": args.command,
        "model": args.model,
        "data": args.data,
        "texts": len(texts),
        "adapters": [{"name": a.name, "path": str(a.path), "peft_type": a.peft_type} for a in adapters],
        **result,
    }
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.command}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / (args.command + '.json')} and {out / (args.command + '.png')}")
    return result


if __name__ == "__main__":
    main()
