"""Make a PrefixMemory export servable by vLLM, in place: the memories beside the base weights, and config.json
naming the PrefixMemory architecture and describing the memories.

What it adds to a folder with the base model at the top and the PEFT adapter in ``prefixmemory_adapter/``:
  * ``prefixmemory.safetensors`` (fp32): ``model.layers.{i}.self_attn.prefix_memory.memory`` (H, F, D), for the mlp
    map ``...kernel_weight`` (H, D, F) and ``...kernel_bias`` (H, F), with a memory bias ``...memory_bias`` (H, D);
  * config.json: ``architectures`` -> ``PrefixMemory<Base>ForCausalLM`` and ``prefix_memory`` = {feature_map,
    feature_dim, layers, bias}. transformers picks its class by ``model_type`` and reads only the files of the base,
    so the folder still loads in transformers + PEFT;
  * a sharded base's ``model.safetensors.index.json`` lists the memories too: vLLM reads only the files it names.

The LLaMA-Factory export calls ``make_vllm_ready``; for an older export: ``python -m prefixmemory_vllm.convert DIR``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from . import ARCHITECTURES, CONFIG_KEY, WEIGHTS_FILE

ADAPTER_SUBFOLDER = "prefixmemory_adapter"
INDEX_FILE = "model.safetensors.index.json"
# PEFT's saved key -> layer, module and tensor. q is read at q_proj, or at q_norm (Qwen3).
PEFT_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.self_attn\.(?:q_proj|q_norm)\."
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


def read_adapter(adapter_dir: str | Path) -> tuple[dict, dict]:
    """The memories under vLLM's names, and the config entry describing them, from a saved PEFT adapter."""
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if adapter_config.get("peft_type") != "PREFIXMEMORY":
        raise ValueError(f"{adapter_dir}: `peft_type` is {adapter_config.get('peft_type')}, not PREFIXMEMORY.")
    tensors = {}
    for key, value in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
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


def make_vllm_ready(export_dir: str | Path, adapter_dir: str | Path | None = None) -> None:
    """Add the memories and the vLLM config entries to ``export_dir``; the base weights are left as they are."""
    from safetensors.torch import save_file

    export_dir = Path(export_dir)
    tensors, entry = read_adapter(adapter_dir or export_dir / ADAPTER_SUBFOLDER)
    config_path = export_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = [_memory_architecture(config.get("architectures") or [])]
    if tensors[memory_key(entry["layers"][0], "memory")].shape[0] != config["num_attention_heads"]:
        raise ValueError(f"the adapter's memories do not have the {config['num_attention_heads']} heads of the model.")
    config[CONFIG_KEY] = entry
    save_file(tensors, str(export_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    index_path = export_dir / INDEX_FILE
    if index_path.exists():
        index = json.loads(index_path.read_text())
        index["weight_map"].update(dict.fromkeys(tensors, WEIGHTS_FILE))
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _memory_architecture(architectures: list[str]) -> str:
    for architecture in architectures:
        if architecture in ARCHITECTURES.values():
            return architecture  # already converted
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    raise ValueError(f"`architectures` {architectures}: vLLM serving supports {', '.join(ARCHITECTURES)}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help=f"a PrefixMemory export: base model at the top, {ADAPTER_SUBFOLDER}/")
    parser.add_argument("--adapter", help=f"the adapter folder (default: EXPORT_DIR/{ADAPTER_SUBFOLDER})")
    args = parser.parse_args(argv)
    make_vllm_ready(args.export_dir, args.adapter)
    print(f"{args.export_dir} is ready for `vllm serve` (with prefixmemory_vllm installed).")


if __name__ == "__main__":
    main()
