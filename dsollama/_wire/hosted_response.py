"""Hosted (OpenAI-format) answers → dsollama `Delta`s, streamed or not.

`HostedStreamDecoder` turns the JSON objects of SSE ``data:`` events into `Delta`s;
`decode_hosted_response` does the same for a whole JSON body, which
`parse_hosted_body` parses first; `answer_framing` tells the two apart from the
``Content-Type``; `decode_tool_arguments` reads a tool call's JSON arguments without
failing the answer. Both chat (``chat.completion``) and FIM (``text_completion``)
shapes are handled, fields are type-checked (`hosted_shapes`), and a short answer never
passes for a complete one. Facts cited as "ref §N" are from the project's DeepSeek API
reference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._delta import Delta, ToolCall
from .._exceptions import (
    IncompleteResponseError,
    InsufficientResourceError,
    ServerError,
    redact,
)
from .hosted_errors import _int, classify_stream_error, is_in_band_error
from .hosted_shapes import REASONING_FIELDS, ShapeError, check_chunk, is_whole_completion
from .reasoning import ThinkSplitter

__all__ = [
    "HostedStreamDecoder",
    "answer_framing",
    "decode_hosted_response",
    "decode_tool_arguments",
    "parse_hosted_body",
]

# -- response side ----------------------------------------------------------------------


def _text(value: Any) -> str:
    # In a delta, a field may be absent, null or "": all mean "no text" (ref §2.5).
    # Types are checked before (hosted_shapes), so a non-string here is null.
    return value if isinstance(value, str) else ""


def _reasoning(part: Mapping[str, Any]) -> str:
    # The first field that has text: servers in the middle of the reasoning_content →
    # reasoning rename send both with the same text, which must not be doubled.
    for name in REASONING_FIELDS:
        text = _text(part.get(name))
        if text:
            return text
    return ""


_MALFORMED_HINT = (
    "the server's answer does not follow the OpenAI chat-completions format; "
    "if this keeps happening, check hosted_base_url"
)


def answer_framing(content_type: str | None, *, route: str | None = None) -> Literal["sse", "json"]:
    """How a 200 answer to a streaming request is framed, from its ``Content-Type``.

    ``sse`` for an event stream (and for no content type at all: the SSE parser also
    takes bare JSON lines); ``json`` for one whole JSON body, which a server or proxy
    that ignored ``stream: true`` sends. Anything else (an HTML page from a proxy or a
    captive portal, plain text) is a `ServerError` naming the type.

    >>> answer_framing("text/event-stream; charset=utf-8"), answer_framing(None)
    ('sse', 'sse')
    >>> answer_framing("application/json"), answer_framing("application/problem+json")
    ('json', 'json')
    >>> answer_framing("text/html; charset=utf-8")
    Traceback (most recent call last):
    ...
    dsollama._exceptions.ServerError: the hosted server answered 200 with Content-Type 'text/html', neither an event stream nor JSON
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media == "text/event-stream":
        return "sse"
    if media == "application/json" or media.endswith("+json"):
        return "json"
    shown = media[:80]  # a header from a stranger: bounded before it is shown
    raise ServerError(
        f"the hosted server answered 200 with Content-Type {shown!r}, "
        "neither an event stream nor JSON",
        route=route,
        hint="a proxy or captive portal may be answering instead of the API; check hosted_base_url",
    )


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
    short answer never passes for a complete one (design decision 6). A chunk with a
    wrong type (`hosted_shapes`) is a malformed-answer `ServerError` and an error
    object is raised as classified — neither is ever skipped, since a skipped chunk may
    have carried text. Handles chat chunks (``delta``), FIM chunks (``text``) and whole
    messages (``message``); reasoning comes as ``reasoning_content`` or ``reasoning``.

    With a ``splitter`` (routes that may send reasoning inline, such as vLLM without a
    reasoning parser), a ``<think>`` block in the content becomes thinking too, until a
    reasoning field shows the server separates reasoning itself; text the splitter
    still holds comes out before the final delta.
    """

    def __init__(self, *, route: str | None = None, splitter: ThinkSplitter | None = None) -> None:
        self._route = route
        self._splitter = splitter
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
        """Decode one chunk; returns the deltas it completes (often one, maybe none).

        A chunk with a wrong type anywhere the decoder reads raises a malformed-answer
        `ServerError`; an error object raises what `classify_stream_error` gives it.
        """
        self.chunks += 1
        if is_in_band_error(chunk):
            raise classify_stream_error(chunk, route=self._route, partial_text=self.partial_content)
        if self._final_sent:
            return []  # anything after the final delta (a duplicate usage chunk) adds nothing
        try:
            check_chunk(chunk)
        except ShapeError as exc:
            raise self._malformed(str(exc)) from None
        if isinstance(chunk.get("model"), str):
            self._model = chunk["model"]
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._usage = usage
        out: list[Delta] = []
        finished_now = False
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) not in (0, None):
                continue  # dsollama asks for one choice; others are not this answer
            delta = choice.get("delta")
            message = choice.get("message")
            if isinstance(message, Mapping) and not isinstance(delta, Mapping):
                # A whole message: the body of a server that ignored stream=true, or a
                # completion object sent as one event. (With both, the delta is the news.)
                out.extend(self._whole_part(message, choice))
            else:
                out.extend(self._stream_part(delta or {}, choice))  # chat delta or FIM text
            reason = choice.get("finish_reason")
            if reason and self._finish_reason is None:
                self._finish_reason = reason
                finished_now = True
        if finished_now:
            if self._finish_reason == "insufficient_system_resource":
                raise self._resource_error()
            out.extend(self._flush())
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
            return [*self._flush(), self._final()]
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

    def _stream_part(self, delta: Mapping[str, Any], choice: Mapping[str, Any]) -> list[Delta]:
        for position, fragment in enumerate(delta.get("tool_calls") or ()):
            self._add_tool_fragment(fragment, position)
        return self._output(
            _text(delta.get("content")) + _text(choice.get("text")), _reasoning(delta)
        )

    def _whole_part(self, message: Mapping[str, Any], choice: Mapping[str, Any]) -> list[Delta]:
        calls = [
            self._whole_tool_call(call, i) for i, call in enumerate(message.get("tool_calls") or ())
        ]
        content = _text(message.get("content")) + _text(choice.get("text"))
        return self._output(content, _reasoning(message), calls)

    def _output(
        self, content: str, thinking: str, calls: list[ToolCall] | None = None
    ) -> list[Delta]:
        """The delta of what arrived (none when nothing did), noted as partial output."""
        if self._splitter is not None:
            if thinking:
                # The server separates reasoning: whatever the splitter held is settled
                # as it stood, and content is content from here on.
                held_thinking, held_content = self._splitter.passthrough()
                thinking, content = held_thinking + thinking, held_content + content
            else:
                thinking, content = self._splitter.feed(content)
        if not (content or thinking or calls):
            return []
        self._content.append(content)
        self._thinking.append(thinking)
        return [Delta(content=content, thinking=thinking, tool_calls=calls or [])]

    def _flush(self) -> list[Delta]:
        """What the splitter still holds, once the answer has ended."""
        if self._splitter is None:
            return []
        thinking, content = self._splitter.finish()
        if not (thinking or content):
            return []
        self._content.append(content)
        self._thinking.append(thinking)
        return [Delta(content=content, thinking=thinking)]

    def _whole_tool_call(self, call: Mapping[str, Any], position: int) -> ToolCall:
        function = call.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not name:
            raise self._malformed(f"message.tool_calls[{position}] has no function name")
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        return ToolCall(
            name=name,
            arguments=decode_tool_arguments(arguments)
            if isinstance(arguments, str)
            else dict(arguments or {}),
            id=call.get("id") or None,
        )

    def _add_tool_fragment(self, fragment: Mapping[str, Any], position: int) -> None:
        index = _int(fragment.get("index"))
        acc = self._tools.setdefault(position if index is None else index, _ToolAccumulator())
        if fragment.get("id") and acc.id is None:
            acc.id = fragment["id"]
        function = fragment.get("function")
        if isinstance(function, Mapping):
            # The name comes whole in the first fragment; later ones only add arguments.
            if function.get("name") and not acc.name:
                acc.name = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                acc.arguments.append(arguments)

    def _assembled_tool_calls(self) -> list[ToolCall]:
        for index, acc in sorted(self._tools.items()):
            if not acc.name:
                # Dropping it would hand back an answer missing a call it made.
                raise self._malformed(f"tool call {index} never got a function name")
        return [
            ToolCall(
                name=acc.name, arguments=decode_tool_arguments("".join(acc.arguments)), id=acc.id
            )
            for _, acc in sorted(self._tools.items())
        ]

    def _malformed(self, problem: str) -> ServerError:
        received = (
            f" after {len(self.partial_content)} characters of answer and "
            f"{len(self.partial_thinking)} of reasoning"
            if self._content
            else ""
        )
        return ServerError(
            f"malformed hosted answer (chunk {self.chunks}{received}): {problem}",
            route=self._route,
            hint=_MALFORMED_HINT,
        )

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


def parse_hosted_body(
    text: str | bytes, *, route: str | None = None, secrets: Sequence[str] = ()
) -> dict[str, Any]:
    """Parse a non-streaming hosted body, which may start with keep-alive blank lines.

    A body that is only whitespace (the server sent filler while queued, then closed,
    ref §4.2, §7.1) → `IncompleteResponseError`; a JSON object cut short →
    `IncompleteResponseError`; anything else that is not a JSON object → `ServerError`.
    Server text quoted in a message goes through `redact` (and ``secrets`` out).
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
            f"the hosted response is not JSON: {redact(stripped[:120], secrets)!r}", route=route
        ) from exc
    if not isinstance(data, dict):
        raise ServerError(
            f"the hosted response is JSON but not an object: {redact(stripped[:120], secrets)!r}",
            route=route,
        )
    return data


def decode_hosted_response(
    body: Mapping[str, Any], *, route: str | None = None, splitter: ThinkSplitter | None = None
) -> list[Delta]:
    """The `Delta`s of a whole hosted answer (chat or FIM), as one JSON object.

    What a non-streaming request gets, and what a streaming one gets from a server or
    proxy that ignored ``stream: true``. Returns the text/tool-call delta (when there is
    output) followed by the final ``Delta(done=True)`` with the counters — the same
    sequence a stream produces, through the same decoder and the same type rules.
    An error object is classified; an object that is not a completion (no choices, or a
    first choice with neither ``message`` nor ``text``) is a malformed-answer
    `ServerError`, never an empty success; ``insufficient_system_resource`` raises
    `InsufficientResourceError`, a missing ``finish_reason`` `IncompleteResponseError`.
    """
    if is_in_band_error(body):
        raise classify_stream_error(body, route=route)
    if not is_whole_completion(body):
        choices = body.get("choices")
        problem = (
            "it has no choices" if not choices else "choice 0 has neither a message nor a text"
        )
        raise ServerError(
            f"malformed hosted answer: the body is not a chat or text completion ({problem})",
            route=route,
            hint=_MALFORMED_HINT,
        )
    decoder = HostedStreamDecoder(route=route, splitter=splitter)
    return decoder.feed(body) + decoder.finish()
