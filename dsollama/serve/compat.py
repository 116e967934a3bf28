"""``POST /generate``: the classic "small Flask app in front of DeepSeek" route, with fallback.

Many scripts (and tutorials) call a local service as
``POST /generate {"input_text": "..."}`` and read ``{"response": "..."}``. This route keeps
that contract — the extra fields (``model``, ``thinking``, ``served_by``, ``attempts``,
``fallback_reason``) are ignored by code that reads only ``response`` — so such a script
only changes its URL to gain the router. Optional fields: ``model`` (default: the
server's ``--model``), ``system``, ``think``. Errors are ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .errors import ApiError
from .info import HEADER_VERSION, call_extras, dsollama_version
from .state import state_of
from .streaming import Answer
from .validate import dumps

__all__ = ["CompatEncoder", "generate"]


class CompatEncoder:
    """``{"response": ...}`` plus dsollama's fields; never streamed."""

    stream_media_type = "application/json"

    def whole(self, response: Any) -> bytes:
        body: dict[str, Any] = {"response": response.response or "", "model": response.model}
        if response.thinking:
            body["thinking"] = response.thinking
        body.update(call_extras(response))
        return dumps(body)

    def part(self, part: Any) -> bytes:  # pragma: no cover - never streamed
        raise NotImplementedError

    last = part

    def failure(self, error: ApiError) -> bytes:  # pragma: no cover - never streamed
        return json.dumps({"error": error.message}).encode()


async def generate(request: Request) -> Response:
    state = state_of(request)
    body = await state.body(request)
    text = body.raw("input_text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(
            400,
            'missing input_text: send {"input_text": "your question"} (optionally "model", "system", "think")',
            param="input_text",
        )
    model = body.text("model") or state.default_model
    think = body.raw("think")
    if think is not None and not isinstance(think, bool):
        raise ApiError(400, "invalid field 'think': expected true or false", param="think")
    kwargs: dict[str, Any] = {
        "model": model,
        "prompt": text,
        "system": body.text("system"),
        "think": think,
        **state.controls(request, model),
    }
    client = state.ai
    return Answer(
        lambda: client.generate(stream=False, **kwargs),
        stream=False,
        encoder=CompatEncoder(),
        dialect="ollama",
        metrics=state.metrics,
        headers={HEADER_VERSION: dsollama_version()},
    )
