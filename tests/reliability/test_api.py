"""Requests to ``llamafactory-cli api`` with sampling fields out of range get a 400 with one line naming the field,
before any token is generated; a ``max_tokens`` beyond the model's context is refused instead of holding the server.

The app is LLaMA-Factory's own (``create_app``) around a ChatModel serving the trained adapter, called in-process.
"""

import threading

import pytest

MESSAGES = [{"role": "user", "content": "Count to 3."}]
CONTEXT = 2048  # max_position_embeddings of the tiny test model


@pytest.fixture(scope="module")
def client(tiny_qwen2, trained_run):
    from fastapi.testclient import TestClient
    from llamafactory.api.app import create_app
    from llamafactory.chat import ChatModel

    chat_model = ChatModel(dict(
        model_name_or_path=str(tiny_qwen2), adapter_name_or_path=str(trained_run / "checkpoint-2"),
        finetuning_type="prefixmemory", template="qwen", infer_backend="huggingface", max_new_tokens=4,
    ))  # fmt: skip
    assert chat_model.engine.model.config.max_position_embeddings == CONTEXT
    return TestClient(create_app(chat_model), raise_server_exceptions=False)


def _post(client, stream: bool, **fields):
    """POST in a thread: a request the server does not refuse may generate for hours; give it a minute."""
    body = {"model": "pmt", "messages": MESSAGES, "stream": stream, **fields}
    answer = {}
    thread = threading.Thread(target=lambda: answer.update(response=client.post("/v1/chat/completions", json=body)))
    thread.daemon = True
    thread.start()
    thread.join(timeout=60)
    assert "response" in answer, f"{fields}: no answer within a minute (the server is generating)"
    return answer["response"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(max_tokens=-5), "`max_tokens` -5 is out of range: it must be 1 or more."),
        (dict(temperature=-1.0), "`temperature` -1.0 is out of range: it must be 0 (greedy) or more."),
        (dict(top_p=1.5), "`top_p` 1.5 is out of range: it must be from 0 to 1."),
        (dict(presence_penalty=-1.0), "`presence_penalty` -1.0 is out of range: it must be above 0 (LLaMA-Factory"),
        (dict(max_tokens=10**9), f"`max_tokens` 1000000000 exceeds the model's context of {CONTEXT} tokens"),
    ],
    ids=["negative max_tokens", "negative temperature", "top_p", "presence_penalty", "huge max_tokens"],
)
def test_out_of_range_fields_are_a_400_naming_the_field(client, stream, fields, message):
    response = _post(client, stream, **fields)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert detail.startswith(message) and "\n" not in detail


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_fields_in_range_still_generate(client, stream):
    response = _post(client, stream, max_tokens=3, temperature=0, top_p=1.0)
    assert response.status_code == 200, response.text[:300]
    assert ("data:" in response.text) if stream else response.json()["choices"][0]["message"]["content"] is not None
