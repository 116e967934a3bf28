"""Hosted (OpenAI-format) answers → dsollama `Delta`s, streamed or not.

`HostedStreamDecoder` turns the JSON objects of SSE ``data:`` events into `Delta`s;
`decode_hosted_response` does the same for a non-streaming body, which
`parse_hosted_body` parses first; `decode_tool_arguments` reads a tool call's JSON
arguments without failing the answer. Both chat (``chat.completion``) and FIM
(``text_completion``) shapes are handled, and a short answer never passes for a
complete one. Facts cited as "ref §N" are from the project's DeepSeek API reference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._delta import Delta, ToolCall
from .._exceptions import (
    IncompleteResponseError,
    InsufficientResourceError,
    ServerError,
    redact,
)
from .hosted_errors import _int, classify_stream_error

__all__ = [
    "HostedStreamDecoder",
    "decode_hosted_response",
    "decode_tool_arguments",
    "parse_hosted_body",
]

# -- response side ----------------------------------------------------------------------


def _text(value: Any) -> str:
    # In a delta, a field may be absent, null or "": all mean "no text" (ref §2.5).
    return value if isinstance(value, str) else ""


def _with_usage(delta: Delta, usage: Mapping[str, Any] | None) -> Delta:
    """Copy a usage object's counts onto the final delta."""
    if not usage:
        return delta
    completion_details = usage.get("completion_tokens_details")
    prompt_details = usage.get("prompt_tokens_details")
    delta.prompt_tokens = _int(usage.get("prompt_tokens"))
    delta.completion_tokens = _int(usage.get("completion_tokens"))
    if isinstance(completion_details, Mapping):
        delta.reasoning_tokens = _int(completion_details.get("reasoning_tokens"))
    # prompt_cache_hit_tokens is DeepSeek's own field; prompt_tokens_details.cached_tokens
    # mirrors it when present (ref §2.3) and is what other OpenAI-format servers send.
    cached = _int(usage.get("prompt_cache_hit_tokens"))
    if cached is None and isinstance(prompt_details, Mapping):
        cached = _int(prompt_details.get("cached_tokens"))
    delta.cached_tokens = cached
    return delta


def decode_tool_arguments(text: str) -> dict[str, Any]:
    """A tool call's JSON-string arguments as a dict.

    DeepSeek does not guarantee valid JSON here (ref §2.3). Rather than fail a whole
    answer, arguments that are not a JSON object are kept verbatim as
    ``{"_raw": text}``; sending such a call back in a later turn restores the exact
    string. Empty arguments mean "no arguments".

    >>> decode_tool_arguments('{"city": "Paris"}')
    {'city': 'Paris'}
    >>> decode_tool_arguments('')
    {}
    >>> decode_tool_arguments('{"city": "Par')
    {'_raw': '{"city": "Par'}
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


@dataclass(slots=True)
class _ToolAccumulator:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class HostedStreamDecoder:
    """Turns the JSON objects of a hosted SSE stream into `Delta`s.

    Feed every ``Data`` payload to `feed`; call `finish` when the stream ends
    (``[DONE]`` or EOF). Text deltas come out as they arrive; tool calls come out
    assembled (fragments keyed by ``index``, arguments concatenated and decoded by
    `decode_tool_arguments`) when the ``finish_reason`` arrives; the final
    ``Delta(done=True)`` carries ``done_reason`` and the token counts.

    Usage is taken from whichever chunk carries a non-null ``usage`` — the finish
    chunk (as observed on the wire) or a later ``choices: []`` chunk (as documented),
    never latching a null (ref §2.5). So the final delta is emitted as soon as both a
    finish_reason and a usage are known, or at `finish` without usage.

    Raises `InsufficientResourceError` on ``insufficient_system_resource`` and
    `IncompleteResponseError` from `finish` when no ``finish_reason`` ever came: a
    short answer never passes for a complete one (design decision 6). Handles both chat
    chunks (``delta``) and FIM chunks (``text``).
    """

    def __init__(self, *, route: str | None = None) -> None:
        self._route = route
        self._content: list[str] = []
        self._thinking: list[str] = []
        self._tools: dict[int, _ToolAccumulator] = {}
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None
        self._model: str | None = None
        self._final_sent = False
        self.chunks = 0
        "Data payloads fed so far."

    @property
    def partial_content(self) -> str:
        return "".join(self._content)

    @property
    def partial_thinking(self) -> str:
        return "".join(self._thinking)

    @property
    def finish_reason(self) -> str | None:
        return self._finish_reason

    @property
    def done(self) -> bool:
        """True once the final delta was emitted."""
        return self._final_sent

    def feed(self, chunk: Mapping[str, Any]) -> list[Delta]:
        """Decode one chunk; returns the deltas it completes (often one, maybe none)."""
        self.chunks += 1
        if chunk.get("error"):
            raise classify_stream_error(chunk, route=self._route, partial_text=self.partial_content)
        if self._final_sent:
            return []  # anything after the final delta (a duplicate usage chunk) adds nothing
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        out: list[Delta] = []
        finished_now = False
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            delta = delta if isinstance(delta, Mapping) else {}
            thinking = _text(delta.get("reasoning_content"))
            content = _text(delta.get("content")) + _text(choice.get("text"))
            for position, fragment in enumerate(delta.get("tool_calls") or ()):
                self._add_tool_fragment(fragment, position)
            if thinking or content:
                self._thinking.append(thinking)
                self._content.append(content)
                out.append(Delta(content=content, thinking=thinking))
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason and self._finish_reason is None:
                self._finish_reason = reason
                finished_now = True
        if finished_now:
            if self._finish_reason == "insufficient_system_resource":
                raise self._resource_error()
            calls = self._assembled_tool_calls()
            if calls:
                out.append(Delta(tool_calls=calls))
        if self._finish_reason is not None and self._usage is not None:
            out.append(self._final())
        return out

    def finish(self, *, keepalives: int = 0) -> list[Delta]:
        """The stream ended: the final delta if not yet sent, or an error.

        ``keepalives`` (from the SSE parser) lets the error say the request was only
        ever queued.
        """
        if self._final_sent:
            return []
        if self._finish_reason is not None:
            return [self._final()]
        if self.chunks == 0:
            detail = (
                f"after {keepalives} keep-alive comment(s) and no data (the request was still queued)"
                if keepalives
                else "before any data"
            )
        else:
            detail = (
                f"without a finish_reason ({len(self.partial_content)} characters of answer and "
                f"{len(self.partial_thinking)} of reasoning received)"
            )
        raise IncompleteResponseError(
            f"the hosted stream ended {detail}",
            route=self._route,
            partial_text=self.partial_content,
        )

    # -- internals ---------------------------------------------------------------------

    def _add_tool_fragment(self, fragment: Any, position: int) -> None:
        if not isinstance(fragment, Mapping):
            return
        index = _int(fragment.get("index"))
        acc = self._tools.setdefault(position if index is None else index, _ToolAccumulator())
        if fragment.get("id") and acc.id is None:
            acc.id = str(fragment["id"])
        function = fragment.get("function")
        if isinstance(function, Mapping):
            # The name comes whole in the first fragment; later ones only add arguments.
            if function.get("name") and not acc.name:
                acc.name = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                acc.arguments.append(arguments)

    def _assembled_tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                name=acc.name, arguments=decode_tool_arguments("".join(acc.arguments)), id=acc.id
            )
            for _, acc in sorted(self._tools.items())
            if acc.name
        ]

    def _final(self) -> Delta:
        self._final_sent = True
        assert self._finish_reason is not None
        final = Delta(done=True, done_reason=self._finish_reason, model=self._model)
        return _with_usage(final, self._usage)

    def _resource_error(self) -> InsufficientResourceError:
        return InsufficientResourceError(
            "the hosted server ran out of resources mid-answer (finish_reason insufficient_system_resource)",
            route=self._route,
            partial_text=self.partial_content,
            partial_thinking=self.partial_thinking,
        )


def parse_hosted_body(text: str | bytes, *, route: str | None = None) -> dict[str, Any]:
    """Parse a non-streaming hosted body, which may start with keep-alive blank lines.

    A body that is only whitespace (the server sent filler while queued, then closed,
    ref §4.2, §7.1) → `IncompleteResponseError`; a JSON object cut short →
    `IncompleteResponseError`; anything else that is not a JSON object → `ServerError`.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.strip()
    if not stripped:
        raise IncompleteResponseError(
            f"the hosted response held only keep-alive filler ({len(text)} whitespace characters) "
            "and no answer: the request was queued and the server gave up",
            route=route,
        )
    try:
        data = json.loads(stripped)
    except ValueError as exc:
        if stripped.startswith("{") and not stripped.endswith("}"):
            raise IncompleteResponseError(
                f"the hosted response body was cut off after {len(stripped)} characters",
                route=route,
            ) from exc
        raise ServerError(
            f"the hosted response is not JSON: {redact(stripped[:120])!r}", route=route
        ) from exc
    if not isinstance(data, dict):
        raise ServerError(
            f"the hosted response is JSON but not an object: {redact(stripped[:120])!r}",
            route=route,
        )
    return data


def decode_hosted_response(body: Mapping[str, Any], *, route: str | None = None) -> list[Delta]:
    """The `Delta`s of a non-streaming hosted answer (chat or FIM).

    Returns the text/tool-call delta (when there is output) followed by the final
    ``Delta(done=True)`` with the counters — the same sequence a stream produces.
    Same rules as the stream: ``insufficient_system_resource`` raises
    `InsufficientResourceError`, a missing ``finish_reason`` raises
    `IncompleteResponseError`, an ``error`` object is classified.
    """
    if body.get("error"):
        raise classify_stream_error(body, route=route)
    choices = body.get("choices")
    choice = next(
        (c for c in choices or () if isinstance(c, Mapping) and c.get("index", 0) == 0), None
    )
    if choice is None:
        raise ServerError("the hosted response has no choices", route=route)
    message = choice.get("message")
    message = message if isinstance(message, Mapping) else {}
    content = _text(message.get("content")) + _text(choice.get("text"))
    thinking = _text(message.get("reasoning_content"))
    calls: list[ToolCall] = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping) and function.get("name"):
            arguments = function.get("arguments")
            calls.append(
                ToolCall(
                    name=str(function["name"]),
                    arguments=decode_tool_arguments(arguments)
                    if isinstance(arguments, str)
                    else dict(arguments or {}),
                    id=str(call["id"]) if call.get("id") else None,
                )
            )
    reason = choice.get("finish_reason")
    if reason == "insufficient_system_resource":
        raise InsufficientResourceError(
            "the hosted server ran out of resources mid-answer (finish_reason insufficient_system_resource)",
            route=route,
            partial_text=content,
            partial_thinking=thinking,
        )
    if not isinstance(reason, str) or not reason:
        raise IncompleteResponseError(
            "the hosted response has no finish_reason", route=route, partial_text=content
        )
    out: list[Delta] = []
    if content or thinking or calls:
        out.append(Delta(content=content, thinking=thinking, tool_calls=calls))
    usage = body.get("usage")
    model = body.get("model")
    # done_reason passes through: stop, length, tool_calls, content_filter.
    final = Delta(done=True, done_reason=reason, model=model if isinstance(model, str) else None)
    out.append(_with_usage(final, usage if isinstance(usage, Mapping) else None))
    return out
