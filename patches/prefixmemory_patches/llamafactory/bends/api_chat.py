"""Bends ``llamafactory.api.chat``: requests to ``llamafactory-cli api``, checked before any token is generated.

| LLaMA-Factory function | change | why |
| --- | --- | --- |
| api.chat.create_chat_completion_response | sampling fields, `max_tokens` vs context: one-line 400 | 500s, hangs |
| api.chat.create_stream_chat_completion_response | (same), before the stream opens | inside it, no 400 |

Upstream passes the fields to generate() unchecked: a negative `max_tokens` or `temperature` raised inside it
(HTTP 500), and a `max_tokens` of a billion held the server's one generation slot until it was killed. For every
fine-tuning type: the request is at fault, not the method. Patched in api.chat itself, before api.app binds the
two names; the stream's check runs when the endpoint calls it, so its refusal is a 400 too, not an error inside an
open event stream.
"""

from __future__ import annotations

from ...errors import PrefixMemoryError
from ...seams import Seam, bends
from .. import wraps_original
from ..checks.outputs import check_generation_request


@bends(
    Seam("create_chat_completion_response", params=("request", "chat_model")),
    Seam("create_stream_chat_completion_response", params=("request", "chat_model")),
    Seam("HTTPException"),
    Seam("status"),
)
def patch_api_chat(chat) -> None:
    @wraps_original(chat, "create_chat_completion_response")
    async def checked_response(create_response, request, chat_model):
        _check(chat, request, chat_model)
        return await create_response(request, chat_model)

    @wraps_original(chat, "create_stream_chat_completion_response")
    def checked_stream(create_stream, request, chat_model):
        _check(chat, request, chat_model)
        return create_stream(request, chat_model)


def _check(chat, request, chat_model) -> None:
    """Our one-line refusal as HTTP 400; the context is the served model's positions (huggingface engine)."""
    config = getattr(getattr(chat_model.engine, "model", None), "config", None)
    try:
        check_generation_request(request, getattr(config, "max_position_embeddings", None))
    except PrefixMemoryError as error:
        raise chat.HTTPException(status_code=chat.status.HTTP_400_BAD_REQUEST, detail=str(error)) from None
