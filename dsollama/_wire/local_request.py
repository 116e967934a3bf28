"""The JSON body of a streamed ``/api/chat`` or ``/api/generate``, built by the ``ollama`` package.

The daemon backend sends these requests itself (on the official client's own httpx
client) so that it can read the NDJSON answer
without validating every line into a pydantic model (`local.parse_local_line` and
`local.local_chunk_to_delta` check only the fields dsollama reads). The body is not
re-implemented here: it is made by the official client's own request models and the
helpers its ``chat`` and ``generate`` call (messages and images copied, tools from Python
functions converted), with the same arguments in the same way, so the daemon receives
byte for byte what ``ollama.AsyncClient`` would send. tests/test_daemon_requests.py
holds that against the official client for a representative set of calls; a new
``ollama`` release that builds its bodies differently fails there first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollama._client import _copy_images, _copy_messages, _copy_tools
from ollama._types import ChatRequest, GenerateRequest

__all__ = ["chat_body", "generate_body"]


def chat_body(
    *,
    model: str,
    messages: Sequence[Any] | None,
    tools: Sequence[Any] | None,
    think: Any,
    format: Any,
    options: Any,
    keep_alive: Any,
    logprobs: bool | None,
    top_logprobs: int | None,
) -> dict[str, Any]:
    """What ``ollama.AsyncClient.chat(..., stream=True)`` posts to ``/api/chat``."""
    body: dict[str, Any] = ChatRequest(
        model=model,
        messages=list(_copy_messages(messages)),
        tools=list(_copy_tools(tools)),
        stream=True,
        think=think,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        format=format,
        options=options,
        keep_alive=keep_alive,
    ).model_dump(exclude_none=True)
    return body


def generate_body(
    *,
    model: str,
    prompt: str | None,
    suffix: str | None,
    system: str | None,
    template: str | None,
    context: Sequence[int] | None,
    think: Any,
    raw: bool | None,
    format: Any,
    images: Sequence[Any] | None,
    options: Any,
    keep_alive: Any,
    logprobs: bool | None,
    top_logprobs: int | None,
) -> dict[str, Any]:
    """What ``ollama.AsyncClient.generate(..., stream=True)`` posts to ``/api/generate``."""
    body: dict[str, Any] = GenerateRequest(
        model=model,
        prompt=prompt,
        suffix=suffix,
        system=system,
        template=template,
        context=context,
        stream=True,
        think=think,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        raw=raw,
        format=format,
        images=list(_copy_images(images)) if images else None,
        options=options,
        keep_alive=keep_alive,
    ).model_dump(exclude_none=True)
    return body
