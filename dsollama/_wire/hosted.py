"""Ollama-shaped requests → OpenAI-format (DeepSeek) requests, and the answers back.

Request side (`hosted_request`): `build_chat_request`, `build_generate_request` and
`build_continuation_request` turn the arguments of ``ollama``'s ``chat``/``generate``
into a `HostedRequest` (path relative to the API root, JSON body, and the list of
things the hosted route cannot honour — never dropped silently).

Response side (`hosted_response`): `HostedStreamDecoder` turns the JSON objects of SSE
``data:`` events into `Delta`s; `decode_hosted_response` does the same for a whole JSON
body, which `parse_hosted_body` parses first; `answer_framing` says which of the two a
response is. Both handle chat (``chat.completion``) and FIM (``text_completion``)
shapes, and type-check every field they read (`hosted_shapes`).

Errors (`hosted_errors`): `classify_hosted_error` maps an HTTP status and DeepSeek's
error envelope to a dsollama error; `classify_stream_error` does the same for an
``error`` object that arrives inside a 200 stream.

This module only re-exports those names, so callers keep importing from
``dsollama._wire.hosted``.
"""

from __future__ import annotations

from .._exceptions import InsufficientResourceError
from .hosted_errors import classify_hosted_error, classify_stream_error, parse_retry_after
from .hosted_request import (
    BETA_CHAT_PATH,
    CHAT_PATH,
    FIM_MAX_TOKENS,
    FIM_PATH,
    HostedRequest,
    build_chat_request,
    build_continuation_request,
    build_generate_request,
)
from .hosted_response import (
    HostedStreamDecoder,
    answer_framing,
    decode_hosted_response,
    decode_tool_arguments,
    parse_hosted_body,
)

__all__ = [
    "BETA_CHAT_PATH",
    "CHAT_PATH",
    "FIM_MAX_TOKENS",
    "FIM_PATH",
    "HostedRequest",
    "HostedStreamDecoder",
    "InsufficientResourceError",
    "answer_framing",
    "build_chat_request",
    "build_continuation_request",
    "build_generate_request",
    "classify_hosted_error",
    "classify_stream_error",
    "decode_hosted_response",
    "decode_tool_arguments",
    "parse_hosted_body",
    "parse_retry_after",
]
