"""The four diagnostics of prefixmemory-diagnose (cli.py parses the arguments): each returns its JSON content and
writes its PNG. Every adapter is run on a freshly loaded base model; the base model's readings are taken once.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..records import read_records, record_text
from . import loading, metrics, plots, probes


def _load(args, adapter=None, eager=False):
    if adapter is None:
        return loading.load_base(args.model, args.device, args.dtype, eager)
    return loading.load_tuned(args.model, adapter, args.device, args.dtype, eager)


def _subtitle(args, texts, extra: str) -> str:
    return f"model {Path(args.model).name} | data {Path(args.data).name}, {len(texts)} texts | {extra}"


def spectrum(args, adapters, tokenizer, texts) -> dict:
    inputs = loading.encode_texts(tokenizer, texts, args.max_length, args.chat_template)
    base = _load(args)
    layer = probes.layer_index(base, args.layer)
    reference = probes.attention_outputs(base, inputs, layer, args.site)
    del base
    entries = []
    for adapter in adapters:
        delta = probes.attention_outputs(_load(args, adapter), inputs, layer, args.site) - reference  # (n,d)
        eigenvalues = metrics.covariance_spectrum(delta, args.normalize)
        share = (eigenvalues.cumsum(0) / eigenvalues.sum().clamp_min(1e-30))[: args.top_k]
        entries.append({
            "name": adapter.name, "kind": adapter.kind,
            "eigenvalues": eigenvalues[: args.top_k].tolist(), "cumulative_share": share.tolist(),
            "effective_rank": metrics.effective_rank(eigenvalues), "bias_rms": float(delta.pow(2).mean().sqrt()),
        })  # fmt: skip
    extra = f"layer {layer}, {args.site}, {reference.shape[0]} tokens x {reference.shape[1]} features"
    plots.plot_spectrum(entries, Path(args.output_dir) / "spectrum.png", _subtitle(args, texts, extra))
    return {"layer": layer, "site": args.site, "normalize": args.normalize, "tokens": reference.shape[0],
            "features": reference.shape[1], "results": entries}  # fmt: skip


def cka(args, adapters, tokenizer, texts) -> dict:
    inputs = loading.encode_texts(tokenizer, texts, args.max_length, args.chat_template)
    base = _load(args)
    middle = len(probes.attention_modules(base)) // 2
    layer = probes.layer_index(base, middle if args.layer is None else args.layer)
    reference = probes.hidden_states(base, inputs, args.pool)
    del base
    entries = []
    for adapter in adapters:
        tuned = probes.hidden_states(_load(args, adapter), inputs, args.pool)
        per_layer = [metrics.linear_cka(x, y) for x, y in zip(reference, tuned, strict=True)]
        entries.append({"name": adapter.name, "kind": adapter.kind, "prefix_length": adapter.num_virtual_tokens,
                        "cka": per_layer[layer], "per_layer": per_layer})  # fmt: skip
    extra = f"{args.pool} token{'s' if args.pool == 'tokens' else ''}, {reference[0].shape[0]} samples"
    plots.plot_cka(entries, layer, Path(args.output_dir) / "cka.png", _subtitle(args, texts, extra))
    (Path(args.output_dir) / "cka.md").write_text(cka_table(entries, layer) + "\n")
    return {"layer": layer, "pool": args.pool, "samples": reference[0].shape[0], "results": entries}


def cka_table(entries: list[dict], layer: int) -> str:
    """Tables 9-10's layout: the base model (1 by definition), then each adapter; prefix-tuning by prefix length."""
    prefix_last = sorted(entries, key=lambda e: (e["kind"] == "Prefix", e.get("prefix_length", 0)))
    rows = [("Base Model", 1.0)] + [(e["name"], e["cka"]) for e in prefix_last]
    lines = [f"| Method | CKA similarity, layer {layer} |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value:.4f} |" for name, value in rows])


def tradeoff(args, adapters, tokenizer, texts) -> dict:
    inputs = loading.token_stream(tokenizer, texts, args.length, args.sequences)
    entries, skipped = [], []
    for adapter in adapters:
        if adapter.peft_type not in ("PREFIX_TUNING", "PREFIXMEMORY"):
            skipped.append(adapter.name)  # LoRA and others put nothing next to the input to trade off against
            continue
        model = _load(args, adapter, eager=adapter.peft_type == "PREFIX_TUNING")
        if adapter.peft_type == "PREFIX_TUNING":
            (values, layers), quantity = probes.prefix_mass(model, inputs, adapter.num_virtual_tokens), "alpha"
        else:
            (values, layers), quantity = probes.memory_ratio(model, inputs), "memory_ratio"
        if args.layer is not None:
            layer = probes.layer_index(model, args.layer)
            if layer not in layers:
                raise ValueError(f"`--layer` {args.layer}: {adapter.name} has no {quantity} there (layers {layers}).")
            values, layers = values[:, [layers.index(layer)]], [layer]
        per_position = values.mean(dim=(0, 1))  # (S,L,T) -> (T,): mean over sequences and layers
        lengths = torch.arange(1, per_position.shape[0] + 1)
        centres, means = metrics.log_bins(lengths, per_position, args.bins)
        per_layer = dict(zip(layers, values.mean(dim=(0, 2)).tolist(), strict=True))  # (S,L,T) -> (L,)
        entries.append({
            "name": adapter.name, "kind": adapter.kind, "quantity": quantity,
            "prefix_length": adapter.num_virtual_tokens, "lengths": centres, "values": means,
            "per_position": per_position.tolist(), "per_layer_mean": per_layer,
        })  # fmt: skip
        del model
    if not entries:
        raise ValueError("`tradeoff` needs at least one PrefixMemory or prefix-tuning adapter.")
    layer = "mean over layers" if args.layer is None else f"layer {args.layer}"
    extra = f"{args.sequences} sequences of {args.length} tokens, {layer}"
    plots.plot_tradeoff(entries, Path(args.output_dir) / "tradeoff.png", _subtitle(args, texts, extra))
    return {"length": args.length, "sequences": args.sequences, "layer": args.layer, "results": entries,
            "skipped": skipped}  # fmt: skip


def attention(args, adapters, tokenizer, texts) -> dict:
    sources = [("IID", texts)]
    if args.ood_data:
        ood = read_records(args.ood_data, args.dataset_dir)
        sources.append(("OOD", [record_text(record) for record in ood]))
    examples = []
    for label, source in sources:
        if not 0 <= args.index < len(source):
            raise ValueError(f"`--index` {args.index} out of range: the {label} source has {len(source)} records.")
        ids = loading.encode_texts(tokenizer, [source[args.index]], args.max_length, args.chat_template)[0]
        tokens = [tokenizer.decode([token]) for token in ids[0].tolist()]
        examples.append({"example": label, "ids": ids, "tokens": tokens, "maps": []})
    layer = None
    for adapter in [None, *adapters]:
        model = _load(args, adapter, eager=True)
        layer = probes.layer_index(model, args.layer)
        for example in examples:
            weights = probes.attention_map(model, example["ids"], layer, adapter.num_virtual_tokens if adapter else 0)
            change = None
            if adapter is not None:  # mean over queries of the total-variation distance to the base model's row
                change = float(0.5 * (weights - torch.tensor(example["maps"][0][2])).abs().sum(-1).mean())
            name, kind = (adapter.name, adapter.kind) if adapter else ("Base", "Base")
            example["maps"].append((name, kind, weights.tolist(), change))
        del model
    plots.plot_attention(examples, Path(args.output_dir) / "attention.png", _subtitle(args, texts, f"layer {layer}"))
    records = [
        {"example": e["example"], "tokens": e["tokens"],
         "maps": [{"name": n, "kind": k, "weights": w, "total_variation_from_base": tv} for n, k, w, tv in e["maps"]]}
        for e in examples
    ]  # fmt: skip
    return {"layer": layer, "index": args.index, "examples": records}
