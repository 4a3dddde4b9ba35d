"""Building and timing: one Runner per method (its model, optimizer and samples), and the schedule that times them.

Every method gets a freshly built model (same seed, same random weights) and the same input ids. The peak-memory
window covers the build and MEMORY_STEPS training steps; timed samples come after ``warmup`` untimed ones.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
from transformers import AutoConfig

from .memory import PeakMemory, release
from .models import Spec, apply_method, build_base_model, with_saved_base
from .presets import FIGURES, QUANTIZED_PREFIX

MEMORY_STEPS = 2  # training steps inside the peak-memory window: the second runs with AdamW state allocated


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# "wall": time.perf_counter. "cpu": time.process_time, the CPU time of all this process's threads: on a machine
# shared with other jobs it leaves out the time the scheduler gives them (use it with --threads 1, where spin-waits
# of idle OpenMP threads cannot count).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
# What one sample of each kind times: training at the preset's batch, inference at the preset's batch and at batch 1.
KINDS = {
    "train": ("train_step_s",),
    "infer": ("prefill_s", "decode_s"),
    "infer-b1": ("prefill_b1_s", "decode_b1_s"),
}


class Runner:
    """One method's model, optimizer and samples."""

    def __init__(self, method: str, spec: Spec, input_ids: torch.Tensor):
        self.method, self.spec, self.input_ids = method, spec, input_ids
        self.samples: dict[str, list[float]] = {figure: [] for figures in KINDS.values() for figure in figures}
        # Every decode step's seconds, in the order taken: runners step in turn, so step i of two runners pairs up.
        self.step_samples: dict[str, list[float]] = {KINDS[kind][1]: [] for kind in ("infer", "infer-b1")}
        self._generation: tuple | None = None  # (cache, next token, prefill seconds, step seconds) while generating
        self.unavailable: dict[str, str] = {}
        self.peak_mem_bytes: int | None = None
        self.trainable_params: int | None = None
        self.adapter_bytes: int | None = None  # the trainable parameters'
        self.weight_bytes: int | None = None  # the frozen weights one decode step reads (see _decode_weight_bytes)
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
        quantized = self.method.startswith(QUANTIZED_PREFIX)
        try:
            base = build_base_model(self.spec, quantized)
            self.model = apply_method(base, self.method.removeprefix(QUANTIZED_PREFIX))
        except Exception as error:  # noqa: BLE001 - reported as "not available", the other methods still run
            self.unavailable.update(
                {figure: _reason(error) for figure in ("train_step_s", "peak_mem_bytes", "prefill_s", "decode_s")}
            )
            return
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.trainable_params = sum(p.numel() for p in params)
        self.adapter_bytes = sum(p.numel() * p.element_size() for p in params)
        self.weight_bytes = _decode_weight_bytes(self.model)
        if self.method != "base":
            self.optimizer = torch.optim.AdamW(params, lr=1e-4)
        # Decode steps call the transformers model with the adapters injected, as PeftModel.generate does.
        get_base_model = getattr(self.model, "get_base_model", None)
        self.step_model = get_base_model() if get_base_model else self.model

    def sample(self, kind: str) -> None:
        """Take one sample of ``kind`` (a key of KINDS); a failure marks its figures not available."""
        if kind != "train":
            generate([self], kind)
            return
        if self._skips(kind):
            return
        try:
            seconds = self._train_step()
        except Exception as error:  # noqa: BLE001
            self._fail(kind, error)
            return
        self.samples["train_step_s"].append(seconds)

    def _skips(self, kind: str) -> bool:
        return any(figure in self.unavailable for figure in KINDS[kind])

    def _fail(self, kind: str, error: Exception) -> None:
        self.unavailable.update({figure: _reason(error) for figure in KINDS[kind]})
        if kind == "train":
            self.unavailable.setdefault("peak_mem_bytes", _reason(error))
        self._generation = None

    def _train_step(self) -> float:
        self.model.train()
        ids, device, clock = self.input_ids, self.spec.device, CLOCKS[self.spec.clock]
        _sync(device)
        start = clock()
        self.model(input_ids=ids, labels=ids).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        _sync(device)
        return clock() - start

    @torch.inference_mode()
    def begin_generation(self, kind: str) -> bool:
        """Prefill the batch of ``kind`` and pick the first token, timed (TTFT); False if this runner cannot."""
        if self._skips(kind):
            return False
        device, clock = self.spec.device, CLOCKS[self.spec.clock]
        try:
            _sync(device)
            start = clock()
            prefilled = self._prefill(self.input_ids[:1] if kind == "infer-b1" else self.input_ids)
            token = prefilled.logits[:, -1].argmax(-1, keepdim=True)
            _sync(device)
        except Exception as error:  # noqa: BLE001
            self._fail(kind, error)
            return False
        self._generation = (prefilled.past_key_values, token, clock() - start, [])
        return True

    @torch.inference_mode()
    def decode_step(self, kind: str) -> bool:
        """One timed greedy step of the generation begun; False if it failed (the generation is dropped)."""
        cache, token, prefill_s, steps = self._generation
        device, clock = self.spec.device, CLOCKS[self.spec.clock]
        try:
            _sync(device)
            start = clock()
            out = self.step_model(input_ids=token, past_key_values=cache, use_cache=True)
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            _sync(device)
        except Exception as error:  # noqa: BLE001
            self._fail(kind, error)
            return False
        steps.append(clock() - start)
        self._generation = (out.past_key_values, token, prefill_s, steps)
        return True

    def end_generation(self, kind: str) -> None:
        """Record the generation's samples: its TTFT, the sum of its steps, and every step."""
        _, _, prefill_s, steps = self._generation
        prefill_key, decode_key = KINDS[kind]
        self.samples[prefill_key].append(prefill_s)
        self.samples[decode_key].append(sum(steps))
        self.step_samples[decode_key].extend(steps)
        self._generation = None

    def clear(self, kind: str) -> None:
        """Drop the samples of ``kind`` taken so far (warm-up)."""
        for figure in KINDS[kind]:
            self.samples[figure].clear()
            self.step_samples.get(figure, []).clear()

    def _prefill(self, input_ids: torch.Tensor):
        """The forward that fills the KV cache; returns its output (the cache and the last position's logits)."""
        self.model.eval()
        return self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1)

    def _decode(self, cache, token: torch.Tensor) -> None:
        """``decode_tokens`` greedy steps after the first generated ``token``."""
        for _ in range(self.spec.decode_tokens):
            out = self.step_model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    def profiled(self, phase: str, input_ids: torch.Tensor | None = None):
        """torch.profiler's record of one ``phase``, untimed, outside the samples: "train step", "prefill", or
        "decode" (``decode_tokens`` steps after a prefill that is not recorded); ``input_ids``: the run's batch."""
        from torch.profiler import ProfilerActivity, profile

        ids = self.input_ids if input_ids is None else input_ids
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if self.spec.device.type == "cuda" else [])]
        with torch.inference_mode(phase != "train step"):
            prefilled = self._prefill(ids) if phase == "decode" else None
            with profile(activities=activities) as profiler:
                if phase == "train step":
                    self._train_step()
                elif phase == "prefill":
                    self._prefill(ids)
                else:
                    self._decode(prefilled.past_key_values, prefilled.logits[:, -1].argmax(-1, keepdim=True))
                _sync(self.spec.device)
        return profiler

    def profile(self) -> str:
        """torch.profiler tables of one training step, one prefill and one decode run.

        Per-operator totals, per-call averages and call counts show where a method's time goes beside another's.
        """
        sort_by = "self_cuda_time_total" if self.spec.device.type == "cuda" else "self_cpu_time_total"
        phases = ("train step", "prefill", "decode") if self.optimizer is not None else ("prefill", "decode")
        sections = []
        for phase in phases:
            table = self.profiled(phase).key_averages().table(sort_by=sort_by, row_limit=-1)  # every operator
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
            **self._b1_throughput(),
            **self._latency("b1", 1),
            **self._latency("bN", self.spec.batch_size),
            "trainable_params": self.trainable_params,
            "adapter_bytes": self.adapter_bytes,
            "weight_bytes": self.weight_bytes,
            "noise_rel_iqr": {key: _rel_iqr(values) for key, values in self.samples.items() if values},
            "samples_s": self.samples,
            "step_samples_s": self.step_samples,
        }
        renamed = {
            "prefill_s": "prefill_tokens_per_s",
            "decode_s": "decode_tokens_per_s",
            "prefill_b1_s": "prefill_b1_tokens_per_s",
            "decode_b1_s": "decode_b1_tokens_per_s",
        }
        result["unavailable"] = {
            renamed.get(key, key): reason
            for key, reason in self.unavailable.items()
            if renamed.get(key, key) in FIGURES
        }
        if "train_step_s" in result["unavailable"]:
            result["unavailable"]["train_tokens_per_s"] = result["unavailable"]["train_step_s"]
        return result

    def _b1_throughput(self) -> dict:
        """Prefill and decode tokens per second of one prompt (batch 1), from the medians of its samples."""
        prefill, decode = _median(self.samples["prefill_b1_s"]), _median(self.samples["decode_b1_s"])
        return {
            "prefill_b1_tokens_per_s": self.spec.seq_len / prefill if prefill else None,
            "decode_b1_tokens_per_s": self.spec.decode_tokens / decode if decode else None,
        }

    def _latency(self, suffix: str, batch: int) -> dict:
        """TTFT, TBT and TPS from the samples at ``batch`` (``suffix`` b1: batch 1; bN: the preset's batch).

        TTFT: median seconds of prefill + first token. TBT: median seconds of the later ``decode_tokens`` steps, per
        step. TPS: the ``batch * (decode_tokens + 1)`` generated tokens over the median of whole generations.
        """
        prefill_key, decode_key = ("prefill_b1_s", "decode_b1_s") if suffix == "b1" else ("prefill_s", "decode_s")
        ttft, decode = _median(self.samples[prefill_key]), _median(self.samples[decode_key])
        pairs = zip(self.samples[prefill_key], self.samples[decode_key], strict=True)
        whole = _median([first + rest for first, rest in pairs])
        steps = self.spec.decode_tokens
        names = (f"ttft_{suffix}_s", f"tbt_{suffix}_s", f"tps_{suffix}")
        reason = self.unavailable.get(prefill_key) or self.unavailable.get(decode_key)
        if reason:
            self.unavailable.update(dict.fromkeys(names, reason))
        return dict(
            zip(
                names,
                (ttft, decode / steps if decode and steps else None, batch * (steps + 1) / whole if whole else None),
                strict=True,
            )
        )

    def close(self) -> None:
        self.model = self.optimizer = self.step_model = None
        release(self.spec.device)


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _rel_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)


def _time(runners: list[Runner], warmup: int, repeats: int, kinds: tuple[str, ...] = tuple(KINDS)) -> None:
    """For each of ``kinds``: ``warmup`` untimed rounds, then ``repeats`` rounds that sample each runner once, in an
    order rotated every round; the runners generate in lockstep (see ``generate``)."""
    for kind in kinds:
        active = [runner for runner in runners if kind != "train" or runner.method != "base"]
        for round_index in range(warmup + repeats):
            if round_index == warmup:
                for runner in active:
                    runner.clear(kind)
            shift = round_index % max(len(active), 1)
            order = active[shift:] + active[:shift]
            if kind == "train":
                for runner in order:
                    runner.sample(kind)
            else:
                generate(order, kind)


def generate(runners: list[Runner], kind: str) -> None:
    """One generation per runner (prefill, then ``decode_tokens`` steps), the runners taking turns at every step.

    Step i of every method runs within milliseconds of step i of the others, so per-step ratios between methods
    (report.paired_ratio) compare like with like on a machine whose speed drifts under other jobs.
    """
    running = [runner for runner in runners if runner.begin_generation(kind)]
    for _ in range(runners[0].spec.decode_tokens if runners else 0):
        running = [runner for runner in running if runner.decode_step(kind)]
    for runner in running:
        runner.end_generation(kind)


def _decode_weight_bytes(model) -> int:
    """Bytes of the frozen weights a decode step reads: all of them but the input embedding table (one row of it is
    read per token), unless the LM head shares it."""
    frozen = {id(p): p for p in model.parameters() if not p.requires_grad}
    embedding = model.get_input_embeddings().weight
    if embedding is not model.get_output_embeddings().weight:
        frozen.pop(id(embedding), None)
    return sum(p.numel() * p.element_size() for p in frozen.values())


def _warm_process(spec: Spec, methods: list[str]) -> None:
    """One untimed floor model (and one on a 4-bit base if asked for), trained and run once, so one-off costs fall
    on no method measured."""
    quantized = any(method.startswith(QUANTIZED_PREFIX) for method in methods)
    for method in ("floor", *((QUANTIZED_PREFIX + "floor",) if quantized else ())):
        runner = Runner(method, spec, _input_ids(spec))
        generate([runner], "infer")
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
    with tempfile.TemporaryDirectory(prefix="prefixmemory-bench-") as folder:
        spec = with_saved_base(spec, methods, folder)
        return _run(spec, methods, warmup, repeats, schedule, profiles)


def _run(spec: Spec, methods: list[str], warmup: int, repeats: int, schedule: str, profiles) -> list[dict]:
    _warm_process(spec, methods)
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
