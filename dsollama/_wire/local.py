"""Ollama side: NDJSON chunks → `Delta`s, and ollama/httpx exceptions → dsollama errors.

Routed chat and generate answers are read here line by line (`NdjsonLines`,
`parse_local_line`, `local_chunk_to_delta`), checking only the fields dsollama reads
(`ShapeError` for one of the wrong type); the requests are built by the official
client's own models (`local_request`).

The ``ollama`` client raises a mixed bag (reference: Ollama API §6.3): `ResponseError`
with the HTTP status (``-1`` for an error line inside a 200 stream), the builtin
`ConnectionError` for a dead daemon on non-streaming calls but a raw
`httpx.ConnectError` on streaming ones, raw httpx timeouts and protocol errors,
`json.JSONDecodeError` for a blank or broken NDJSON line, and pydantic's
`ValidationError` for a chunk missing required fields. `classify_local_error` turns
each into one dsollama error; the backend raises it ``from`` the original.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

import httpx
import ollama
import pydantic

from .._delta import Delta, ToolCall
from .._exceptions import (
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    ContextOverflowError,
    DaemonUnreachableError,
    IncompleteResponseError,
    ModelNotFoundError,
    ServerError,
    redact,
)
from .hosted_shapes import ShapeError
from .reasoning import ThinkSplitter

__all__ = [
    "LOCAL_ERRORS",
    "ContextOverflowError",
    "NdjsonLines",
    "ShapeError",
    "classify_local_error",
    "local_chunk_to_delta",
    "parse_local_line",
    "to_ollama_messages",
]

LOCAL_ERRORS: tuple[type[BaseException], ...] = (
    ollama.ResponseError,
    ConnectionError,
    httpx.HTTPError,
    json.JSONDecodeError,
    pydantic.ValidationError,
    ShapeError,
)
"What a call to the daemon can raise (through ``ollama`` or read here); classify these."


# -- chunks -----------------------------------------------------------------------------


class NdjsonLines:
    """NDJSON framing of a byte stream: whole lines out, the unfinished one held.

    Lines end at ``\\n`` only (a JSON text cannot hold a raw newline, and a ``\\r`` before
    it is whitespace to the JSON parser), so splitting never needs the text decoded.

    >>> lines = NdjsonLines()
    >>> lines.feed(b'{"a": 1}\\n{"b"'), lines.feed(b': 2}\\n'), lines.finish()
    ([b'{"a": 1}'], [b'{"b": 2}'], None)
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._held:
            data = self._held + data
        *lines, self._held = data.split(b"\n")
        return lines

    def finish(self) -> bytes | None:
        """The last line when the stream did not end with a newline (None: it did)."""
        held, self._held = self._held, b""
        return held or None


_raw_decode = json.JSONDecoder().raw_decode


def parse_local_line(line: bytes) -> dict[str, Any]:
    """One NDJSON line of the daemon's answer, as the official client reads it.

    Raises `json.JSONDecodeError` for a blank or broken line, `ollama.ResponseError`
    (status -1) for an error line, `ShapeError` for JSON that is not an object.
    Undecodable bytes become U+FFFD, as httpx's text decoding (which the official client
    reads through) makes them.
    """
    text = line.decode("utf-8", "replace")
    try:
        # `json.loads` without its two whitespace scans: a daemon's line has none
        # before the object, and what follows it is checked below.
        part, end = _raw_decode(text)
    except json.JSONDecodeError:
        part, end = json.loads(text), len(text)  # leading whitespace, or the real error
    if end != len(text) and not text[end:].isspace():
        raise json.JSONDecodeError("Extra data", text, end)
    if type(part) is not dict:
        raise ShapeError("the line", "a JSON object", part)
    error = part.get("error")
    if error:
        raise ollama.ResponseError(error)
    return part


def _text(holder: Mapping[str, Any], key: str, path: str) -> str:
    value = holder.get(key)
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise ShapeError(f"{path}{key}", "a string or null", value)


def _count(part: Mapping[str, Any], key: str) -> int | None:
    value = part.get(key)
    if value is None or type(value) is int:
        return value
    # Integral floats (17.0) pass, as pydantic's int would take them.
    if type(value) is float and value.is_integer():
        return int(value)
    raise ShapeError(key, "an integer or null", value)


def _tool_calls(raw: Any) -> list[ToolCall]:
    if not isinstance(raw, list):
        raise ShapeError("message.tool_calls", "a list or null", raw)
    calls: list[ToolCall] = []
    for i, call in enumerate(raw):
        path = f"message.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise ShapeError(f"{path}.function", "an object", function)
        name = function.get("name")
        if not isinstance(name, str):
            raise ShapeError(f"{path}.function.name", "a string", name)
        arguments = function.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise ShapeError(f"{path}.function.arguments", "an object or null", arguments)
        call_id = call.get("id")
        calls.append(
            ToolCall(
                name=name,
                arguments=dict(arguments or {}),
                id=call_id if isinstance(call_id, str) else None,
            )
        )
    return calls


def local_chunk_to_delta(
    part: Mapping[str, Any],
    splitter: ThinkSplitter | None = None,
    *,
    operation: Literal["chat", "generate"] = "chat",
) -> Delta:
    """One decoded chunk of ``/api/chat`` or ``/api/generate`` (`parse_local_line`) as a `Delta`.

    Checks the type of every field it reads (`ShapeError` names the first that is wrong),
    as the official client's pydantic models would; fields it does not read are not
    looked at. Reasoning comes from Ollama's ``thinking`` field (servers ≥ 0.9.0); pass a
    `ThinkSplitter` to also split inline ``<think>`` out of the text for older servers.
    A splitter with ``thinking_model=True`` takes an answer that starts without a tag
    for reasoning, so create it that way only when reasoning really comes inline: not
    with ``think=False`` (the answer then has no tag at all) and not on a server that
    separates reasoning itself (≥ 0.12.4, or ``think`` sent to ≥ 0.9.0), where a
    thinking model whose reasoning is empty sends its answer with no ``thinking``
    field. ``thinking_model=False`` is always safe: explicit ``<think>`` is split.
    As soon as a chunk carries the ``thinking`` field the server is separating reasoning
    itself, and the splitter is switched to pass-through so the answer that follows is
    never mistaken for reasoning. On the final chunk (``done``) the splitter is flushed
    and the counters, durations, ``context`` and ``done_reason`` are copied.
    """
    calls: list[ToolCall] = []
    context: list[int] | None = None
    if operation == "chat":
        message = part.get("message")
        if type(message) is not dict:
            raise ShapeError("message", "an object", message)
        content = message.get("content")
        if type(content) is not str:
            content = _text(message, "content", "message.")
        thinking = message.get("thinking")
        if type(thinking) is not str:
            thinking = _text(message, "thinking", "message.")
        raw_calls = message.get("tool_calls")
        if raw_calls is not None:
            calls = _tool_calls(raw_calls)
    else:
        content = part.get("response")
        if type(content) is not str:
            content = _text(part, "response", "")
        thinking = part.get("thinking")
        if type(thinking) is not str:
            thinking = _text(part, "thinking", "")
        raw_context = part.get("context")
        if raw_context is not None:
            if not isinstance(raw_context, list) or not all(
                type(token) is int for token in raw_context
            ):
                raise ShapeError("context", "a list of integers or null", raw_context)
            context = raw_context
    done = part.get("done")
    if done is not None and type(done) is not bool:
        raise ShapeError("done", "a boolean or null", done)

    if splitter is not None:
        held_thinking = held_content = ""
        if thinking:
            held_thinking, held_content = splitter.passthrough()
        split_thinking, split_content = splitter.feed(content)
        thinking = held_thinking + thinking + split_thinking
        content = held_content + split_content
        if done:
            rest_thinking, rest_content = splitter.finish()
            thinking += rest_thinking
            content += rest_content

    created_at = part.get("created_at")
    delta = Delta(
        content=content,
        thinking=thinking,
        tool_calls=calls,
        created_at=created_at if type(created_at) is str else None,
    )
    if done:
        model = part.get("model")
        done_reason = part.get("done_reason")
        if model is not None and type(model) is not str:
            raise ShapeError("model", "a string or null", model)
        if done_reason is not None and type(done_reason) is not str:
            raise ShapeError("done_reason", "a string or null", done_reason)
        delta.done = True
        delta.done_reason = done_reason
        delta.model = model
        delta.prompt_tokens = _count(part, "prompt_eval_count")
        delta.completion_tokens = _count(part, "eval_count")
        delta.total_duration_ns = _count(part, "total_duration")
        delta.load_duration_ns = _count(part, "load_duration")
        delta.prompt_eval_duration_ns = _count(part, "prompt_eval_duration")
        delta.eval_duration_ns = _count(part, "eval_duration")
        delta.context = context
    return delta


def _plain(value: Any) -> Any:
    """Pydantic models (ollama's Message, ToolCall…) as plain data, None fields dropped."""
    if isinstance(value, ollama.Image):
        return value  # the ollama client encodes images itself (paths, bytes, base64)
    if isinstance(value, pydantic.BaseModel):
        return {k: _plain(v) for k, v in value if v is not None}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_ollama_messages(
    messages: Sequence[Union[Mapping[str, Any], pydantic.BaseModel]] | None,
) -> list[dict[str, Any]]:
    """Messages (dicts or ``ollama.Message``) as plain dicts for ``ollama.chat``.

    Roles are lower-cased (as the server does), None fields dropped, nested tool calls
    made plain. Images are left as given (paths, bytes or base64; the ollama client
    encodes them). Tool-call arguments kept as ``{"_raw": …}`` by the hosted codec (not
    valid JSON) are passed as they are; Ollama accepts any object there.
    """
    out: list[dict[str, Any]] = []
    for message in messages or ():
        plain = _plain(message)
        if not isinstance(plain, dict):
            raise BadRequestError(
                f"a message is a {type(message).__name__}; expected a dict or ollama.Message"
            )
        if isinstance(plain.get("role"), str):
            plain["role"] = plain["role"].lower()
        out.append(plain)
    return out


# -- errors ------------------------------------------------------------------------------

_MODEL_IN_MESSAGE = re.compile(r"""model ['"]([^'"]+)['"]""")


def _for_model(model: str | None) -> str:
    # repr() escapes whatever control characters a caller's model name holds.
    return f" for model {model[:200]!r}" if model else ""


def _response_error(
    exc: ollama.ResponseError, *, host: str, model: str | None, route: str | None
) -> BackendError:
    status = exc.status_code
    text = redact(str(exc.error))
    lowered = text.lower()
    if status == 404 and "model" in lowered and "not found" in lowered:
        found = _MODEL_IN_MESSAGE.search(text)
        name = model or (found.group(1) if found else "")
        return ModelNotFoundError(
            name,
            route=route,
            message=f"model {name!r} not found: it is not on the daemon at {host}",
        )
    if status == 503:
        return BusyError(
            f"the Ollama daemon at {host} is busy: {text}", route=route, status_code=503
        )
    if status == -1:
        # An error line inside a 200 stream, after chunks went out (Ollama API §4.1).
        return ServerError(f"the Ollama daemon at {host} failed mid-answer: {text}", route=route)
    if status == 400:
        if "longer than the context length" in lowered or "exceeds the context length" in lowered:
            return ContextOverflowError(
                f"the prompt does not fit the context window of {model or 'the local model'}: {text}",
                route=route,
                model=model,
            )
        hint = None
        if "does not support thinking" in lowered:
            hint = "call without think=, or re-pull the model (older deepseek-r1 pulls lack thinking support)"
        elif "does not support tools" in lowered:
            hint = "use a model whose template supports tools, or call without tools="
        elif "does not support insert" in lowered:
            hint = "suffix= (fill-in-the-middle) needs a model with the insert capability, e.g. deepseek-coder-v2"
        if hint is None and "invalid model name" in lowered:
            hint = "model names look like name[:tag], e.g. deepseek-r1:8b (`dsollama list` shows yours)"
        return BadRequestError(
            f"the Ollama daemon rejected the request{_for_model(model)}: {text}",
            route=route,
            status_code=400,
            hint=hint,
        )
    if status == 404:
        return ServerError(
            f"{host} answered 404 ({text})",
            route=route,
            status_code=404,
            hint="check that OLLAMA_HOST points at an Ollama daemon",
        )
    if 400 <= status < 500 and status != 499:
        return BadRequestError(
            f"the Ollama daemon rejected the request{_for_model(model)}: {text}",
            route=route,
            status_code=status,
        )
    return ServerError(
        f"the Ollama daemon at {host} failed: {text}", route=route, status_code=status
    )


def classify_local_error(
    exc: BaseException,
    *,
    host: str,
    model: str | None = None,
    route: str | None = None,
    read_phase: str = "gap",
    partial_text: str = "",
) -> BackendError:
    """The dsollama error for an exception raised by a call through ``ollama``.

    ``read_phase`` names the deadline a read timeout broke (``first_token`` before
    any chunk, ``gap`` after); connect and pool timeouts are always ``connect``.
    ``partial_text`` is what arrived before a broken stream. Exceptions outside
    `LOCAL_ERRORS` become a `ServerError` naming their class. The original is kept as
    ``__cause__``.
    """
    error: BackendError
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        error = _response_error(exc, host=host, model=model, route=route)
    elif isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        error = IncompleteResponseError(
            f"the connection to {host} broke: {exc}", route=route, partial_text=partial_text
        )
    elif isinstance(exc, (ConnectionError, httpx.ConnectError)):
        # ollama raises the builtin ConnectionError (non-streaming) or a raw
        # httpx.ConnectError (streaming) when nothing listens (Ollama API §6.3).
        error = DaemonUnreachableError(host, route=route)
    elif isinstance(exc, httpx.ConnectTimeout):
        # Nothing accepted the connection in time: as good as nothing listening.
        error = DaemonUnreachableError(host, route=route, detail="connection timed out")
    elif isinstance(exc, httpx.TimeoutException):
        phase = "connect" if isinstance(exc, httpx.PoolTimeout) else read_phase
        error = BackendTimeoutError(
            f"the Ollama daemon at {host} timed out ({phase})", phase=phase, route=route
        )
    elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        error = IncompleteResponseError(
            f"the Ollama daemon at {host} closed the stream mid-answer: {redact(str(exc))}",
            route=route,
            partial_text=partial_text,
        )
    elif isinstance(exc, httpx.HTTPError):
        error = ServerError(
            f"talking to the Ollama daemon at {host} failed: {redact(str(exc))}", route=route
        )
    elif isinstance(exc, json.JSONDecodeError):
        error = ServerError(
            f"the Ollama daemon at {host} sent a malformed line (blank or not JSON): {exc.msg}",
            route=route,
        )
    elif isinstance(exc, pydantic.ValidationError):
        error = ServerError(
            f"the Ollama daemon at {host} sent a chunk of an unexpected shape ({exc.error_count()} problem(s))",
            route=route,
        )
    elif isinstance(exc, ShapeError):
        error = ServerError(
            f"the Ollama daemon at {host} sent a chunk of an unexpected shape ({exc})",
            route=route,
        )
    else:
        error = ServerError(
            f"unexpected {type(exc).__name__} from {host}: {redact(str(exc))}", route=route
        )
    error.__cause__ = exc
    return error
