"""prefixmemory-bench: PrefixMemory beside LoRA, prefix tuning, the frozen floor and the base model.

One process, one model geometry, one batch of random token ids. Every method gets its own freshly built model
(same seed, same random weights) and the same input ids. Figures, each the median of ``--repeats`` samples taken
after ``--warmup`` untimed ones:

- ``train_step_s``: forward + backward + ``AdamW.step`` + ``zero_grad``; ``train_tokens_per_s`` = batch * seq / that.
- ``peak_mem_bytes``: what training the method costs, from just before its model is built to the end of two
  training steps: weights, adapter, gradients, AdamW state, activations. CUDA: ``max_memory_allocated`` minus
  ``memory_allocated`` before the build. CPU: the kernel's peak resident set (VmHWM, reset by writing 5 to
  /proc/self/clear_refs) minus VmRSS before the build, taken after ``gc.collect`` and glibc's ``malloc_trim``; in
  that window glibc maps every block of 64 KiB or more on its own and unmaps it when freed, so the resident set
  follows the live tensors, not a fragmented heap (see PeakMemory); where clear_refs is not writable, a thread
  samples VmRSS every millisecond. A throw-away warm-up model runs first, so one-off costs (thread pools, kernel
  caches, cuBLAS workspaces) are not charged to the first method measured.
- ``prefill_tokens_per_s``: one no-grad forward over the batch that fills the KV cache, logits of the last
  position only (as ``generate`` does).
- ``decode_tokens_per_s``: ``--decode-tokens`` greedy steps with the KV cache after that prefill. The steps call the
  underlying transformers model with the adapter layers injected, which is what ``PeftModel.generate`` does.
- ``trainable_params``.

Methods: ``base`` (inference only), ``floor`` (frozen model; a zero scalar parameter added to the input
embeddings makes autograd traverse every layer with no weight gradient: the least any method that adapts every
layer can cost), ``pmt-elu``/``pmt-gelu``/``pmt-mlp``, ``lora-r32``/``lora-r64`` (every linear layer of every
block) and ``prefix-32`` (PEFT prefix tuning, 32 virtual tokens). A figure a method cannot produce is reported
as not available, with the reason, instead of stopping the run.

Fairness under load: with ``--schedule interleaved`` (the default on CPU) all models are built first and every
repeat times each method once, in an order rotated each round, so that load from other processes falls on all
methods alike. Noise is recorded three ways: the relative inter-quartile range of each figure's samples; the
targets' ratios also taken per round (samples taken back to back) with their IQR; and ``floor``, timed at
inference too although it is the base model, whose prefill/decode ratios against ``base`` should be 1.
On a CPU shared with other jobs, ``--threads 1 --clock cpu`` (CPU time of this process) is far steadier than the
defaults: idle OpenMP threads spin, and wall time counts the other jobs' turns. On CPU, freed heap memory is kept
for reuse unless ``--cpu-heap default`` (see _cache_cpu_heap).

Usage: ``prefixmemory-bench --preset cpu-small --json out.json --plot out.png`` (4 minutes of CPU time on one
thread); ``--preset qwen2.5-0.5b|qwen2.5-3b|llama2-7b`` on a GPU; ``--model PATH`` for a checkpoint (the preset
then gives the batch shape); ``--methods pmt-elu,lora-r32,floor`` for a subset; ``--profile FILE`` for
torch.profiler tables of each method's training step, prefill and decode.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import peft
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM

from .config import PrefixMemoryConfig

METHODS = ("base", "floor", "pmt-elu", "pmt-gelu", "pmt-mlp", "lora-r32", "lora-r64", "prefix-32")
FIGURES = (
    "train_step_s",
    "train_tokens_per_s",
    "peak_mem_bytes",
    "prefill_tokens_per_s",
    "decode_tokens_per_s",
    "trainable_params",
)
# (figure, reference method): the ratios printed, stored and plotted.
RATIOS = (
    ("train_step_s", "lora-r32"),
    ("train_step_s", "floor"),
    ("peak_mem_bytes", "lora-r32"),
    ("peak_mem_bytes", "floor"),
    ("prefill_tokens_per_s", "base"),
    ("decode_tokens_per_s", "base"),
)
# Issue #7: (method, figure, reference, comparison, bound).
TARGETS = (
    ("pmt-elu", "train_step_s", "lora-r32", "<=", 0.80),
    ("pmt-elu", "train_step_s", "floor", "<=", 1.05),
    ("pmt-elu", "peak_mem_bytes", "lora-r32", "<=", 1.00),
    ("pmt-elu", "prefill_tokens_per_s", "base", ">=", 0.98),
    ("pmt-elu", "decode_tokens_per_s", "base", ">=", 0.98),
)
MEMORY_STEPS = 2  # training steps inside the peak-memory window: the second runs with AdamW state allocated


@dataclass(frozen=True)
class Preset:
    """A model geometry (AutoConfig.for_model keywords, random weights) and a batch shape."""

    model: dict
    seq_len: int
    batch_size: int
    decode_tokens: int
    dtype: str
    warmup: int
    repeats: int


_QWEN25 = dict(
    model_type="qwen2",
    vocab_size=151936,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    max_position_embeddings=32768,
    num_key_value_heads=2,
)
# What the GPU presets share: sequence, decode length, dtype and repeats; only the batch size differs.
_GPU_RUN = dict(seq_len=1024, decode_tokens=64, dtype="bfloat16", warmup=3, repeats=10)
PRESETS = {
    "tiny": Preset(
        dict(
            model_type="qwen2",
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=640,
        ),
        seq_len=32,
        batch_size=2,
        decode_tokens=4,
        dtype="float32",
        warmup=1,
        repeats=2,
    ),
    # The geometry of DESIGN.md decision 4's prototype. Not fixed by the issue, and chosen here: intermediate_size
    # 3 x hidden, and an 8000-token vocabulary, so that the LM head (common to all methods) does not hide the
    # layers and the (batch*seq, vocab) fp32 logits stay under 32 MiB, glibc's largest heap block (_cache_cpu_heap).
    "cpu-small": Preset(
        dict(
            model_type="qwen2",
            hidden_size=512,
            intermediate_size=1536,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=2,
            vocab_size=8000,
        ),
        seq_len=256,
        batch_size=4,
        decode_tokens=32,
        dtype="float32",
        warmup=1,
        repeats=7,
    ),
    "qwen2.5-0.5b": Preset(
        dict(_QWEN25, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14),
        batch_size=8,
        **_GPU_RUN,
    ),
    "qwen2.5-3b": Preset(
        dict(_QWEN25, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16),
        batch_size=4,
        **_GPU_RUN,
    ),
    "llama2-7b": Preset(
        dict(
            model_type="llama",
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        ),
        batch_size=4,
        **_GPU_RUN,
    ),
}


# ---------------------------------------------------------------------------------------------------- memory
def _release(device: torch.device) -> None:
    """Free what the garbage collector can, and give freed memory back (CUDA cache, glibc heap)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
    elif sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: RSS may keep freed pages, see the module docstring
            pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt options
_HEAP_BLOCK_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_EXACT_RSS_BLOCK = 64 * 2**10


def _mallopt(option: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(option, value))
    except (OSError, AttributeError):  # not glibc
        return False


def _cache_cpu_heap() -> bool:
    """Make glibc keep freed heap memory for reuse (blocks up to 32 MiB), as CUDA's caching allocator does on GPU.

    PyTorch's CPU allocator caches nothing, and glibc's defaults give large freed blocks back to the kernel, so fresh
    activations are page-faulted in again and again. On the 2-core VM this was written on a page fault cost about
    6 us, and an out-of-place op on 2 MiB took 0.7 ms instead of 0.05: the timings measured the kernel, not the
    method. Blocks over 32 MiB are still mapped afresh. Returns whether glibc took the settings.
    """
    return _mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) and _mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_MAX)


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class PeakMemory:
    """``with PeakMemory(device) as peak:`` ... ``peak.bytes``: peak memory in the block over that at its start.

    ``exact_rss`` (CPU, glibc, with _cache_cpu_heap in force): inside the block every allocation of 64 KiB or more
    is mapped on its own and unmapped when freed, so the resident set follows the live tensors instead of what a
    fragmented heap happens to hold (repeats then agree to 0.1 MiB instead of +-40 MiB at cpu-small).
    """

    def __init__(self, device: torch.device, exact_rss: bool = False):
        self.device = device
        self.exact_rss = exact_rss and device.type == "cpu"
        self.bytes: int | None = None
        self.how = ""
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled_kib = 0

    def __enter__(self) -> PeakMemory:
        _release(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            self.how = "cuda max_memory_allocated delta"
            return self
        if self.exact_rss and not _mallopt(_M_MMAP_THRESHOLD, _EXACT_RSS_BLOCK):
            self.exact_rss = False
        self._start = _proc_status_kib("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.how = "cpu VmHWM delta (clear_refs)" + (", 64 KiB blocks mapped alone" if self.exact_rss else "")
        except OSError:
            self.how = "cpu VmRSS sampled every 1 ms, delta"
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._sampled_kib = max(self._sampled_kib, _proc_status_kib("VmRSS"))

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
        elif self._sampler is None:
            self.bytes = (_proc_status_kib("VmHWM") - self._start) * 1024
        else:
            self._stop.set()
            self._sampler.join()
            self.bytes = (max(self._sampled_kib, _proc_status_kib("VmRSS")) - self._start) * 1024
        if self.exact_rss:
            _mallopt(_M_MMAP_THRESHOLD, _HEAP_BLOCK_MAX)


# ---------------------------------------------------------------------------------------------------- methods
@dataclass
class Spec:
    """Everything a run needs to build one method's model and batch."""

    preset: str
    model: dict | None
    model_path: str | None
    device: torch.device
    dtype: torch.dtype
    batch_size: int
    seq_len: int
    decode_tokens: int
    seed: int = 0
    clock: str = "wall"
    cpu_heap: str | None = None  # "cached" once _cache_cpu_heap is in force


def build_base_model(spec: Spec):
    """A fresh frozen causal LM: the preset's geometry with random weights (seeded), or ``--model``'s checkpoint."""
    torch.manual_seed(spec.seed)
    if spec.model_path:
        model = AutoModelForCausalLM.from_pretrained(spec.model_path, dtype=spec.dtype).to(spec.device)
    else:
        settings = dict(spec.model)
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        with torch.device(spec.device):
            model = AutoModelForCausalLM.from_config(config, dtype=spec.dtype)
    model.generation_config.pad_token_id = model.generation_config.eos_token_id = None
    return model.requires_grad_(False)


def peft_config(method: str):
    """The PEFT config of a ``pmt-*``, ``lora-r*`` or ``prefix-*`` method name."""
    kind, _, value = method.partition("-")
    if kind == "pmt":
        return PrefixMemoryConfig(feature_map=value)
    if kind == "lora":
        rank = int(value.removeprefix("r"))
        # "all-linear": q, k, v, o, gate, up and down of every block (not the LM head).
        return peft.LoraConfig(
            r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    if kind == "prefix":
        return peft.PrefixTuningConfig(num_virtual_tokens=int(value), task_type="CAUSAL_LM")
    raise ValueError(f"`--methods`: unknown method {method!r}; known: {', '.join(METHODS)}.")


def apply_method(model, method: str):
    """Wrap ``model`` for ``method``: base and floor stay transformers models, the others become PeftModels."""
    if method == "base":
        return model
    if method == "floor":
        # A zero scalar added to the embeddings' output: the loss depends on a trainable leaf below every layer,
        # so backward runs through all of them, computing input gradients only. One AdamW parameter.
        model.floor_scalar = torch.nn.Parameter(torch.zeros((), device=model.device, dtype=model.dtype))
        model.get_input_embeddings().register_forward_hook(lambda module, args, out: out + model.floor_scalar)
        return model
    return peft.get_peft_model(model, peft_config(method)).to(model.device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# "wall": time.perf_counter. "cpu": time.process_time, the CPU time of all this process's threads: on a machine
# shared with other jobs it leaves out the time the scheduler gives them (use it with --threads 1, where spin-waits
# of idle OpenMP threads cannot count).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


class Runner:
    """One method's model, optimizer and samples."""

    def __init__(self, method: str, spec: Spec, input_ids: torch.Tensor):
        self.method, self.spec, self.input_ids = method, spec, input_ids
        self.samples: dict[str, list[float]] = {"train_step_s": [], "prefill_s": [], "decode_s": []}
        self.unavailable: dict[str, str] = {}
        self.peak_mem_bytes: int | None = None
        self.trainable_params: int | None = None
        self.model = self.optimizer = None
        if method == "base":
            self.unavailable.update(train_step_s="inference only", peak_mem_bytes="inference only")
        with PeakMemory(spec.device, exact_rss=spec.cpu_heap == "cached") as peak:
            self._build()
            for _ in range(MEMORY_STEPS):
                self.sample("train")
        self.peak_mem_how = peak.how
        if self.model is not None and method != "base" and "train_step_s" not in self.unavailable:
            self.peak_mem_bytes = peak.bytes
        self.samples["train_step_s"].clear()  # the memory window's steps are warm-up, not samples

    def _build(self) -> None:
        try:
            self.model = apply_method(build_base_model(self.spec), self.method)
        except Exception as error:  # noqa: BLE001 - reported as "not available", the other methods still run
            self.unavailable.update(
                {figure: _reason(error) for figure in ("train_step_s", "peak_mem_bytes", "prefill_s", "decode_s")}
            )
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable_params = sum(p.numel() for p in params)
        if self.method != "base":
            self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        # Decode steps call the transformers model with the adapters injected, as PeftModel.generate does.
        get_base_model = getattr(self.model, "get_base_model", None)
        self.step_model = get_base_model() if get_base_model else self.model

    def sample(self, kind: str) -> None:
        """Take one sample of ``kind`` ("train" or "infer"); a failure marks its figures not available."""
        figures = ("train_step_s",) if kind == "train" else ("prefill_s", "decode_s")
        if any(figure in self.unavailable for figure in figures):
            return
        try:
            times = self._train_step() if kind == "train" else self._infer()
        except Exception as error:  # noqa: BLE001
            self.unavailable.update({figure: _reason(error) for figure in figures})
            if kind == "train":
                self.unavailable.setdefault("peak_mem_bytes", _reason(error))
            return
        for figure, seconds in zip(figures, times, strict=True):
            self.samples[figure].append(seconds)

    def _train_step(self) -> tuple[float]:
        self.model.train()
        ids, device, clock = self.input_ids, self.spec.device, CLOCKS[self.spec.clock]
        _sync(device)
        start = clock()
        self.model(input_ids=ids, labels=ids).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return (clock() - start,)

    @torch.inference_mode()
    def _infer(self) -> tuple[float, float]:
        device, clock = self.spec.device, CLOCKS[self.spec.clock]
        _sync(device)
        start = clock()
        prefilled = self._prefill()
        _sync(device)
        decode_start = clock()
        self._decode(prefilled)
        _sync(device)
        return decode_start - start, clock() - decode_start

    def _prefill(self):
        """The forward that fills the KV cache; returns its output (the cache and the last position's logits)."""
        self.model.eval()
        return self.model(input_ids=self.input_ids, use_cache=True, logits_to_keep=1)

    def _decode(self, out) -> None:
        """``decode_tokens`` greedy steps from ``_prefill``'s output."""
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(self.spec.decode_tokens):
            out = self.step_model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    def profile(self) -> str:
        """torch.profiler tables of one training step, one prefill and one decode run, untimed, outside the samples.

        Per-operator totals, per-call averages and call counts show where a method's time goes beside another's.
        """
        from torch.profiler import ProfilerActivity, profile

        cuda = self.spec.device.type == "cuda"
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
        sort_by = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        phases = ("train step", "prefill", "decode") if self.optimizer is not None else ("prefill", "decode")
        sections = []
        for phase in phases:
            with torch.inference_mode(phase != "train step"):
                prefilled = self._prefill() if phase == "decode" else None
                with profile(activities=activities) as profiler:
                    if phase == "train step":
                        self._train_step()
                    elif phase == "prefill":
                        self._prefill()
                    else:
                        self._decode(prefilled)
                    _sync(self.spec.device)
            table = profiler.key_averages().table(sort_by=sort_by, row_limit=-1)  # every operator
            sections.append(f"## {self.method}: {phase}\n\n{table}")
        return "\n".join(sections)

    def result(self) -> dict:
        """The figures (medians), their noise (relative IQR of the samples) and what is not available."""
        tokens = self.spec.batch_size * self.spec.seq_len
        step, prefill, decode = (_median(self.samples[key]) for key in ("train_step_s", "prefill_s", "decode_s"))
        result = {
            "method": self.method,
            "train_step_s": step,
            "train_tokens_per_s": tokens / step if step else None,
            "peak_mem_bytes": self.peak_mem_bytes,
            "peak_mem_how": self.peak_mem_how,
            "prefill_tokens_per_s": tokens / prefill if prefill else None,
            "decode_tokens_per_s": self.spec.batch_size * self.spec.decode_tokens / decode if decode else None,
            "trainable_params": self.trainable_params,
            "noise_rel_iqr": {key: _rel_iqr(values) for key, values in self.samples.items() if values},
            "samples_s": self.samples,
        }
        renamed = {"prefill_s": "prefill_tokens_per_s", "decode_s": "decode_tokens_per_s"}
        result["unavailable"] = {renamed.get(key, key): reason for key, reason in self.unavailable.items()}
        if "train_step_s" in result["unavailable"]:
            result["unavailable"]["train_tokens_per_s"] = result["unavailable"]["train_step_s"]
        return result

    def close(self) -> None:
        self.model = self.optimizer = self.step_model = None
        _release(self.spec.device)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rel_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)


# ---------------------------------------------------------------------------------------------------- schedule
def _time(runners: list[Runner], warmup: int, repeats: int) -> None:
    """Warm-up, then ``repeats`` rounds that sample each runner once, in an order rotated every round."""
    for kind in ("train", "infer"):
        active = [runner for runner in runners if kind == "infer" or runner.method != "base"]
        for runner in active:
            for _ in range(warmup):
                runner.sample(kind)
            for figure in ("train_step_s",) if kind == "train" else ("prefill_s", "decode_s"):
                runner.samples[figure].clear()
        for round_index in range(repeats):
            shift = round_index % max(len(active), 1)
            for runner in active[shift:] + active[:shift]:
                runner.sample(kind)


def _warm_process(spec: Spec) -> None:
    """One untimed floor model, trained and run once, so one-off costs fall on no method measured."""
    runner = Runner("floor", spec, _input_ids(spec))
    runner.sample("infer")
    runner.close()


def _input_ids(spec: Spec) -> torch.Tensor:
    vocab = spec.model["vocab_size"] if spec.model else _checkpoint_vocab(spec.model_path)
    generator = torch.Generator().manual_seed(spec.seed)
    return torch.randint(0, vocab, (spec.batch_size, spec.seq_len), generator=generator).to(spec.device)


def _checkpoint_vocab(path: str) -> int:
    return AutoConfig.from_pretrained(path).vocab_size


def run(
    spec: Spec, methods: list[str], warmup: int, repeats: int, schedule: str, profiles: list[str] | None = None
) -> list[dict]:
    """Measure ``methods``; interleaved keeps every model alive, sequential builds, times and frees one at a time.

    With ``profiles`` (a list), each method's profiler tables are appended to it after its samples are taken.
    """
    _warm_process(spec)
    input_ids = _input_ids(spec)
    batches = [methods] if schedule == "interleaved" else [[method] for method in methods]
    results = []
    for batch in batches:
        runners = [Runner(method, spec, input_ids) for method in batch]
        _time(runners, warmup, repeats)
        for runner in runners:
            results.append(runner.result())
            if profiles is not None and runner.model is not None:
                profiles.append(runner.profile())
            runner.close()
    return results


# ---------------------------------------------------------------------------------------------------- report
def ratios(results: list[dict]) -> dict[str, dict[str, float | None]]:
    """``{method: {"<figure>/<reference>": ratio}}`` for the pairs in RATIOS (None where either is missing)."""
    by_method = {result["method"]: result for result in results}
    table = {}
    for result in results:
        row = {}
        for figure, reference in RATIOS:
            value, ref = result.get(figure), by_method.get(reference, {}).get(figure)
            row[f"{figure}/{reference}"] = value / ref if value is not None and ref else None
        table[result["method"]] = row
    return table


# The timed samples behind each figure; throughputs are per-second inverses of these times.
_SAMPLES = {
    "train_step_s": ("train_step_s", 1),
    "prefill_tokens_per_s": ("prefill_s", -1),
    "decode_tokens_per_s": ("decode_s", -1),
}


def paired_ratio(result: dict, reference: dict, figure: str) -> dict | None:
    """The ratio of ``figure`` from samples of the same round (taken back to back), as median and IQR.

    A second estimate beside the ratio of medians: load that drifts between rounds cancels out of it.
    """
    key, power = _SAMPLES.get(figure, (None, 0))
    ours, theirs = result.get("samples_s", {}).get(key), reference.get("samples_s", {}).get(key)
    if not ours or not theirs or len(ours) != len(theirs):
        return None
    per_round = [(a / b) ** power for a, b in zip(ours, theirs, strict=True)]
    q1, median, q3 = statistics.quantiles(per_round, n=4, method="inclusive") if len(per_round) > 1 else per_round * 3
    return {"median": median, "q1": q1, "q3": q3}


def check_targets(results: list[dict]) -> list[dict]:
    """The issue's targets, each with its measured ratio and whether it is met (None: not measurable)."""
    table = ratios(results)
    by_method = {result["method"]: result for result in results}
    checks = []
    for method, figure, reference, comparison, bound in TARGETS:
        ratio = table.get(method, {}).get(f"{figure}/{reference}")
        met = None if ratio is None else (ratio <= bound if comparison == "<=" else ratio >= bound)
        paired = None
        if method in by_method and reference in by_method:
            paired = paired_ratio(by_method[method], by_method[reference], figure)
        checks.append(
            dict(
                method=method,
                figure=figure,
                reference=reference,
                comparison=comparison,
                bound=bound,
                ratio=ratio,
                met=met,
                paired=paired,
            )
        )
    return checks


def _cell(value, scale: float = 1.0, digits: int = 3, noise: float | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value / scale:,.{digits}f}" if isinstance(value, float) or scale != 1.0 else f"{value:,}"
    return f"{text} ±{noise:.0%}" if noise else text


def markdown(report: dict) -> str:
    """The figures, the ratios and the targets, as Markdown."""
    results = report["results"]
    lines = [
        f"preset `{report['preset']}` on {report['machine']}: batch {report['batch_size']} x seq {report['seq_len']}, "
        f"{report['dtype']}, decode {report['decode_tokens']} tokens, {report['schedule']}, {report['clock']} clock, "
        f"CPU heap {report['cpu_heap'] or 'n/a'}, warm-up {report['warmup']}, median of {report['repeats']} "
        "(± = relative IQR of the samples)",
        "",
        "| method | train step (s) | train tok/s | peak mem (MiB) | prefill tok/s | decode tok/s | trainable |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        noise = r["noise_rel_iqr"]
        lines.append(
            f"| {r['method']} | {_cell(r['train_step_s'], noise=noise.get('train_step_s'))} "
            f"| {_cell(r['train_tokens_per_s'], digits=0)} | {_cell(r['peak_mem_bytes'], 2**20, 1)} "
            f"| {_cell(r['prefill_tokens_per_s'], digits=0, noise=noise.get('prefill_s'))} "
            f"| {_cell(r['decode_tokens_per_s'], digits=1, noise=noise.get('decode_s'))} "
            f"| {_cell(r['trainable_params'])} |"
        )
    headers = [f"{figure.removesuffix('_s').removesuffix('_bytes')} / {ref}" for figure, ref in RATIOS]
    lines += ["", "| method | " + " | ".join(headers) + " |", "|---|" + "---:|" * len(headers)]
    for method, row in report["ratios"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(value, digits=2) for value in row.values()) + " |")
    lines += ["", "targets (issue #7):"]
    for t in report["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        ratio = "n/a" if t["ratio"] is None else f"{t['ratio']:.3f}"
        paired = ""
        if t["paired"]:
            q1, median, q3 = (t["paired"][key] for key in ("q1", "median", "q3"))
            paired = f"; paired per round {median:.3f} [IQR {q1:.3f}-{q3:.3f}]"
        lines.append(
            f"- {t['method']} {t['figure']} / {t['reference']} = {ratio} "
            f"(target {t['comparison']} {t['bound']}): {verdict}{paired}"
        )
    missing = [(r["method"], figure, reason) for r in results for figure, reason in r["unavailable"].items()]
    if missing:
        lines += ["", "not available:"] + [f"- {method} {figure}: {reason}" for method, figure, reason in missing]
    return "\n".join(lines)


def plot(report: dict, path: str) -> None:
    """Bars of every ratio in RATIOS, one panel per ratio (PrefixMemory in orange), a line at 1."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    methods = list(report["ratios"])
    colors = ["tab:orange" if method.startswith("pmt-") else "tab:blue" for method in methods]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), constrained_layout=True)
    for ax, (figure, reference) in zip(axes.flat, RATIOS, strict=True):
        values = [report["ratios"][method][f"{figure}/{reference}"] for method in methods]
        bars = ax.bar(methods, [value or 0.0 for value in values], color=colors)
        ax.bar_label(bars, labels=["n/a" if value is None else f"{value:.2f}" for value in values], fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{figure} / {reference}")
        ax.tick_params(axis="x", labelrotation=45)
    fig.suptitle(f"prefixmemory-bench: preset {report['preset']}, {report['dtype']}, {report['machine']}")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible (cpu)"


# ---------------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="prefixmemory-bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        default="cpu-small",
        choices=sorted(PRESETS),
        help="model geometry (random weights) and batch shape",
    )
    parser.add_argument("--model", help="a causal-LM checkpoint to use instead of the preset's random weights")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: the preset's")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seq-len", type=int)
    parser.add_argument("--decode-tokens", type=int)
    parser.add_argument("--warmup", type=int, help="untimed samples per figure after the memory window")
    parser.add_argument("--repeats", type=int, help="timed samples per figure; the median is reported")
    parser.add_argument(
        "--schedule",
        choices=("interleaved", "sequential"),
        help="interleaved: all models alive, methods alternate (default on CPU); "
        "sequential: one model at a time (default on CUDA, for memory)",
    )
    parser.add_argument("--threads", type=int, help="torch intra-op threads on CPU (default: torch's choice)")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time, or this process's CPU time (steadier beside other jobs on a shared CPU)",
    )
    parser.add_argument(
        "--cpu-heap",
        choices=("cached", "default"),
        default="cached",
        help="cached: glibc keeps freed memory for reuse (see _cache_cpu_heap); default: as is",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the report to this JSON file")
    parser.add_argument("--plot", help="write bars of the ratios to this PNG file (needs matplotlib)")
    parser.add_argument(
        "--profile",
        help="after the timed samples, write torch.profiler tables of each method's training step, prefill and "
        "decode to this text file",
    )
    args = parser.parse_args(argv)
    args.methods = [method.strip() for method in args.methods.split(",") if method.strip()]
    unknown = [method for method in args.methods if method not in METHODS]
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown or 'empty list'}; known: {', '.join(METHODS)}")
    for flag in ("json", "plot", "profile"):  # checked now, not after minutes of measuring
        path = getattr(args, flag)
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            parser.error(f"--{flag}: the folder of {path!r} does not exist")
    return args


def main(argv: list[str] | None = None) -> None:
    benchmark(parse_args(argv))


def benchmark(args: argparse.Namespace) -> dict:
    """Run the benchmark ``args`` describe; print the Markdown report, write the JSON and the plot if asked."""
    preset = PRESETS[args.preset]
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu_heap = None
    if device.type == "cpu":
        cpu_heap = "cached" if args.cpu_heap == "cached" and _cache_cpu_heap() else "glibc default"
    spec = Spec(
        preset=args.preset,
        model=None if args.model else preset.model,
        model_path=args.model,
        device=device,
        dtype=getattr(torch, args.dtype or preset.dtype),
        batch_size=args.batch_size or preset.batch_size,
        seq_len=args.seq_len or preset.seq_len,
        decode_tokens=args.decode_tokens or preset.decode_tokens,
        seed=args.seed,
        clock=args.clock,
        cpu_heap=cpu_heap,
    )
    warmup = preset.warmup if args.warmup is None else args.warmup
    repeats = args.repeats or preset.repeats
    schedule = args.schedule or ("sequential" if device.type == "cuda" else "interleaved")
    load_start, started = os.getloadavg(), time.perf_counter()
    profiles = [] if args.profile else None
    results = run(spec, args.methods, warmup, repeats, schedule, profiles)
    report = {
        "preset": args.preset if not args.model else f"{args.preset} shape, model {args.model}",
        "device": str(device),
        "machine": _machine(device),
        "dtype": str(spec.dtype).removeprefix("torch."),
        "batch_size": spec.batch_size,
        "seq_len": spec.seq_len,
        "decode_tokens": spec.decode_tokens,
        "model": spec.model or {"path": args.model},
        "schedule": schedule,
        "clock": args.clock,
        "cpu_heap": cpu_heap,
        "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
        "warmup": warmup,
        "repeats": repeats,
        "loadavg_start_end": [load_start, os.getloadavg()],
        "wall_s": time.perf_counter() - started,
        "versions": _versions(),
        "results": results,
    }
    report["ratios"] = ratios(results)
    report["targets"] = check_targets(results)
    print(markdown(report))
    print(f"\nwall {report['wall_s']:.0f} s; load average start {load_start[0]:.2f}, end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    if args.plot:
        plot(report, args.plot)
    if args.profile:
        with open(args.profile, "w") as file:
            file.write("\n\n".join(profiles) + "\n")
    return report


def _versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}


if __name__ == "__main__":
    main()
