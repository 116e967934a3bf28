"""vLLM's shapes: answers, errors, ``/v1/models`` and ``/metrics``. Pure (no I/O).

Shapes follow vLLM's OpenAI-compatible server (its pydantic protocol classes): stream
chunks carry only the fields that are set (``exclude_unset``), a whole answer carries
them all, ids are ``chatcmpl-``/``cmpl-`` plus 32 hex digits, and ``usage`` lists
``prompt_tokens``, ``total_tokens``, ``completion_tokens`` in that order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from ._deepseek_answer import Plan
from ._openai_request import Part, ServerError, answer_parts, joined
from ._openai_sched import SlotPool
from ._openai_stream import Wire
from ._prometheus import Exposition, python_number
from ._server import Response
from .openai_server import Stats

__all__ = [
    "E2E_BUCKETS",
    "TTFT_BUCKETS",
    "VLLMRenderer",
    "error_payload",
    "error_response",
    "metrics_text",
    "models_body",
    "wire",
]

# vLLM's histogram buckets (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
E2E_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# -- errors -------------------------------------------------------------------------------


def _error_type(status: int) -> str:
    # vLLM names the type after the status: BadRequestError (400) and NotFoundError (404)
    # are documented; the others follow the same rule and are an assumption.
    if status == 500:
        return "InternalServerError"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "Error"
    return phrase.replace(" ", "").replace("-", "") + "Error"


def error_payload(error: ServerError, *, wrapped: bool) -> dict[str, Any]:
    """vLLM's ErrorResponse: ``{"object": "error", "message", "type", "param", "code"}``.

    ``wrapped``: the ``{"error": {"message", "type", "param", "code"}}`` of newer versions
    (the reference leaves unverified which versions do it, so it is an option).
    """
    kind = error.type or _error_type(error.status)
    if wrapped:
        return {
            "error": {"message": error.message, "type": kind, "param": None, "code": error.status}
        }
    return {
        "object": "error",
        "message": error.message,
        "type": kind,
        "param": None,
        "code": error.status,
    }


def _error_event(message: str | None, *, wrapped: bool) -> bytes:
    # vLLM catches an engine error mid-stream and sends it as a data event with its default
    # BadRequestError / 400, then [DONE] (`Wire.done_after_error`).
    payload = error_payload(ServerError(400, message or "Internal Server Error"), wrapped=wrapped)
    inner = payload["error"] if wrapped else payload
    return b"data: " + _dumps({"error": inner}) + b"\n\n"


def wire(*, wrapped: bool) -> Wire:
    return Wire(
        json_type="application/json",
        sse_type="text/event-stream; charset=utf-8",
        error_body=lambda message: _dumps(
            error_payload(ServerError(500, message or "Internal Server Error"), wrapped=wrapped)
        ),
        error_event=lambda message: _error_event(message, wrapped=wrapped),
        done_after_error=True,
    )


def error_response(error: ServerError, *, wrapped: bool) -> Response:
    return Response.json(error_payload(error, wrapped=wrapped), status=error.status)


# -- answers ------------------------------------------------------------------------------


def _usage(plan: Plan, prompt: int, *, details: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + plan.completion_tokens,
        "completion_tokens": plan.completion_tokens,
    }
    if details:
        usage["prompt_tokens_details"] = None
    return usage


class VLLMRenderer:
    """One answer in vLLM's shapes; ``reasoning_field`` is None without a reasoning parser
    (the thought stays inline in ``<think>`` tags)."""

    def __init__(
        self, model: str, plan: Plan, prompt: int, *, reasoning_field: str | None, chat: bool
    ) -> None:
        self.model = model
        self.plan = plan
        self.prompt = prompt
        self.reasoning_field = reasoning_field
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.parts: list[Part] = answer_parts(plan, inline=reasoning_field is None)

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    # -- whole answers --------------------------------------------------------------------

    def body(self) -> bytes:
        return _dumps(self._chat_body() if self.chat else self._completion_body())

    def _chat_body(self) -> dict[str, Any]:
        content = joined(self.parts, "content")
        reasoning = joined(self.parts, "reasoning")
        message: dict[str, Any] = {
            "role": "assistant",
            # A thought cut by max_tokens leaves no answer: content is null, not "".
            "content": content if content or not reasoning else None,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
            "tool_calls": [],
            self.reasoning_field or "reasoning_content": reasoning or None,
        }
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.plan.finish_reason,
                    "stop_reason": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": _usage(self.plan, self.prompt, details=True),
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }

    def _completion_body(self) -> dict[str, Any]:
        return {
            **self._envelope("text_completion"),
            "choices": [
                {
                    "index": 0,
                    "text": joined(self.parts, "content"),
                    "logprobs": None,
                    "finish_reason": self.plan.finish_reason,
                    "stop_reason": None,
                    "prompt_logprobs": None,
                }
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": _usage(self.plan, self.prompt, details=True),
            "kv_transfer_params": None,
        }

    # -- streams --------------------------------------------------------------------------

    def events(self, include_usage: bool) -> list[tuple[bool, bytes]]:
        """SSE events without ``[DONE]``, each with "is a token" (for pacing)."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"

        def event(choice: dict[str, Any]) -> bytes:
            return b"data: " + _dumps({**self._envelope(obj), "choices": [choice]}) + b"\n\n"

        def chat_choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            if finish is not None:
                choice["stop_reason"] = None
            return choice

        def text_choice(text: str, finish: str | None = None) -> dict[str, Any]:
            return {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }

        events: list[tuple[bool, bytes]] = []
        if self.chat:
            events.append((False, event(chat_choice({"role": "assistant", "content": ""}))))
            for part in self.parts:
                field = self.reasoning_field if part.kind == "reasoning" else "content"
                events.append((part.token, event(chat_choice({field or "content": part.text}))))
            events.append((False, event(chat_choice({"content": ""}, self.plan.finish_reason))))
        else:
            events += [(part.token, event(text_choice(part.text))) for part in self.parts]
            events.append((False, event(text_choice("", self.plan.finish_reason))))
        if include_usage:
            usage = {
                **self._envelope(obj),
                "choices": [],
                "usage": _usage(self.plan, self.prompt, details=False),
            }
            events.append((False, b"data: " + _dumps(usage) + b"\n\n"))
        return events


# -- models and metrics -------------------------------------------------------------------


def models_body(names: tuple[str, ...], max_model_len: int, created: int) -> dict[str, Any]:
    root = names[0]
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                # What a router needs to know before it sends a long prompt here.
                "max_model_len": max_model_len,
                "permission": [
                    {
                        "id": f"modelperm-{uuid.uuid4().hex}",
                        "object": "model_permission",
                        "created": created,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
            for name in names
        ],
    }


def metrics_text(
    model_name: str,
    pool: SlotPool,
    kv_cache_tokens: int,
    stats: Stats,
) -> str:
    """``/metrics`` of the V1 engine: per-model gauges, counters and histograms.

    Labels are ``model_name`` (the first served name) and ``engine`` (one engine, "0");
    a client should select on ``model_name`` and tolerate other labels.
    """
    labels: Mapping[str, str] = {"engine": "0", "model_name": model_name}
    text = Exposition(number=python_number)
    text.gauge(
        "vllm:num_requests_running",
        "Number of requests in model execution batches.",
        [(labels, pool.running)],
    )
    text.gauge(
        "vllm:num_requests_waiting",
        "Number of requests waiting to be processed.",
        [(labels, pool.waiting)],
    )
    text.gauge(
        "vllm:kv_cache_usage_perc",
        "KV-cache usage. 1 means 100 percent usage.",
        [(labels, min(pool.tokens_held / kv_cache_tokens, 1.0))],
    )
    text.counter(
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        [(labels, stats.prompt_tokens)],
    )
    text.counter(
        "vllm:generation_tokens_total",
        "Number of generation tokens processed.",
        [(labels, stats.generation_tokens)],
    )
    text.counter(
        "vllm:request_success_total",
        "Count of successfully processed requests.",
        [
            ({**labels, "finished_reason": reason}, stats.finished.get(reason, 0))
            for reason in ("stop", "length", "abort")
        ],
    )
    text.histogram(
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        [(labels, stats.ttft)],
    )
    text.histogram(
        "vllm:e2e_request_latency_seconds",
        "Histogram of e2e request latency in seconds.",
        [(labels, stats.e2e)],
    )
    return text.render()
