"""prefixmemory-gpucheck: the GPU paths of PrefixMemory in a few minutes on one CUDA GPU, with one summary.

Each check runs in a subprocess of its own:

- bf16 SFT and DPO steps through the real ``llamafactory-cli`` with ``flash_attn: sdpa`` and with ``fa2``;
- SFT with ``enable_liger_kernel: true``, and SFT under DeepSpeed ZeRO-3 on one process (``FORCE_TORCHRUN=1``);
- ``prefixmemory-bench`` at the tiny preset and at the qwen2.5-0.5b and qwen2.5-3b shapes (random weights, nothing
  downloaded), shortened to fit: seq 512, 16 decode tokens, one warm-up, three repeats, six methods.

Training runs a tiny random-weight Qwen2 (prefixmemory_study.tiny) on the toy sets (prefixmemory_study.toydata)
for MAX_STEPS steps, and passes when the run exits cleanly, its log names the attention (and liger) it was asked
for, every step logs a finite loss, and the saved adapter holds non-empty finite tensors (ZeRO-3 saves empty ones
when gathering fails).
A check whose needs are missing (no CUDA device, flash-attn, liger-kernel or deepspeed not installed) is skipped,
and the summary says why. Without CUDA, or with ``--device cpu``, the same code runs what a CPU can: SFT and DPO
with sdpa in float32, and the benchmark at the tiny preset. Designed to finish within 8 minutes on one H100/H200.

Usage: ``prefixmemory-gpucheck [--device cpu] [--workdir DIR] [--json FILE]``; exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from .tiny import save_tiny
from .toydata import toy_train_config, write_toy_data

MAX_STEPS = 3
TOY_ROWS = 16  # rows per toy set; MAX_STEPS steps at batch 2 read 6
BENCH_METHODS = "base,floor,pmt-elu,lora-r32,lora-qv-r32,prefix-32-mlp"
# The shortened GPU benchmark; the tiny preset runs as it is.
BENCH_SHORT = ["--seq-len", "512", "--decode-tokens", "16", "--warmup", "1", "--repeats", "3"]
TIMEOUT_S = {"train": 300, "bench": 300}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "WANDB_DISABLED": "1"}
# What LLaMA-Factory logs when it applied a setting: a run that silently fell back fails.
EVIDENCE = {
    "sdpa": "Using torch SDPA",
    "fa2": "Using FlashAttention-2",
    "enable_liger_kernel": "Liger kernel has been applied",
}
_ZERO3 = {
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "zero_allow_untested_optimizer": True,
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True},
}


@dataclass(frozen=True)
class Check:
    """One check: what it needs, and the LLaMA-Factory settings (``train``) or the bench preset (``bench``)."""

    name: str
    needs: tuple[str, ...]
    kind: str
    settings: dict


CHECKS = (
    Check("sft sdpa", (), "train", dict(stage="sft", flash_attn="sdpa")),
    Check("sft fa2", ("cuda", "flash_attn"), "train", dict(stage="sft", flash_attn="fa2")),
    Check("dpo sdpa", (), "train", dict(stage="dpo", flash_attn="sdpa")),
    Check("dpo fa2", ("cuda", "flash_attn"), "train", dict(stage="dpo", flash_attn="fa2")),
    Check(
        "sft liger", ("cuda", "liger_kernel"), "train", dict(stage="sft", flash_attn="sdpa", enable_liger_kernel=True)
    ),
    Check("sft zero3", ("cuda", "deepspeed"), "train", dict(stage="sft", flash_attn="sdpa", deepspeed="zero3")),
    Check("bench tiny", (), "bench", dict(preset="tiny")),
    Check("bench qwen2.5-0.5b", ("cuda",), "bench", dict(preset="qwen2.5-0.5b")),
    Check("bench qwen2.5-3b", ("cuda",), "bench", dict(preset="qwen2.5-3b")),
)


@dataclass
class Outcome:
    name: str
    status: str  # "pass", "FAIL" or "skip"
    seconds: float
    detail: str  # key numbers, the failure, or why it was skipped


class CheckFailed(Exception):
    """A check ran and did not do what it should; the message is the one line the summary shows."""


def missing_needs(device: str) -> dict[str, str]:
    """Each requirement that is not met -> why a check needing it is skipped."""
    missing = {}
    if device == "cpu":
        missing["cuda"] = "CPU run (--device cpu)"
    elif not torch.cuda.is_available():
        missing["cuda"] = "no CUDA device"
    for need, module, package in (
        ("flash_attn", "flash_attn", "flash-attn"),
        ("liger_kernel", "liger_kernel", "liger-kernel"),
        ("deepspeed", "deepspeed", "deepspeed"),
    ):
        if importlib.util.find_spec(module) is None:
            missing[need] = f"{package} not installed"
    return missing


def write_inputs(workdir: Path) -> tuple[Path, Path]:
    """The tiny model and the toy data sets (prefixmemory_study.toydata) the training checks use."""
    model = save_tiny(workdir / "tiny-qwen2", "qwen2", hidden_size=128, intermediate_size=256)
    data = write_toy_data(workdir / "data", TOY_ROWS)
    (data / "ds_z3.json").write_text(json.dumps(_ZERO3))
    return model, data


def train_config(check: Check, model: Path, data: Path, output_dir: Path, cuda: bool) -> dict:
    """The LLaMA-Factory arguments of a training check: MAX_STEPS PrefixMemory steps, bf16 on CUDA."""
    settings = dict(check.settings)
    if settings.pop("deepspeed", None):
        settings["deepspeed"] = str(data / "ds_z3.json")
    dpo = {"dataset": "toy_pref", "pref_beta": 0.1, "pref_loss": "sigmoid"} if settings["stage"] == "dpo" else {}
    return toy_train_config(
        model, data, output_dir, pmt_feature_map="elu", learning_rate=1.0e-3, max_steps=MAX_STEPS, bf16=cuda,
        **dpo, **settings,
    )  # fmt: skip


def _run(argv: list[str], env: dict, timeout: int, cwd: Path) -> str:
    """Run ``argv``; its stdout and stderr, or CheckFailed with the last line of a failure."""
    try:
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"no result within {timeout} s") from None
    except FileNotFoundError as error:
        raise CheckFailed(f"{argv[0]} not found: {error}") from None
    output = result.stdout + result.stderr
    if result.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        raise CheckFailed(f"exit {result.returncode}: {lines[-1][:200] if lines else 'no output'}")
    return output


def run_train(check: Check, workdir: Path, device: str) -> str:
    """Train through ``llamafactory-cli``; the key numbers, or CheckFailed."""
    model, data = workdir / "tiny-qwen2", workdir / "data"
    output_dir = workdir / check.name.replace(" ", "-")
    config = train_config(check, model, data, output_dir, cuda=device == "cuda")
    config_path = workdir / f"{output_dir.name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, **OFFLINE_ENV}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if "deepspeed" in config:
        env.update(FORCE_TORCHRUN="1", NPROC_PER_NODE="1")
    output = _run(["llamafactory-cli", "train", str(config_path)], env, TIMEOUT_S["train"], workdir)
    for key, evidence in EVIDENCE.items():
        if (config.get("flash_attn") == key or config.get(key) is True) and evidence not in output:
            raise CheckFailed(f"`{key}` was asked for, but the log never says {evidence!r}")
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if row.get("loss") is not None]
    if len(losses) != MAX_STEPS or not all(math.isfinite(loss) for loss in losses):
        raise CheckFailed(f"expected {MAX_STEPS} finite losses, logged {losses}")
    tensors = load_file(str(output_dir / "adapter_model.safetensors"))
    empty = [name for name, tensor in tensors.items() if tensor.numel() == 0 or not tensor.isfinite().all()]
    if not tensors or empty:
        raise CheckFailed(f"adapter tensors empty or not finite: {empty or 'none saved'}")
    runtime = json.loads((output_dir / "all_results.json").read_text()).get("train_runtime", float("nan"))
    params = sum(tensor.numel() for tensor in tensors.values())
    return (
        f"loss {losses[0]:.3f} -> {losses[-1]:.3f} in {MAX_STEPS} steps;"
        f" adapter {params:,} params; train {runtime:.1f} s"
    )


def run_bench(check: Check, workdir: Path, device: str) -> str:
    """Run the benchmark; PrefixMemory's ratios against LoRA and the base model, or CheckFailed."""
    preset = check.settings["preset"]
    path = workdir / f"bench-{preset}.json"
    argv = [sys.executable, "-m", "prefixmemory_study.bench", "--preset", preset, "--device", device]
    argv += ["--methods", BENCH_METHODS, "--json", str(path)]
    argv += ["--threads", "1", "--repeats", "1", "--warmup", "0"] if preset == "tiny" else BENCH_SHORT
    _run(argv, {**os.environ, **OFFLINE_ENV}, TIMEOUT_S["bench"], workdir)
    report = json.loads(path.read_text())
    missing = [
        f"{r['method']} {figure}" for r in report["results"] if r["method"] != "base" for figure in r["unavailable"]
    ]
    if missing:
        raise CheckFailed(f"not measured: {', '.join(missing)}")
    pmt, ratios = report["ratios"]["pmt-elu"], report["ratios"]
    peak = next(r["peak_mem_bytes"] for r in report["results"] if r["method"] == "pmt-elu")
    return (
        f"pmt-elu step {pmt['train_step_s/lora-r32']:.2f}x lora-r32, {pmt['train_step_s/lora-qv-r32']:.2f}x "
        f"lora-qv-r32; peak {peak / 2**20:,.0f} MiB ({pmt['peak_mem_bytes/lora-qv-r32']:.2f}x lora-qv-r32); "
        f"TTFT b1 {pmt['ttft_b1_s/base']:.2f}x, TBT b1 {pmt['tbt_b1_s/base']:.2f}x base; "
        f"prefix-32-mlp step {ratios['prefix-32-mlp']['train_step_s/lora-qv-r32']:.2f}x lora-qv-r32"
    )


def run_checks(device: str, workdir: Path) -> list[Outcome]:
    """Every check in CHECKS, in order: skipped where a need is missing, else run and timed."""
    missing = missing_needs(device)
    write_inputs(workdir)
    outcomes = []
    for check in CHECKS:
        reasons = [missing[need] for need in check.needs if need in missing]
        if reasons:
            outcomes.append(Outcome(check.name, "skip", 0.0, "; ".join(reasons)))
            continue
        started = time.perf_counter()
        try:
            detail, status = (run_train if check.kind == "train" else run_bench)(check, workdir, device), "pass"
        except CheckFailed as error:
            detail, status = str(error), "FAIL"
        outcomes.append(Outcome(check.name, status, time.perf_counter() - started, detail))
        print(f"{check.name}: {status} ({outcomes[-1].seconds:.0f} s)", flush=True)
    return outcomes


def summary(outcomes: list[Outcome], device: str, seconds: float) -> str:
    """The Markdown summary: one row per check, then the totals."""
    machine = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    lines = [f"prefixmemory-gpucheck on {machine}, {seconds:.0f} s", "", "| check | result | s | details |"]
    lines.append("|---|---|---:|---|")
    lines += [f"| {o.name} | {o.status} | {o.seconds:.0f} | {o.detail} |" for o in outcomes]
    counts = {status: sum(o.status == status for o in outcomes) for status in ("pass", "FAIL", "skip")}
    lines += ["", f"{counts['pass']} passed, {counts['FAIL']} failed, {counts['skip']} skipped"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prefixmemory-gpucheck", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workdir", help="folder for the model, data and runs (default: a temporary folder)")
    parser.add_argument("--json", help="write the outcomes to this JSON file")
    args = parser.parse_args(argv)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        parser.error(f"--json: the folder of {args.json!r} does not exist")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prefixmemory-gpucheck-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        outcomes = run_checks(args.device, workdir)
    print(summary(outcomes, args.device, time.perf_counter() - started))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
    return 1 if any(outcome.status == "FAIL" for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
