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
  follows the live tensors, not a fragmented heap (see memory.PeakMemory); where clear_refs is not writable, a thread
  samples VmRSS every millisecond. A throw-away warm-up model runs first, so one-off costs (thread pools, kernel
  caches, cuBLAS workspaces) are not charged to the first method measured.
- ``prefill_tokens_per_s``: one no-grad forward over the batch that fills the KV cache, logits of the last
  position only (as ``generate`` does).
- ``decode_tokens_per_s``: ``--decode-tokens`` greedy steps with the KV cache after that prefill. The steps call the
  underlying transformers model with the adapter layers injected, which is what ``PeftModel.generate`` does.
- latency, as the paper's Table 6 reports it, at batch 1 (the first prompt of the batch) and at the preset's batch:
  ``ttft_*_s`` (prefill and the argmax of the first generated token), ``tbt_*_s`` (the later decode steps, per step)
  and ``tps_*`` (every generated token, the first included, over the whole generation).
- ``trainable_params``.

Methods: ``base`` (inference only), ``floor`` (frozen model; a zero scalar parameter added to the input
embeddings makes autograd traverse every layer with no weight gradient: the least any method that adapts every
layer can cost), ``pmt-elu``/``pmt-gelu``/``pmt-mlp``, ``lora-r32``/``lora-r64`` (every linear layer of every
block), ``lora-qv-r32`` (q_proj and v_proj: the paper's LoRA setting), ``prefix-32`` (PEFT prefix tuning, 32 virtual
tokens) and ``prefix-32-mlp`` (the same through the MLP reparameterisation the paper's baseline trains with; a saved
adapter stores the MLP's output, so its inference figures here, which run the MLP, are an upper bound). A figure a
method cannot produce is reported as not available, with the reason, instead of stopping the run.

Fairness under load: with ``--schedule interleaved`` (the default on CPU) all models are built first and every
repeat times each method once, in an order rotated each round, so that load from other processes falls on all
methods alike; generations run in lockstep, every method taking its decode step i before any takes step i+1.
Noise is recorded three ways: the relative inter-quartile range of each figure's samples; the targets' ratios also
taken pair by pair (decode step by decode step, other figures round by round) with their IQR and the number of pairs,
the verdict read from the paired median; and ``floor``, timed at inference too although it is the base model, whose
prefill/decode ratios against ``base`` should be 1. The report states the torch thread count; on a CPU shared with
other jobs, ``--threads 1 --clock cpu`` (CPU time of this process) leaves the other jobs' turns out. On CPU, freed
heap memory is kept for reuse unless ``--cpu-heap default`` (see memory.cache_cpu_heap).

Usage: ``prefixmemory-bench --preset cpu-small --json out.json --plot out.png`` (about 5 minutes of CPU time on one
thread); ``--preset qwen2.5-0.5b|qwen2.5-3b|llama2-7b`` on a GPU; ``--model PATH`` for a checkpoint (the preset
then gives the batch shape); ``--methods pmt-elu,lora-r32,floor`` for a subset; ``--profile FILE`` for
torch.profiler tables of each method's training step, prefill and decode; ``--overhead`` for PrefixMemory's extra
time per layer split by operator (overhead.py); ``--mixed-adapters`` for batches of several adapters (mixed.py).

Presets and methods: presets.py. Peak memory: memory.py. Models: models.py. Timing: runner.py. Ratios, targets, tables
and plot: report.py. Per-layer split: overhead.py. Mixed-adapter batches: mixed.py. Command line: cli.py.
"""
