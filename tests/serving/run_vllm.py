"""Greedy continuations from vLLM, run inside the serving environment (it imports nothing of the project).

    python run_vllm.py JOBS_JSON OUT_JSON
JOBS_JSON: a list of {"name", "dir", "prompts" (token ids), "new_tokens", "tensor_parallel_size"}. One engine per
job, one after another in this process; OUT_JSON gets {name: continuations}.
"""

from __future__ import annotations

import gc
import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the tiny models need little


def generate(job: dict) -> list[list[int]]:
    from vllm import LLM, SamplingParams

    tensor_parallel = job.get("tensor_parallel_size", 1)
    if tensor_parallel > 1:  # one core per rank: the automatic binding needs a NUMA node per rank
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(i % os.cpu_count()) for i in range(tensor_parallel))
    # token ids in and out: no tokenizer is read (the toy one is saved by transformers 5, vLLM 0.11 runs on 4.57)
    llm = LLM(model=job["dir"], dtype="float32", enforce_eager=True, max_model_len=256, max_num_seqs=8, seed=0,
              tensor_parallel_size=tensor_parallel, skip_tokenizer_init=True)  # fmt: skip
    params = SamplingParams(temperature=0.0, max_tokens=job["new_tokens"], ignore_eos=True, detokenize=False)
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in job["prompts"]], params, use_tqdm=False)
    del llm
    gc.collect()
    return [list(output.outputs[0].token_ids) for output in outputs]


if __name__ == "__main__":
    jobs = json.loads(open(sys.argv[1]).read())
    results = {job["name"]: generate(job) for job in jobs}
    with open(sys.argv[2], "w") as out:
        json.dump(results, out)
