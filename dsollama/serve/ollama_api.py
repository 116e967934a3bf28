"""Ollama's native API, answered through the router: drop-in for an Ollama host.

``/api/chat``, ``/api/generate`` and ``/api/embed`` take the daemon's request bodies and
answer with its shapes (NDJSON when streaming, ``stream`` defaulting to true as on the
daemon), so `ollama.Client(host=...)`, Open WebUI and anything else pointed at an Ollama
host work unchanged. The final chunk (or the whole answer) adds dsollama's fields —
``served_by``, ``attempts``, ``fallback_reason``, ``usage``, ``cost_usd`` — which the
official client ignores. ``/api/tags`` lists every route's models (`models`); ``/api/show``
answers itself for those no daemon holds; the rest passes through to the daemon
(`passthrough`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from . import models
from .chunk_bytes import ChatPartWriter, GeneratePartWriter
from .errors import ApiError, from_exception
from .info import HEADER_LOCAL_ERROR, HEADER_VERSION, dsollama_version, header_value
from .passthrough import Proxied
from .state import ServeState, state_of
from .streaming import Answer
from .validate import Body, decode_image, describe, dumps

__all__ = [
    "NdjsonEncoder",
    "chat",
    "embed",
    "generate",
    "ps",
    "root",
    "show",
    "tags",
    "version_route",
]

_THINK_LEVELS = ("low", "medium", "high", "max")
# The daemon's version when it cannot be asked: the oldest whose API (think levels,
# structured create) this server speaks in full.
ASSUMED_DAEMON_VERSION = "0.12.4"
_EXTRAS = frozenset(
    {"served_by", "attempts", "fallback_reason", "seams", "usage", "cost_usd", "ignored"}
)

PartJson = Callable[[Any], "bytes | None"]


class NdjsonEncoder:
    """Ollama's wire format: one JSON object per line; dsollama's fields on the last.

    ``fast``: writes a plain text part directly (`chunk_bytes`), None for the others
    (a writer per answer: it learns the part's class once).
    """

    stream_media_type = "application/x-ndjson"

    def __init__(self, fast: PartJson | None = None) -> None:
        self._fast = fast

    def whole(self, response: Any) -> bytes:
        return _with_extras(response)

    def part(self, part: Any) -> bytes:
        # served_by is on every part in the library; on the wire the headers carry it.
        data = self._fast(part) if self._fast is not None else None
        if data is None:
            data = part.model_dump_json(exclude_none=True, exclude=_EXTRAS).encode()
        return data + b"\n"

    def last(self, part: Any) -> bytes:
        return _with_extras(part) + b"\n"

    def failure(self, error: ApiError) -> bytes:
        # The daemon's own mid-stream error: one {"error": ...} line and no done:true.
        return dumps(error.body("ollama")) + b"\n"


def _with_extras(response: Any) -> bytes:
    """The response's JSON with dsollama's fields after the daemon's (readers see those first)."""
    base: str = response.model_dump_json(exclude_none=True, exclude=_EXTRAS)
    extras: str = response.model_dump_json(exclude_none=True, include=_EXTRAS)
    if extras == "{}":
        return base.encode()
    return (base[:-1] + "," + extras[1:]).encode()


# -- request fields ---------------------------------------------------------------------


def _think(body: Body) -> bool | str | None:
    value = body.raw("think")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _THINK_LEVELS:
        return value
    raise ApiError(
        400,
        f"invalid think value: {describe(value)} (use true, false, "
        + ", ".join(f'"{v}"' for v in _THINK_LEVELS)
        + ")",
        param="think",
    )


def _format(body: Body) -> str | dict[str, Any] | None:
    value = body.raw("format")
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value  # type: ignore[no-any-return]
    raise ApiError(
        400,
        f'invalid format: {describe(value)}; expected "json" or a valid JSON Schema object',
        param="format",
    )


def _keep_alive(body: Body) -> float | str | None:
    value = body.raw("keep_alive")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise ApiError(
        400,
        f'invalid keep_alive: {describe(value)}; use seconds (300) or a duration ("5m")',
        param="keep_alive",
    )


def _messages(body: Body) -> list[dict[str, Any]]:
    raw = body.array("messages") or []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(
                400, f"invalid field '{where}': expected an object, got {describe(message)}"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ApiError(
                400,
                f"invalid field '{where}.role': expected a role such as \"user\", got {describe(role)}",
            )
        for name in ("content", "thinking", "tool_name", "tool_call_id"):
            value = message.get(name)
            if value is not None and not isinstance(value, str):
                raise ApiError(
                    400, f"invalid field '{where}.{name}': expected a string, got {describe(value)}"
                )
        images = message.get("images")
        if images is not None:
            if not isinstance(images, list):
                raise ApiError(
                    400, f"invalid field '{where}.images': expected a list of base64 strings"
                )
            message = {**message, "images": _images(images, f"{where}.images", "messages")}
        calls = message.get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list) and all(isinstance(c, dict) for c in calls)
        ):
            raise ApiError(400, f"invalid field '{where}.tool_calls': expected a list of objects")
        out.append({k: v for k, v in message.items() if v is not None})
    return out


def _images(values: list[Any], where: str, param: str) -> list[bytes]:
    return [decode_image(v, f"{where}[{i}]", param=param) for i, v in enumerate(values)]


def _tools(body: Body) -> list[dict[str, Any]] | None:
    tools = body.array("tools")
    if tools is None:
        return None
    if not all(isinstance(t, dict) for t in tools):
        raise ApiError(400, "invalid field 'tools': expected a list of objects", param="tools")
    return tools or None


def _stream(body: Body) -> bool:
    stream = body.flag("stream")
    return True if stream is None else stream  # the daemon streams unless told not to


def _common(body: Body) -> dict[str, Any]:
    return {
        "think": _think(body),
        "format": _format(body),
        "options": body.mapping("options"),
        "keep_alive": _keep_alive(body),
        "logprobs": body.flag("logprobs"),
        "top_logprobs": body.integer("top_logprobs", 0, 20),
    }


def _answer(
    state: ServeState,
    stream: bool,
    call: Callable[[], Awaitable[Any]],
    fast: PartJson | None = None,
) -> Answer:
    return Answer(
        call,
        stream=stream,
        encoder=NdjsonEncoder(fast),
        dialect="ollama",
        metrics=state.metrics,
        headers={HEADER_VERSION: dsollama_version()},
    )


# -- inference --------------------------------------------------------------------------


async def chat(request: Request) -> Response:
    state = state_of(request)
    body = await state.body(request)
    model = body.text("model") or ""
    if not model:
        raise ApiError(400, "model is required: name the model to chat with", param="model")
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": _messages(body),
        "tools": _tools(body),
        **_common(body),
        **state.controls(request, model),
    }
    client = state.ai
    if _stream(body):
        return _answer(
            state, True, lambda: client.chat(stream=True, **kwargs), ChatPartWriter(_EXTRAS)
        )
    return _answer(state, False, lambda: client.chat(stream=False, **kwargs))


async def generate(request: Request) -> Response:
    state = state_of(request)
    body = await state.body(request)
    model = body.text("model") or ""
    if not model:
        # The daemon answers an empty generate model with 404, not 400 (reference §4.2).
        raise ApiError(404, "model '' not found: name the model to generate with", param="model")
    context = body.array("context")
    if context is not None and not all(
        isinstance(t, int) and not isinstance(t, bool) for t in context
    ):
        raise ApiError(400, "invalid field 'context': expected a list of integers")
    kwargs: dict[str, Any] = {
        "model": model,
        "prompt": body.text("prompt"),
        "suffix": body.text("suffix"),
        "system": body.text("system"),
        "template": body.text("template"),
        "context": context,
        "raw": body.flag("raw"),
        "images": _images(body.array("images") or [], "images", "images") or None,
        **_common(body),
        **state.controls(request, model),
    }
    client = state.ai
    if _stream(body):
        return _answer(
            state, True, lambda: client.generate(stream=True, **kwargs), GeneratePartWriter(_EXTRAS)
        )
    return _answer(state, False, lambda: client.generate(stream=False, **kwargs))


async def embed(request: Request) -> Response:
    state = state_of(request)
    body = await state.body(request)
    model = body.text("model") or ""
    if not model:
        raise ApiError(400, "model is required: name the embedding model", param="model")
    value = body.raw("input")
    if value is None:
        value = ""
    if not (
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    ):
        raise ApiError(400, "invalid input type: send a string or a list of strings", param="input")
    kwargs: dict[str, Any] = {
        "model": model,
        "input": value,
        "truncate": body.flag("truncate"),
        "options": body.mapping("options"),
        "keep_alive": _keep_alive(body),
        "dimensions": body.integer("dimensions", 1),
    }
    client = state.ai
    return _answer(state, False, lambda: client.embed(**kwargs))


# -- models -----------------------------------------------------------------------------


async def tags(request: Request) -> Response:
    """Every usable route's models (`models`), each marked with the routes that list it."""
    state = state_of(request)
    offered, error = await models.offers(state)
    if error is not None and not offered:
        raise error  # nothing to list, and why
    headers = {HEADER_VERSION: dsollama_version()}
    if error is not None:
        headers[HEADER_LOCAL_ERROR] = header_value(error.message, 300)
    return JSONResponse({"models": models.tags(state, offered)}, headers=headers)


async def show(request: Request) -> Response:
    state = state_of(request)
    raw = await state.body(request)
    name = raw.text("model") or raw.text("name") or ""
    route = await models.remote_route(state, name)
    if route is not None:
        # The daemon does not know a model only another route serves: answer for it here.
        answer = models.remote_show(state, name, route)
        return JSONResponse(answer, headers={HEADER_VERSION: dsollama_version()})
    return _relay_json(request, state, raw)


def _relay_json(request: Request, state: ServeState, body: Body) -> Response:
    return Proxied(
        state,
        request.method,
        request.url.path,
        headers={"content-type": "application/json"},
        content=dumps(body.data),
    )


async def ps(request: Request) -> Response:
    """Loaded models on the daemon; an empty list when it is down but hosted can answer."""
    state = state_of(request)
    try:
        daemon = state.daemon()
        response = await daemon.http.get("/api/ps")
    except httpx.HTTPError as exc:
        if any(r.api != "ollama" for r in models.offered_routes(state)):
            return JSONResponse({"models": []}, headers={HEADER_VERSION: dsollama_version()})
        raise from_exception(state.daemon().error(exc)) from exc
    return Response(
        response.content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type", "application/json"),
    )


async def version_route(request: Request) -> Response:
    """The daemon's version (clients gate features on it), or the assumed one when it is down."""
    state = state_of(request)
    reported = ASSUMED_DAEMON_VERSION
    try:
        response = await state.daemon().http.get("/api/version")
        value = response.json().get("version") if response.status_code == 200 else None
        if isinstance(value, str) and value:
            reported = value
    except (httpx.HTTPError, ValueError):
        pass  # a daemon that is down or odd must not make the probe itself fail
    return JSONResponse({"version": reported}, headers={HEADER_VERSION: dsollama_version()})


async def root(request: Request) -> Response:
    # Clients probe for this exact text to recognise an Ollama host.
    return PlainTextResponse("Ollama is running", headers={HEADER_VERSION: dsollama_version()})
