"""Requests to the OpenAI-format server doubles (vLLM, llama-server), checked and planned.

Pure (no I/O). `parse_chat` and `parse_completion` read a ``/v1/chat/completions`` or
``/v1/completions`` body into the request types the DeepSeek double already plans from
(`ChatRequest`, `FimRequest`), so all doubles draw the same canonical answers from
`_text`. `ServerError` carries a status and message; each double renders it in its own
server's error shape.

What is checked is what a client can trip over: the body's JSON, the fields' types,
``max_tokens`` and ``stop``. The texts of these validation errors are approximations
(vLLM prints pydantic's, llama-server nlohmann's): match on the status.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ._deepseek_answer import Piece, Plan, plan_chat, plan_fim, prompt_tokens
from ._deepseek_request import ChatRequest, FimRequest, text_of

__all__ = [
    "Part",
    "ServerError",
    "answer_parts",
    "count_prompt_tokens",
    "joined",
    "parse_chat",
    "parse_completion",
    "plan_answer",
]

_ROLES = ("system", "developer", "user", "assistant", "tool")
Prefill = Literal["flag", "last_assistant"]
"""How a chat request asks to continue its final assistant message: vLLM's
``continue_final_message`` flag, or (llama-server) a final assistant message by itself."""


@dataclass
class ServerError(Exception):
    """An error answer: a status and message, plus extra fields some servers add."""

    status: int
    message: str
    type: str | None = None
    "The server's own error type, when it is not the one its status implies."
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.message}")


def _load(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ServerError(400, f"Invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ServerError(400, "The request body must be a JSON object")
    return body


def _optional(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool:
        raise ServerError(400, f"'{key}' must be {what}")
    if not isinstance(value, kind):
        raise ServerError(400, f"'{key}' must be {what}")
    return value


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    # The newer name wins over the older one, as in the OpenAI API.
    for key in ("max_completion_tokens", "max_tokens", "n_predict"):
        value = _optional(body, key, int, "an integer")
        if value is None:
            continue
        if key == "n_predict" and value < 0:
            return None  # llama-server: -1 means "until the context is full"
        if value < 1:
            raise ServerError(400, f"max_tokens must be at least 1, got {value}.")
        return int(value)
    return None


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise ServerError(400, "'stop' must be a string or a list of strings")


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = _optional(body, "stream_options", dict, "an object")
    return stream and options is not None and options.get("include_usage") is True


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise ServerError(400, "'messages' is required")
    if not isinstance(messages, list) or not messages:
        raise ServerError(400, "'messages' must be a non-empty list of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ServerError(400, f"messages[{index}] must be an object")
        role = message.get("role")
        if role not in _ROLES:
            raise ServerError(
                400, f"messages[{index}].role must be one of {', '.join(_ROLES)}, got {role!r}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise ServerError(400, f"messages[{index}].content must be a string or a list")
    return messages


def parse_chat(raw: bytes, *, prefill: Prefill) -> tuple[ChatRequest, dict[str, Any]]:
    """A chat request, and its body for the checks only one server makes."""
    body = _load(raw)
    model = _optional(body, "model", str, "a string")
    messages = _messages(body)
    stream = bool(_optional(body, "stream", bool, "true or false"))
    include_usage = _include_usage(body, stream)
    max_tokens = _max_tokens(body)
    stop = _stop(body)
    last = messages[-1]
    prefix: str | None = None
    if prefill == "flag":
        if body.get("continue_final_message") is True and body.get("add_generation_prompt"):
            # vLLM's check, verbatim.
            raise ServerError(
                400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
            )
        if body.get("continue_final_message") is True:
            if last.get("role") != "assistant":
                raise ServerError(
                    400,
                    "continue_final_message is set but the final message is not from the assistant",
                )
            prefix = text_of(last.get("content"))
    elif last.get("role") == "assistant":
        prefix = text_of(last.get("content"))
    request = ChatRequest(
        model=model or "",
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        stop=stop,
        prefix=prefix,
    )
    return request, body


def parse_completion(raw: bytes) -> tuple[FimRequest, dict[str, Any]]:
    """A legacy completions request (``prompt``: a string, or a list of one)."""
    body = _load(raw)
    model = _optional(body, "model", str, "a string")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ServerError(400, "'prompt' must be a string (batched prompts are not served)")
    stream = bool(_optional(body, "stream", bool, "true or false"))
    request = FimRequest(
        model=model or "",
        prompt=prompt,
        stream=stream,
        include_usage=_include_usage(body, stream),
        max_tokens=_max_tokens(body),
        stop=_stop(body),
        echo=bool(_optional(body, "echo", bool, "true or false")),
    )
    return request, body


def count_prompt_tokens(request: ChatRequest | FimRequest) -> int:
    """The prompt's size in tokens, estimated the way every double estimates it."""
    if isinstance(request, ChatRequest):
        return prompt_tokens(request.messages)
    return plan_fim(request, answer_n=0).prompt_tokens


def plan_answer(
    request: ChatRequest | FimRequest, *, answer_n: int, thinking_n: int, max_tokens: int | None
) -> Plan:
    """The canonical answer, cut at ``max_tokens`` (what the server allows, not only what
    was asked). A chat model of the DeepSeek-R1 family thinks first (``thinking_n`` > 0)."""
    if isinstance(request, ChatRequest):
        chat = replace(request, thinking=thinking_n > 0, max_tokens=max_tokens)
        return plan_chat(chat, answer_n=answer_n, thinking_n=thinking_n)
    return plan_fim(replace(request, max_tokens=max_tokens), answer_n=answer_n)


# -- the answer as token-sized parts ------------------------------------------------------

PartKind = Literal["reasoning", "content"]


@dataclass(frozen=True)
class Part:
    kind: PartKind
    text: str
    token: bool = True
    "False for text that is not generated (tags a server adds, an echoed prompt)."


OPEN_THINK = "<think>\n"
CLOSE_THINK = "\n</think>\n\n"


def answer_parts(plan: Plan, *, inline: bool) -> list[Part]:
    """The answer's pieces as reasoning and content parts.

    ``inline``: no reasoning parser, so the chain of thought stays in the content between
    ``<think>`` tags, laid out as a DeepSeek-R1 model writes them (and as the Ollama
    double does). A thought cut by ``max_tokens`` has no closing tag.
    """
    pieces: list[Piece] = [p for p in plan.pieces if p.kind in ("reasoning", "content", "echo")]
    if not inline:
        return [
            Part("reasoning" if p.kind == "reasoning" else "content", p.text, p.kind != "echo")
            for p in pieces
        ]
    parts: list[Part] = []
    thinking = False
    for piece in pieces:
        if piece.kind == "reasoning" and not thinking:
            parts.append(Part("content", OPEN_THINK, token=False))
            thinking = True
        elif piece.kind != "reasoning" and thinking:
            parts.append(Part("content", CLOSE_THINK, token=False))
            thinking = False
        parts.append(Part("content", piece.text, piece.kind != "echo"))
    if thinking and plan.finish_reason == "stop":
        parts.append(Part("content", CLOSE_THINK, token=False))
    return parts


def joined(parts: list[Part], kind: PartKind) -> str:
    return "".join(p.text for p in parts if p.kind == kind)
