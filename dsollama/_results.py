"""Public results from routed deltas: `ChatResponse` / `GenerateResponse` chunks and answers."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

import ollama
import pydantic

from ._delta import Delta
from ._routing.shapes import CallSummary, RoutedDelta
from ._types import ChatResponse, GenerateResponse, ServedBy

__all__ = ["chat_response", "generate_response"]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _tool_calls(delta: Delta) -> list[ollama.Message.ToolCall] | None:
    if not delta.tool_calls:
        return None
    return [
        ollama.Message.ToolCall(
            function=ollama.Message.ToolCall.Function(name=c.name, arguments=c.arguments)
        )
        for c in delta.tool_calls
    ]


def _final_fields(delta: Delta, served: ServedBy, summary: CallSummary) -> dict[str, Any]:
    total_ns = delta.total_duration_ns
    eval_ns = delta.eval_duration_ns
    if served.kind == "hosted":
        # Hosted answers report no durations; fill them from our own clock so code that
        # computes tokens per second from them keeps working.
        total_ns = int(summary.total_s * 1e9)
        if summary.ttft_s is not None:
            eval_ns = int(max(summary.total_s - summary.ttft_s, 0.0) * 1e9)
    return {
        "done_reason": delta.done_reason,
        "total_duration": total_ns,
        "load_duration": delta.load_duration_ns,
        "prompt_eval_count": delta.prompt_tokens,
        "prompt_eval_duration": delta.prompt_eval_duration_ns,
        "eval_count": delta.completion_tokens,
        "eval_duration": eval_ns,
        "attempts": summary.attempts,
        "fallback_reason": summary.fallback_reason,
        "seams": summary.seams or None,
        "usage": summary.usage,
        "cost_usd": summary.cost_usd,
        "ignored": summary.ignored or None,
        "ttft_s": summary.ttft_s,
        "elapsed_s": summary.total_s,
    }


M = TypeVar("M", bound=pydantic.BaseModel)

_DEFAULTS: dict[type[pydantic.BaseModel], dict[str, Any]] = {}


_set = object.__setattr__


def _construct(cls: type[M], given: dict[str, Any]) -> M:
    """An instance of ``cls`` from trusted values, without validation.

    What `model_construct` does, minus resolving every field's default on each call —
    the bulk of the per-chunk cost when an answer streams. ``given`` holds only fields
    that have a value, and only those count as set, as the server omits empty ones (so
    ``'thinking' in msg`` answers as it does for the official client).
    tests/test_results.py checks the result is the same as a validated instance.
    """
    defaults = _DEFAULTS.get(cls)
    if defaults is None:
        defaults = _DEFAULTS[cls] = {
            name: field.get_default(call_default_factory=True)
            for name, field in cls.model_fields.items()
        }
    obj = cls.__new__(cls)
    _set(obj, "__dict__", {**defaults, **given})
    _set(obj, "__pydantic_fields_set__", set(given))
    _set(obj, "__pydantic_extra__", None)
    _set(obj, "__pydantic_private__", None)
    return obj


def _with_values(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def chat_response(routed: RoutedDelta) -> ChatResponse:
    """The public chunk (or whole answer) for one routed delta.

    Built without validation (`_construct`): every value was produced by dsollama's own
    code with the right types, and validating each streamed chunk again would cost more
    than the rest of the per-chunk work together. ``created_at`` is the server's when it
    sent one (an Ollama daemon does, as the official client shows), else now.
    """
    delta, served = routed.delta, routed.served_by
    text: dict[str, Any] = {"role": "assistant", "content": delta.content}
    if delta.thinking:
        text["thinking"] = delta.thinking
    if delta.tool_calls:
        text["tool_calls"] = _tool_calls(delta)
    fields: dict[str, Any] = {
        "model": served.model,
        "created_at": delta.created_at or _now(),
        "message": _construct(ollama.Message, text),
        "done": delta.done,
        "served_by": served,
    }
    if routed.restart:
        fields["restart"] = True
    if routed.summary is not None:
        fields.update(_with_values(_final_fields(delta, served, routed.summary)))
    return _construct(ChatResponse, fields)


def generate_response(routed: RoutedDelta) -> GenerateResponse:
    delta, served = routed.delta, routed.served_by
    fields: dict[str, Any] = {
        "model": served.model,
        "created_at": delta.created_at or _now(),
        "response": delta.content,
        "done": delta.done,
        "served_by": served,
    }
    if delta.thinking:
        fields["thinking"] = delta.thinking
    if routed.restart:
        fields["restart"] = True
    if routed.summary is not None:
        fields.update(_with_values(_final_fields(delta, served, routed.summary)))
        if delta.context is not None:
            fields["context"] = delta.context
    return _construct(GenerateResponse, fields)
