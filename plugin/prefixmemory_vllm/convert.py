"""Make a PrefixMemory model servable by vLLM: the memories beside the base weights, and config.json naming the
PrefixMemory architecture and describing the memories.

    prefixmemory-vllm-ready BASE --adapter RUN --output SERVE    # a base model and a trained adapter
    prefixmemory-vllm-ready EXPORT --output SERVE                # an export made before the export did this

The command only reads BASE (or EXPORT) and RUN: it copies the top-level files of BASE (the weights, config and
tokenizer; subfolders such as ``original/`` are not needed to serve) and the adapter, as ``prefixmemory_adapter/``,
into SERVE, a new or empty folder, and adds there:
  * ``prefixmemory.safetensors`` (fp32): ``model.layers.{i}.self_attn.prefix_memory.memory`` (H, F, D), for the mlp
    map ``...kernel_weight`` (H, D, F) and ``...kernel_bias`` (H, F), with a memory bias ``...memory_bias`` (H, D);
  * config.json: ``architectures`` -> ``PrefixMemory<Base>ForCausalLM`` and ``prefix_memory`` = {feature_map,
    feature_dim, layers, bias}. transformers picks its class by ``model_type`` and reads only the files of the base,
    so the folder still loads in transformers + PEFT;
  * a sharded base's ``model.safetensors.index.json`` lists the memories too: vLLM reads only the files it names.

The LLaMA-Factory export calls ``make_vllm_ready`` on the folder it has just written, which holds the same layout.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from . import ARCHITECTURES, CONFIG_KEY, WEIGHTS_FILE
from .families import NOT_SERVED, SERVED

ADAPTER_SUBFOLDER = "prefixmemory_adapter"
INDEX_FILE = "model.safetensors.index.json"
# PEFT's saved key -> layer, module and tensor; the memories live on the module q is read at (q_proj, q_norm, ...).
_QUERY_MODULES = "|".join(sorted({family.query for family in SERVED.values()}))
PEFT_KEY = re.compile(
    rf"^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.self_attn\.(?:{_QUERY_MODULES})\."
    r"prefixmemory_(memory|kernel)\.(weight|bias)$"
)
VLLM_NAME = {
    ("memory", "weight"): "memory",
    ("memory", "bias"): "memory_bias",
    ("kernel", "weight"): "kernel_weight",
    ("kernel", "bias"): "kernel_bias",
}


def memory_key(layer: int, name: str) -> str:
    return f"model.layers.{layer}.self_attn.prefix_memory.{name}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable JSON file ({error}).") from None


def read_adapter(adapter_dir: str | Path) -> tuple[dict, dict]:
    """The memories under vLLM's names, and the config entry describing them, from a saved PEFT adapter."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    adapter_config = _read_json(adapter_dir / "adapter_config.json")
    if adapter_config.get("peft_type") != "PREFIXMEMORY":
        raise ValueError(f"{adapter_dir}: `peft_type` is {adapter_config.get('peft_type')}, not PREFIXMEMORY.")
    try:
        saved = load_file(str(adapter_dir / "adapter_model.safetensors"))
    except (OSError, SafetensorError) as error:
        raise ValueError(f"{adapter_dir}/adapter_model.safetensors cannot be read ({error}).") from None
    tensors = {}
    for key, value in saved.items():
        match = PEFT_KEY.match(key)
        if match is None:
            raise ValueError(f"{adapter_dir}: unexpected tensor {key!r} in a PrefixMemory adapter.")
        name = VLLM_NAME[match.group(2), match.group(3)]
        if name in ("memory_bias", "kernel_bias"):
            value = value.reshape(value.shape[0], value.shape[-1])  # PEFT's (H, 1, X) -> (H, X)
        tensors[memory_key(int(match.group(1)), name)] = value.float().contiguous()
    layers = sorted({int(key.split(".")[2]) for key in tensors})
    if not layers:
        raise ValueError(f"{adapter_dir}: the adapter holds no memories.")
    entry = {
        "feature_map": adapter_config["feature_map"],
        "feature_dim": int(tensors[memory_key(layers[0], "memory")].shape[1]),
        "layers": layers,
        "bias": bool(adapter_config.get("memory_bias", False)),
    }
    expected = ["memory"] + ["kernel_weight", "kernel_bias"] * (entry["feature_map"] == "mlp")
    expected += ["memory_bias"] * entry["bias"]
    missing = [memory_key(i, name) for i in layers for name in expected if memory_key(i, name) not in tensors]
    if missing or len(tensors) != len(layers) * len(expected):
        raise ValueError(f"{adapter_dir}: the adapter's tensors do not match its adapter_config.json ({missing}).")
    return tensors, entry


def vllm_config(config: dict, tensors: dict, entry: dict) -> dict:
    """A base model's config.json naming the PrefixMemory architecture and describing the memories of ``tensors``."""
    architecture = _memory_architecture(config.get("architectures") or [], config.get("model_type"))
    heads = tensors[memory_key(entry["layers"][0], "memory")].shape[0]
    if heads != config.get("num_attention_heads"):
        raise ValueError(
            f"the adapter's memories have {heads} heads, the model {config.get('num_attention_heads')} query heads."
        )
    return {**config, "architectures": [architecture], CONFIG_KEY: entry}


def make_vllm_ready(export_dir: str | Path) -> None:
    """Add the memories and the vLLM config entries to ``export_dir``, a folder the caller has just written."""
    export_dir = Path(export_dir)
    tensors, entry = read_adapter(export_dir / ADAPTER_SUBFOLDER)
    _write(export_dir, tensors, vllm_config(_read_json(export_dir / "config.json"), tensors, entry))


def write_servable(source: str | Path, output: str | Path, adapter: str | Path | None = None) -> Path:
    """Copy ``source`` (a base model, or an export holding its adapter) and ``adapter`` into ``output``, a new or
    empty folder, and make the copy servable; ``source`` and ``adapter`` are only read. Checks all before copying."""
    source, output = Path(source), Path(output)
    if not source.is_dir():
        raise ValueError(f"`source` {source}: no such folder; name a base model folder or a PrefixMemory export.")
    if adapter is None and not (source / ADAPTER_SUBFOLDER).is_dir():
        raise ValueError(f"`source` {source} has no {ADAPTER_SUBFOLDER}/: name the trained adapter with --adapter.")
    adapter = Path(adapter or source / ADAPTER_SUBFOLDER)
    if not adapter.is_dir():
        raise ValueError(f"`--adapter` {adapter}: no such folder; name a saved PrefixMemory adapter.")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"`--output` {output} exists and holds files; name a new or empty folder.")
    for read in (source, adapter):
        if output.resolve().is_relative_to(read.resolve()):
            raise ValueError(f"`--output` {output} lies inside {read}, which is only read; name a folder outside it.")
    tensors, entry = read_adapter(adapter)
    config = vllm_config(_read_json(source / "config.json"), tensors, entry)
    output.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file() and path.name != WEIGHTS_FILE:  # an older export's memories are replaced
            shutil.copy2(path, output / path.name)
    shutil.copytree(adapter, output / ADAPTER_SUBFOLDER)
    _write(output, tensors, config)
    return output


def _write(folder: Path, tensors: dict, config: dict) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_path = folder / INDEX_FILE
    if index_path.exists():
        index = json.loads(index_path.read_text())
        index["weight_map"].update(dict.fromkeys(tensors, WEIGHTS_FILE))
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _memory_architecture(architectures: list[str], model_type: str | None) -> str:
    for architecture in architectures:
        if architecture in ARCHITECTURES.values():
            return architecture  # already converted
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    why = f" ({model_type}: {NOT_SERVED[model_type]})" if model_type in NOT_SERVED else ""
    raise ValueError(f"`architectures` {architectures}: vLLM serving supports {', '.join(ARCHITECTURES)}{why}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="prefixmemory-vllm-ready", description=__doc__.splitlines()[0])
    parser.add_argument("source", help=f"a base model folder, or a PrefixMemory export (base, {ADAPTER_SUBFOLDER}/)")
    parser.add_argument("--adapter", help=f"the trained PrefixMemory adapter (default: SOURCE/{ADAPTER_SUBFOLDER})")
    parser.add_argument("--output", required=True, help="a new or empty folder for the servable model")
    args = parser.parse_args(argv)
    try:
        output = write_servable(args.source, args.output, args.adapter)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{output} is ready for `vllm serve` (with prefixmemory_vllm installed).")


if __name__ == "__main__":
    main()
