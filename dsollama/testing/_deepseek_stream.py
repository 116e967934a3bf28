"""The DeepSeek double's response bodies: the shared OpenAI-format bodies with DeepSeek's bytes.

`json_response` and `sse_response` are those of `_openai_stream` (pacing, keep-alive filler,
faults in flight; see `deepseek.py` for what each fault looks like here) with what is
DeepSeek's own: a trace id on every answer, ``no-cache`` on streams, and its error
envelope for in-band errors.

Section numbers (§n) refer to the project's DeepSeek reference.
"""

from __future__ import annotations

import secrets

from ._deepseek_request import ApiError, error_event
from ._faults import Fault
from ._openai_stream import Hold, Pacing, Slot, Wire, html_response, wrong_typed
from ._openai_stream import json_response as _json_response
from ._openai_stream import sse_response as _sse_response
from ._server import Response, StreamResponse

__all__ = [
    "Hold",
    "Pacing",
    "Slot",
    "html_response",
    "json_response",
    "sse_response",
    "trace_headers",
    "wrong_typed",
]


def trace_headers() -> dict[str, str]:
    # Real answers carry a per-request trace id (seen in captured headers).
    return {"x-ds-trace-id": secrets.token_hex(16)}


def _error_body(message: str | None) -> bytes:
    # Undocumented for non-streaming; the in-band envelope with a 200.
    return ApiError(500).response().body


WIRE = Wire(
    json_type="application/json",
    sse_type="text/event-stream; charset=utf-8",
    error_body=_error_body,
    # Undocumented upstream (§2.5); the stream ends after it, without [DONE].
    error_event=error_event,
    headers=trace_headers,
    sse_headers={"Cache-Control": "no-cache"},
)


async def json_response(
    body: bytes, tokens: int, fault: Fault | None, hold: Hold | None, pacing: Pacing
) -> Response | StreamResponse:
    """A non-streaming answer (§7.1: ``blank_line`` is the whitespace-only body of 2025)."""
    return await _json_response(body, tokens, fault, hold, pacing, WIRE)


def sse_response(
    events: list[tuple[bool, bytes]], fault: Fault | None, hold: Hold | None, pacing: Pacing
) -> StreamResponse:
    """A stream of rendered events, then [DONE] (§2.5; filler while queued, §4.1)."""
    return _sse_response(events, fault, hold, pacing, WIRE)
