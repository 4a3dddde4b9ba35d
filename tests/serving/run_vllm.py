"""Greedy continuations from vLLM, run inside the serving environment (of the project, only the installed plugin).

    python run_vllm.py JOBS_JSON OUT_JSON
JOBS_JSON: a list of {"name", "dir", "prompts" (token ids), "new_tokens", "tensor_parallel_size"}. One engine per
job, one after another in this process; OUT_JSON gets {name: continuations}. A job whose engine fails to start gets
{"error": the exception's last line} instead, and the others still run.

Engines without tensor parallelism run inside this process (no engine-core or worker process), and their PrefixMemory
class is handed to vLLM's registry here, as the plugin's lazy entry would import it: each engine then starts in
seconds instead of paying a fresh vLLM import in new processes (two to start it, one for vLLM to inspect a lazily
registered class), up to a minute each on a loaded 2-core machine. Tensor-parallel jobs take the plugin's own path:
its lazy entry, resolved in each worker.
"""

from __future__ import annotations

import gc
import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the tiny models need little
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process


def generate(job: dict) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    tensor_parallel = job.get("tensor_parallel_size", 1)
    if tensor_parallel > 1:  # one core per rank: the automatic binding needs a NUMA node per rank
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(i % os.cpu_count()) for i in range(tensor_parallel))
    executor = "uni" if tensor_parallel == 1 else "mp"  # uni: the worker in this process too
    if tensor_parallel == 1:
        register_here(job["dir"])
    # token ids in and out: no tokenizer is read (the toy one is saved by transformers 5, vLLM 0.11 runs on 4.57)
    llm = LLM(model=job["dir"], dtype="float32", enforce_eager=True, max_model_len=256, max_num_seqs=8, seed=0,
              tensor_parallel_size=tensor_parallel, distributed_executor_backend=executor,
              skip_tokenizer_init=True)  # fmt: skip
    params = SamplingParams(temperature=0.0, max_tokens=job["new_tokens"], ignore_eos=True, detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in job["prompts"]], params, use_tqdm=False)
    del llm
    gc.collect()
    return [list(output.outputs[0].token_ids) for output in outputs]


def register_here(folder: str) -> None:
    from vllm import ModelRegistry

    import prefixmemory_vllm.models

    architecture = json.loads(open(os.path.join(folder, "config.json")).read())["architectures"][0]
    ModelRegistry.register_model(architecture, getattr(prefixmemory_vllm.models, architecture))


def run(job: dict) -> list[list[int]] | dict:
    try:
        return generate(job)
    except Exception as error:  # one family's refusal or failure is that case's result, not the run's
        lines = str(error).strip().splitlines() or [""]
        return {"error": f"{type(error).__name__}: {lines[-1]}"}


if __name__ == "__main__":
    jobs = json.loads(open(sys.argv[1]).read())
    results = {job["name"]: run(job) for job in jobs}
    with open(sys.argv[2], "w") as out:
        json.dump(results, out)
