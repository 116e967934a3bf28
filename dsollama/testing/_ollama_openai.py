"""The OpenAI-compatible subset of the Ollama double: chat completions and models.

The daemon implements ``/v1`` as middleware around its native handlers, and so does the
double: a request is translated to a native chat request (``temperature``/``top_p``
default to 1.0, ``max_tokens`` → ``num_predict``, ``response_format`` → ``format``,
``reasoning_effort`` → ``think``), run through the same scheduler, and the native chunks
are rewritten as OpenAI objects. Errors keep their status and take OpenAI's envelope.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

from ._faults import Fault
from ._ollama_infer import prepare_chat
from ._ollama_models import parse_name
from ._ollama_state import DaemonState
from ._ollama_stream import Line, collect, respond_stream, with_fault
from ._ollama_wire import ApiError, decode_request, go_json
from ._server import Request, Response, StreamResponse

__all__ = ["chat_completions", "list_models", "openai_error", "retrieve_model"]

_EFFORTS = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


def _encoded(payload: Any) -> bytes:
    # The /v1 writers use json.NewEncoder: a trailing newline after the object.
    return go_json(payload) + b"\n"


def openai_error(status: int, message: str) -> Response:
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Response(status=status, body=_encoded(body), content_type="application/json")


def _native_body(request: Request) -> tuple[dict[str, Any], bool]:
    """The native chat body for a ``/v1`` request, and whether usage goes in the stream."""
    try:
        body = decode_request(request.body, "ChatCompletionRequest")
    except ApiError as exc:
        # The middleware binds without the native handlers' EOF special case.
        raise ApiError(
            400, "EOF" if exc.message == "missing request body" else exc.message
        ) from None
    raw_messages = body.get("messages") or []
    if not raw_messages:
        raise ApiError(400, "[] is too short - 'messages'")
    messages: list[dict[str, Any]] = []
    for item in raw_messages:
        if not isinstance(item, Mapping):
            continue
        role = str(item.get("role") or "")
        base: dict[str, Any] = {"role": role}
        if role.lower() == "tool" and (item.get("name") or item.get("tool_call_id")):
            base["tool_name"] = str(item.get("name") or "")
        calls = []
        for call in item.get("tool_calls") or []:
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            calls.append(
                {
                    "id": call.get("id", ""),
                    "function": {"name": function.get("name", ""), "arguments": arguments},
                }
            )
        content = item.get("content")
        if isinstance(content, list):
            # Each text part becomes its own message, as the middleware does.
            for part in content:
                if isinstance(part, Mapping) and part.get("type") == "text":
                    messages.append({**base, "content": str(part.get("text") or "")})
        else:
            messages.append(
                {**base, "content": str(content or ""), **({"tool_calls": calls} if calls else {})}
            )
    options: dict[str, Any] = {
        "temperature": body["temperature"] if body.get("temperature") is not None else 1.0,
        "top_p": body["top_p"] if body.get("top_p") is not None else 1.0,
    }
    stop = body.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = [s for s in stop if isinstance(s, str)]
    for source, target in (
        ("max_tokens", "num_predict"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ):
        if body.get(source) is not None:
            options[target] = body[source]
    native: dict[str, Any] = {
        "model": body.get("model") or "",
        "messages": messages,
        "options": options,
        "stream": body.get("stream") is True,
        "tools": body.get("tools") or [],
    }
    response_format = body.get("response_format") or {}
    kind = (
        str(response_format.get("type") or "").strip().lower()
        if isinstance(response_format, Mapping)
        else ""
    )
    if kind == "json_object":
        native["format"] = "json"
    elif kind == "json_schema" and isinstance(response_format.get("json_schema"), Mapping):
        native["format"] = response_format["json_schema"].get("schema")
    reasoning = body.get("reasoning")
    effort = (
        reasoning.get("effort") if isinstance(reasoning, Mapping) else body.get("reasoning_effort")
    )
    if effort:
        if effort not in _EFFORTS:
            raise ApiError(
                400,
                f'invalid reasoning value: "{effort}" (must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")',
            )
        native["think"] = _EFFORTS[effort]
    stream_options = body.get("stream_options")
    include_usage = (
        isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
    )
    return native, include_usage


async def chat_completions(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    try:
        native, include_usage = _native_body(request)
        prepared = await prepare_chat(daemon, native)
    except ApiError as exc:
        return openai_error(exc.status, exc.message)
    if isinstance(prepared, Response):  # pragma: no cover - /v1 always has messages
        return prepared
    _call, stream, objects, assemble = prepared
    completion_id = f"chatcmpl-{random.randrange(999)}"
    if stream:
        events = _sse(objects, completion_id, include_usage)
        quirk = _error_chunk(completion_id)
        lines = with_fault(events, fault, daemon.faults, error_line=lambda _message: quirk)
        early = fault is not None and fault.kind == "slow_first_token"
        return await respond_stream(
            lines,
            content_type="text/event-stream",
            early_headers=early,
            on_error=lambda exc: openai_error(exc.status, exc.message),
        )
    try:
        items, complete = await collect(
            objects, fault, daemon.faults, lambda o: o.get("done") is True
        )
    except ApiError as exc:
        return openai_error(exc.status, exc.message)
    native_final = assemble(items, complete)
    return Response(
        body=_encoded(_completion(completion_id, native_final)), content_type="application/json"
    )


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for call in calls:
        function = call.get("function") or {}
        out.append(
            {
                "id": call.get("id", ""),
                "index": function.get("index", 0),
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": json.dumps(function.get("arguments") or {}, separators=(",", ":")),
                },
            }
        )
    return out


def _usage(chunk: Mapping[str, Any]) -> dict[str, int]:
    prompt, completion = int(chunk.get("prompt_eval_count", 0)), int(chunk.get("eval_count", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(completion_id: str, chunk: Mapping[str, Any]) -> dict[str, Any]:
    message = chunk["message"]
    calls = _tool_calls(list(message.get("tool_calls") or []))
    out_message: dict[str, Any] = {
        "role": message.get("role", "assistant"),
        "content": message.get("content", ""),
    }
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    if calls:
        out_message["tool_calls"] = calls
    reason = chunk.get("done_reason") or None
    if reason == "stop" and calls:
        reason = "tool_calls"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chunk.get("model", ""),
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "message": out_message, "finish_reason": reason}],
        "usage": _usage(chunk),
    }


def _chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": "fp_ollama",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(payload: Any) -> bytes:
    return b"data: " + go_json(payload) + b"\n\n"


def _error_chunk(completion_id: str) -> bytes:
    # An in-band {"error": ...} line reaches the /v1 writer as an empty ChatResponse: the
    # client gets a content-less chunk with no model and the stream ends without [DONE].
    return _event(_chunk(completion_id, int(time.time()), "", {"content": ""}))


async def _sse(
    objects: AsyncGenerator[dict[str, Any], None], completion_id: str, include_usage: bool
) -> AsyncGenerator[Line, None]:
    created = int(time.time())  # one `created` for every chunk of a stream, like OpenAI
    first_sent = tool_sent = False
    async with aclosing(objects):
        try:
            async for item in objects:
                message = item["message"]
                done = item.get("done") is True
                empty = not (
                    message.get("content") or message.get("thinking") or message.get("tool_calls")
                )
                model = str(item.get("model", ""))
                if not (done and first_sent and empty):
                    delta: dict[str, Any] = {} if first_sent else {"role": "assistant"}
                    delta["content"] = message.get("content", "")
                    if message.get("thinking"):
                        delta["reasoning"] = message["thinking"]
                    if message.get("tool_calls"):
                        delta["tool_calls"] = _tool_calls(list(message["tool_calls"]))
                        tool_sent = True
                    yield _event(_chunk(completion_id, created, model, delta)), False
                    first_sent = True
                if done:
                    reason = str(item.get("done_reason") or "stop")
                    if reason == "stop" and tool_sent:
                        reason = "tool_calls"
                    finish = _chunk(completion_id, created, model, {}, reason)
                    yield _event(finish), True
                    if include_usage:
                        yield _event({**finish, "choices": [], "usage": _usage(item)}), True
                    yield b"data: [DONE]\n\n", True
        except ApiError:
            if not first_sent:
                raise
            yield _error_chunk(completion_id), True


async def list_models(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    data = [
        {
            "id": model.name,
            "object": "model",
            "created": int(daemon.modified[key]),
            "owned_by": _owner(model.name),
        }
        for key, model in daemon.newest_first()
    ]
    # A nil Go slice: with no models the daemon answers "data": null.
    return Response(
        body=_encoded({"object": "list", "data": data or None}), content_type="application/json"
    )


async def retrieve_model(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    requested = request.path[len("/v1/models/") :]
    name = parse_name(requested)
    if name is None:
        return openai_error(400, "invalid model name")
    model = daemon.lookup(name)
    if model is None:
        return openai_error(404, f"model '{name.display}' not found")
    modified = daemon.modified[name.key]
    body = {
        "id": requested,
        "object": "model",
        "created": int(modified),
        "owned_by": _owner(model.name),
    }
    return Response(body=_encoded(body), content_type="application/json")


def _owner(name: str) -> str:
    parsed = parse_name(name)
    return parsed.namespace if parsed else "library"
