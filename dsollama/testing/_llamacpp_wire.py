"""llama-server's shapes: answers, errors, ``/props``, ``/slots``, ``/v1/models``, ``/metrics``.

Pure (no I/O). llama-server builds its JSON with nlohmann::json, whose objects keep their
keys sorted, so every body here is written with sorted keys. Errors are
``{"error": {"code", "message", "type"}}`` with llama.cpp's error types; answers carry
``timings`` (prompt and generation speed) next to ``usage``.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

from ._deepseek_answer import Plan
from ._openai_request import Part, ServerError, answer_parts, joined
from ._openai_stream import Wire
from ._prometheus import Exposition, cpp_number
from ._server import Response
from .openai_server import Stats

__all__ = [
    "EXCEED_CONTEXT",
    "LOADING",
    "LlamaRenderer",
    "SlotState",
    "Timings",
    "error_response",
    "metrics_text",
    "models_body",
    "props_body",
    "slots_body",
    "wire",
]

JSON_TYPE = "application/json; charset=utf-8"
EXCEED_CONTEXT = "the request exceeds the available context size, try increasing it"
LOADING = "Loading model"
# Not-served endpoints answer 501 with these (verbatim from llama-server).
METRICS_OFF = "This server does not support metrics endpoint. Start it with `--metrics`"
SLOTS_OFF = "This server does not support slots endpoint. Start it with `--slots`"
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}
# What a response's `model` says when the request named none (llama-server's default).
DEFAULT_OAICOMPAT_MODEL = "gpt-3.5-turbo"


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(status=status, body=dumps(payload), content_type=JSON_TYPE)


# -- errors -------------------------------------------------------------------------------


def error_payload(error: ServerError) -> dict[str, Any]:
    kind = error.type or _TYPES.get(error.status, "server_error")
    return {"error": {"code": error.status, "message": error.message, "type": kind, **error.extra}}


def error_response(error: ServerError) -> Response:
    return json_response(error_payload(error), error.status)


def _error_event(message: str | None) -> bytes:
    # Assumption (unverified): an error after a stream started travels as a data event with
    # the error object, then the stream ends without [DONE]; openai-python raises APIError.
    payload = error_payload(ServerError(500, message or "Internal Server Error"))
    return b"data: " + dumps(payload) + b"\n\n"


def wire() -> Wire:
    return Wire(
        json_type=JSON_TYPE,
        sse_type="text/event-stream",
        error_body=lambda message: dumps(
            error_payload(ServerError(500, message or "Internal Server Error"))
        ),
        error_event=_error_event,
        headers=lambda: {"Server": "llama.cpp"},
    )


# -- answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timings:
    """The ``timings`` object of an answer, from the double's pacing settings."""

    prompt_n: int
    prompt_ms: float
    predicted_n: int
    predicted_ms: float

    def to_json(self) -> dict[str, Any]:
        def per_second(n: int, ms: float) -> float:
            return n / (ms / 1e3) if ms > 0 else 0.0

        def per_token(n: int, ms: float) -> float:
            return ms / n if n > 0 else 0.0

        return {
            "cache_n": 0,
            "prompt_n": self.prompt_n,
            "prompt_ms": self.prompt_ms,
            "prompt_per_token_ms": per_token(self.prompt_n, self.prompt_ms),
            "prompt_per_second": per_second(self.prompt_n, self.prompt_ms),
            "predicted_n": self.predicted_n,
            "predicted_ms": self.predicted_ms,
            "predicted_per_token_ms": per_token(self.predicted_n, self.predicted_ms),
            "predicted_per_second": per_second(self.predicted_n, self.predicted_ms),
        }


_ID_ALPHABET = string.ascii_letters + string.digits


def _usage(plan: Plan, prompt: int) -> dict[str, int]:
    return {
        "completion_tokens": plan.completion_tokens,
        "prompt_tokens": prompt,
        "total_tokens": prompt + plan.completion_tokens,
    }


class LlamaRenderer:
    """One answer in llama-server's shapes; ``inline``: ``--reasoning-format none``."""

    def __init__(
        self,
        model: str,
        plan: Plan,
        prompt: int,
        *,
        inline: bool,
        chat: bool,
        fingerprint: str,
        timings: Timings,
    ) -> None:
        self.model = model
        self.plan = plan
        self.prompt = prompt
        self.chat = chat
        self.fingerprint = fingerprint
        self.timings = timings
        self.id = "chatcmpl-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(32))
        self.created = int(time.time())
        self.parts: list[Part] = answer_parts(plan, inline=inline)

    def _envelope(self, obj: str) -> dict[str, Any]:
        return {
            "created": self.created,
            "id": self.id,
            "model": self.model,
            "object": obj,
            "system_fingerprint": self.fingerprint,
        }

    def body(self) -> bytes:
        if self.chat:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": joined(self.parts, "content"),
            }
            reasoning = joined(self.parts, "reasoning")
            if reasoning:
                message["reasoning_content"] = reasoning
            choice: dict[str, Any] = {
                "finish_reason": self.plan.finish_reason,
                "index": 0,
                "message": message,
            }
            obj = "chat.completion"
        else:
            choice = {
                "finish_reason": self.plan.finish_reason,
                "index": 0,
                "logprobs": None,
                "text": joined(self.parts, "content"),
            }
            obj = "text_completion"
        payload = {
            **self._envelope(obj),
            "choices": [choice],
            "timings": self.timings.to_json(),
            "usage": _usage(self.plan, self.prompt),
        }
        return dumps(payload)

    def events(self, include_usage: bool) -> list[tuple[bool, bytes]]:
        """SSE events without ``[DONE]``, each with "is a token" (for pacing)."""
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        chunks: list[tuple[bool, dict[str, Any]]] = []

        def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"delta": delta, "finish_reason": finish, "index": 0}
            return {**self._envelope(obj), "choices": [choice]}

        def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
            choice = {"finish_reason": finish, "index": 0, "logprobs": None, "text": text}
            return {**self._envelope(obj), "choices": [choice]}

        if self.chat:
            chunks.append((False, chat_chunk({"role": "assistant", "content": None})))
            for part in self.parts:
                field = "reasoning_content" if part.kind == "reasoning" else "content"
                chunks.append((part.token, chat_chunk({field: part.text})))
            chunks.append((False, chat_chunk({}, self.plan.finish_reason)))
        else:
            chunks += [(part.token, text_chunk(part.text)) for part in self.parts]
            chunks.append((False, text_chunk("", self.plan.finish_reason)))
        if include_usage:
            usage = {**self._envelope(obj), "choices": [], "usage": _usage(self.plan, self.prompt)}
            chunks.append((False, usage))
        # The timings ride on the last chunk.
        chunks[-1][1]["timings"] = self.timings.to_json()
        return [(token, b"data: " + dumps(chunk) + b"\n\n") for token, chunk in chunks]


# -- monitoring ---------------------------------------------------------------------------


@dataclass
class SlotState:
    """What ``/slots`` shows of one slot. Its KV cache keeps the last task's tokens after
    the task ends (llama-server reuses them as a prompt cache)."""

    id: int
    id_task: int = -1
    is_processing: bool = False
    n_past: int = 0
    n_decoded: int = 0


def _params(reasoning_format: str) -> dict[str, Any]:
    return {
        "n_predict": -1,
        "seed": 4294967295,
        "temperature": 0.8,
        "top_k": 40,
        "top_p": 0.95,
        "min_p": 0.05,
        "n_probs": 0,
        "stream": True,
        "reasoning_format": reasoning_format,
        "samplers": ["penalties", "dry", "top_k", "typ_p", "top_p", "min_p", "temperature"],
    }


def _slot_json(slot: SlotState, n_ctx: int, reasoning_format: str) -> dict[str, Any]:
    return {
        "id": slot.id,
        "id_task": slot.id_task,
        "n_ctx": n_ctx,
        "speculative": False,
        "is_processing": slot.is_processing,
        "params": _params(reasoning_format),
        "prompt": "",
        "next_token": {
            "has_next_token": slot.is_processing,
            "has_new_line": False,
            "n_remain": -1,
            "n_decoded": slot.n_decoded,
            "stopping_word": "",
        },
    }


def slots_body(slots: list[SlotState], n_ctx: int, reasoning_format: str) -> list[dict[str, Any]]:
    return [_slot_json(slot, n_ctx, reasoning_format) for slot in slots]


def props_body(
    *,
    total_slots: int,
    n_ctx: int,
    model_alias: str,
    model_path: str,
    build_info: str,
    reasoning_format: str,
) -> dict[str, Any]:
    return {
        "default_generation_settings": _slot_json(SlotState(0), n_ctx, reasoning_format),
        "total_slots": total_slots,
        "model_alias": model_alias,
        "model_path": model_path,
        "modalities": {"audio": False, "vision": False},
        "chat_template_caps": {
            "supports_parallel_tool_calls": False,
            "supports_string_content": True,
            "supports_system_role": True,
            "supports_tool_calls": True,
            "supports_tool_responses": True,
            "supports_tools": True,
            "supports_typed_content": False,
        },
        "bos_token": "<｜begin▁of▁sentence｜>",
        "eos_token": "<｜end▁of▁sentence｜>",
        "build_info": build_info,
        "webui": True,
    }


def models_body(model_alias: str, n_ctx_train: int, created: int) -> dict[str, Any]:
    return {
        # The Ollama-style list newer builds add next to the OpenAI one.
        "models": [
            {
                "name": model_alias,
                "model": model_alias,
                "modified_at": "",
                "size": "",
                "digest": "",
                "type": "model",
                "description": "",
                "tags": [""],
                "capabilities": ["completion"],
                "parameters": "",
                "details": {
                    "parent_model": "",
                    "format": "gguf",
                    "family": "",
                    "families": [""],
                    "parameter_size": "",
                    "quantization_level": "",
                },
            }
        ],
        "object": "list",
        "data": [
            {
                "id": model_alias,
                "object": "model",
                "created": created,
                "owned_by": "llamacpp",
                "meta": {"n_ctx_train": n_ctx_train, "n_vocab": 152064, "vocab_type": 2},
            }
        ],
    }


@dataclass(frozen=True)
class Counts:
    """The running totals ``/metrics`` reads, to tell what changed since the last read."""

    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    generation_tokens: int = 0
    generation_seconds: float = 0.0

    @classmethod
    def of(cls, stats: Stats) -> Counts:
        return cls(
            stats.prompt_tokens,
            stats.prompt_seconds,
            stats.generation_tokens,
            stats.generation_seconds,
        )


def metrics_text(
    now: Counts,
    since_last_read: Counts,
    *,
    processing: int,
    deferred: int,
    kv_cache_tokens: int,
    kv_cache_size: int,
) -> str:
    """``/metrics`` (started with ``--metrics``): no labels, C++ number formatting.

    The throughput gauges average over the requests since the previous read of
    ``/metrics``, as llama-server's do (each read resets that bucket).
    """

    def per_second(tokens: int, seconds: float) -> float:
        return tokens / seconds if seconds > 0 else 0.0

    text = Exposition(number=cpp_number)
    text.counter(
        "llamacpp:prompt_tokens_total",
        "Number of prompt tokens processed.",
        [({}, now.prompt_tokens)],
    )
    text.counter("llamacpp:prompt_seconds_total", "Prompt process time", [({}, now.prompt_seconds)])
    text.counter(
        "llamacpp:tokens_predicted_total",
        "Number of generation tokens processed.",
        [({}, now.generation_tokens)],
    )
    text.counter(
        "llamacpp:tokens_predicted_seconds_total",
        "Predict process time",
        [({}, now.generation_seconds)],
    )
    text.gauge(
        "llamacpp:prompt_tokens_seconds",
        "Average prompt throughput in tokens/s.",
        [({}, per_second(since_last_read.prompt_tokens, since_last_read.prompt_seconds))],
    )
    text.gauge(
        "llamacpp:predicted_tokens_seconds",
        "Average generation throughput in tokens/s.",
        [({}, per_second(since_last_read.generation_tokens, since_last_read.generation_seconds))],
    )
    text.gauge(
        "llamacpp:kv_cache_usage_ratio",
        "KV-cache usage. 1 means 100 percent usage.",
        [({}, min(kv_cache_tokens / kv_cache_size, 1.0) if kv_cache_size else 0.0)],
    )
    text.gauge("llamacpp:kv_cache_tokens", "KV-cache tokens.", [({}, kv_cache_tokens)])
    text.gauge("llamacpp:requests_processing", "Number of requests processing.", [({}, processing)])
    text.gauge("llamacpp:requests_deferred", "Number of requests deferred.", [({}, deferred)])
    return text.render()
