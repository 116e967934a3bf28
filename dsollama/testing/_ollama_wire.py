"""What the Ollama double needs to speak like a Go server: JSON bytes, errors, durations.

Ollama is a Go program (Gin + encoding/json). A faithful double reproduces the parts of
that a client can observe: compact JSON with ``<``, ``>`` and ``&`` escaped, RFC 3339
timestamps with nanoseconds, Go's JSON decode error texts, ``time.ParseDuration`` for
``keep_alive``, and the option type errors of ``api.Options.FromMap``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ApiError",
    "decode_request",
    "go_float",
    "go_json",
    "go_quote",
    "keep_alive_seconds",
    "merge_options",
    "ndjson",
    "parse_go_duration",
    "rfc3339_local",
    "rfc3339_utc_now",
]


class ApiError(Exception):
    """An error the daemon answers as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# -- encoding ---------------------------------------------------------------------------

_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)
_NEEDS_ESCAPE = re.compile("[<>&\u2028\u2029]")
# One encoder for every chunk: `json.dumps` with options builds a new one per call, and a
# streaming double encodes one object per token (its cost per chunk should stay far below
# what a client under test spends, as Go's is).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def go_json(payload: Any) -> bytes:
    """``json.Marshal`` bytes: compact, UTF-8, HTML characters escaped.

    Go escapes ``<``, ``>`` and ``&`` inside strings, so a DeepSeek ``<think>`` tag travels
    as ``\\u003cthink\\u003e`` on the wire; a client that searches raw bytes for ``<think>``
    must be caught by the tests, as it would be by the real daemon.

    >>> go_json({"a": "<think>"})
    b'{"a":"\\\\u003cthink\\\\u003e"}'
    """
    text = _ENCODER.encode(payload)
    # Those characters can only occur inside JSON strings, so a plain replace is exact;
    # a search first, because most chunks have none and `translate` walks every character.
    if _NEEDS_ESCAPE.search(text) is not None:
        text = text.translate(_HTML_ESCAPES)
    return text.encode()


def ndjson(payload: Any) -> bytes:
    return go_json(payload) + b"\n"


def rfc3339_utc_now() -> str:
    """``time.Now().UTC()`` as Go marshals it: nanoseconds, trailing zeros trimmed, ``Z``."""
    global _utc_second
    secs, frac = divmod(time.time_ns(), 1_000_000_000)
    if frac == 0:
        return _rfc3339(secs * 1_000_000_000, utc=True)
    # Every streamed chunk carries one: the seconds part is formatted once per second.
    cached_secs, prefix = _utc_second
    if cached_secs != secs:
        prefix = _rfc3339(secs * 1_000_000_000, utc=True)[:-1]  # without the "Z"
        _utc_second = (secs, prefix)  # one tuple: threads of other doubles read it whole
    return f"{prefix}.{frac:09d}".rstrip("0") + "Z"


_utc_second: tuple[int, str] = (-1, "")
"The second `rfc3339_utc_now` last formatted, and its text."


def rfc3339_local(seconds: float) -> str:
    """A local timestamp with its offset, as in ``modified_at`` and ``expires_at``."""
    # keep_alive < 0 is "forever": Go adds the largest Duration (~292 years) to now.
    seconds = min(seconds, time.time() + 9_223_372_036.854775)
    return _rfc3339(int(seconds * 1e9), utc=False)


def _rfc3339(ns: int, *, utc: bool) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    try:
        moment = dt.datetime.fromtimestamp(secs, dt.timezone.utc)
        if not utc:
            moment = moment.astimezone()
    except (OverflowError, OSError, ValueError):
        # keep_alive < 0 means "forever": Go prints a date centuries ahead.
        moment = dt.datetime(2318, 1, 1, tzinfo=dt.timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    offset = moment.utcoffset() or dt.timedelta(0)
    if offset == dt.timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def go_quote(text: str) -> str:
    """``strconv.Quote``, close enough for the messages a client reads."""
    return json.dumps(text, ensure_ascii=False)


def go_float(value: float) -> str:
    """``fmt.Sprintf("%v", f)`` for a float64: shortest digits, ``%e`` for exponents < -4 or >= 6.

    >>> [go_float(v) for v in (0.6, 1.0, 8192.0, 131072.0, 1e6, 0.0001, 0.00001)]
    ['0.6', '1', '8192', '131072', '1e+06', '0.0001', '1e-05']
    """
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    number = decimal.Decimal(repr(abs(value))).normalize()
    _, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    scientific = len(digits) + exponent - 1
    sign = "-" if value < 0 else ""
    if scientific < -4 or scientific >= 6:
        tail = digits[1:]
        mark = "-" if scientific < 0 else "+"
        return f"{sign}{digits[0]}{'.' + tail if tail else ''}e{mark}{abs(scientific):02d}"
    return sign + format(number, "f")


# -- durations --------------------------------------------------------------------------

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = re.compile(r"(\d*)(?:\.(\d*))?")
_UNIT = re.compile(r"[^\d.]*")


def parse_go_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, in seconds; ValueError carries Go's message.

    >>> parse_go_duration("1h30m"), parse_go_duration("-1m"), parse_go_duration("250ms")
    (5400.0, -60.0, 0.25)
    >>> parse_go_duration("300")
    Traceback (most recent call last):
    ValueError: time: missing unit in duration "300"
    """
    original, rest = text, text
    negative = False
    if rest[:1] in ("+", "-"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {go_quote(original)}")
    total = 0.0
    while rest:
        match = _NUMBER.match(rest)
        assert match is not None  # the pattern matches the empty string
        whole, fraction = match.group(1), match.group(2)
        if not whole and not fraction:
            raise ValueError(f"time: invalid duration {go_quote(original)}")
        rest = rest[match.end() :]
        unit_match = _UNIT.match(rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise ValueError(f"time: missing unit in duration {go_quote(original)}")
        if unit not in _UNITS:
            raise ValueError(
                f"time: unknown unit {go_quote(unit)} in duration {go_quote(original)}"
            )
        total += float(f"{whole or '0'}.{fraction or '0'}") * _UNITS[unit]
        rest = rest[len(unit) :]
    return -total if negative else total


def keep_alive_seconds(value: Any) -> float | None:
    """``api.Duration`` semantics: None when absent; ``inf`` for any negative value."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, "Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    else:
        kind = "[]interface {}" if isinstance(value, list) else "map[string]interface {}"
        raise ApiError(400, f"Unsupported type: '{kind}'")
    return math.inf if seconds < 0 else seconds


# -- request decoding -------------------------------------------------------------------

_MESSAGE = {
    "role": "string",
    "content": "string",
    "thinking": "string",
    "images": "[]api.ImageData",
    "tool_calls": "[]api.ToolCall",
    "tool_name": "string",
    "tool_call_id": "string",
}
_COMMON_INFERENCE = {
    "model": "string",
    "stream": "bool",
    "format": "raw",
    "keep_alive": "duration",
    "options": "map[string]interface {}",
    "think": "think",
    "truncate": "bool",
    "shift": "bool",
    "_debug_render_only": "bool",
    "logprobs": "bool",
    "top_logprobs": "int",
}
STRUCTS: dict[str, dict[str, str]] = {
    "GenerateRequest": {
        **_COMMON_INFERENCE,
        "prompt": "string",
        "suffix": "string",
        "system": "string",
        "template": "string",
        "context": "[]int",
        "raw": "bool",
        "images": "[]api.ImageData",
    },
    "ChatRequest": {**_COMMON_INFERENCE, "messages": "[]api.Message", "tools": "api.Tools"},
    "EmbedRequest": {
        "model": "string",
        "input": "any",
        "keep_alive": "duration",
        "truncate": "bool",
        "dimensions": "int",
        "options": "map[string]interface {}",
    },
    "EmbeddingRequest": {
        "model": "string",
        "prompt": "string",
        "keep_alive": "duration",
        "options": "map[string]interface {}",
    },
    "PullRequest": {
        "model": "string",
        "name": "string",
        "insecure": "bool",
        "username": "string",
        "password": "string",
        "stream": "bool",
    },
    "CreateRequest": {
        "model": "string",
        "name": "string",
        "stream": "bool",
        "quantize": "string",
        "quantization": "string",
        "from": "string",
        "files": "map[string]string",
        "adapters": "map[string]string",
        "template": "string",
        "license": "any",
        "system": "string",
        "parameters": "map[string]interface {}",
        "messages": "[]api.Message",
        "info": "map[string]interface {}",
    },
    "ShowRequest": {
        "model": "string",
        "name": "string",
        "system": "string",
        "template": "string",
        "verbose": "bool",
        "options": "map[string]interface {}",
    },
    "CopyRequest": {"source": "string", "destination": "string"},
    "ChatCompletionRequest": {
        "model": "string",
        "messages": "[]openai.Message",
        "stream": "bool",
        "max_tokens": "int",
        "seed": "int",
        "temperature": "float64",
        "frequency_penalty": "float64",
        "presence_penalty": "float64",
        "top_p": "float64",
        "tools": "[]api.Tool",
        "reasoning_effort": "string",
        "logprobs": "bool",
        "top_logprobs": "int",
    },
    "DeleteRequest": {"model": "string", "name": "string"},
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote_char(char: str) -> str:
    # encoding/json's quoteChar: the offending byte, Go-quoted between single quotes.
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    if char.isprintable() and char.isascii():
        return f"'{char}'"
    special = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    escaped = special.get(char) or f"\\x{char.encode()[0]:02x}"
    return f"'{escaped}'"


def _syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    pos = exc.pos
    if pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = text[pos]
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {_quote_char(char)} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {_quote_char(char)} after object key"
    if exc.msg.startswith("Expecting ','"):
        where = "object key:value pair" if _innermost(text, pos) == "{" else "array element"
        return f"invalid character {_quote_char(char)} after {where}"
    if exc.msg.startswith("Invalid control character"):
        return f"invalid character {_quote_char(char)} in string literal"
    if exc.msg.startswith("Invalid \\escape"):
        return f"invalid character {_quote_char(text[pos + 1 : pos + 2] or char)} in string escape code"
    return f"invalid character {_quote_char(char)} looking for beginning of value"


def _innermost(text: str, end: int) -> str:
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


class _Fatal(Exception):
    """An error Go's decoder returns at once (from a custom UnmarshalJSON)."""


def decode_request(body: bytes, struct: str) -> dict[str, Any]:
    """Decode a request body the way Gin's ``ShouldBindJSON`` does into ``struct``.

    Raises `ApiError` 400 with Go's text: ``missing request body`` for an empty body,
    the syntax error for bad JSON, the first type error otherwise. A JSON ``null`` body
    decodes to an empty request, as in Go; bytes after the first value are ignored
    (``json.Decoder.Decode`` reads one value).
    """
    text = body.decode("utf-8", "replace")
    if not text.strip():
        raise ApiError(400, "missing request body")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError as exc:
        raise ApiError(400, _syntax_message(text, exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400, f"json: cannot unmarshal {_json_kind(value)} into Go value of type api.{struct}"
        )
    try:
        error = _check_struct(value, STRUCTS[struct], struct)
    except _Fatal as fatal:
        raise ApiError(400, str(fatal)) from None
    if error:
        raise ApiError(400, error)
    if struct == "ChatRequest" and isinstance(value.get("messages"), list):
        for message in value["messages"]:
            # api.Message lower-cases the role when it is decoded.
            if isinstance(message, dict) and isinstance(message.get("role"), str):
                message["role"] = message["role"].lower()
    return value


def _check_struct(value: dict[str, Any], fields: Mapping[str, str], path: str) -> str | None:
    first: str | None = None
    for key, item in value.items():
        kind = fields.get(key)
        if kind is None or item is None:
            continue  # unknown fields are ignored; null leaves the zero value
        error = _check_field(item, kind, f"{path}.{key}")
        first = first or error
    return first


def _type_error(item: Any, path: str, go_type: str) -> str:
    kind = _json_kind(item)
    if kind == "number" and go_type == "int":
        kind = f"number {json.dumps(item)}"
    return f"json: cannot unmarshal {kind} into Go struct field {path} of type {go_type}"


def _check_field(item: Any, kind: str, path: str) -> str | None:
    if kind == "any" or kind == "raw":
        return None
    if kind == "string":
        return None if isinstance(item, str) else _type_error(item, path, "string")
    if kind == "bool":
        return None if isinstance(item, bool) else _type_error(item, path, "bool")
    if kind == "float64":
        ok = isinstance(item, (int, float)) and not isinstance(item, bool)
        return None if ok else _type_error(item, path, "float64")
    if kind == "int":
        ok = isinstance(item, int) and not isinstance(item, bool)
        ok = ok or (isinstance(item, float) and item.is_integer())
        return None if ok else _type_error(item, path, "int")
    if kind == "[]int":
        if not isinstance(item, list):
            return _type_error(item, path, "[]int")
        for element in item:
            error = _check_field(element, "int", path)
            if error:
                return error
        return None
    if kind.startswith("map["):
        if not isinstance(item, dict):
            return _type_error(item, path, kind)
        if kind == "map[string]string":
            for element in item.values():
                if element is not None and not isinstance(element, str):
                    return _type_error(element, path, "string")
        return None
    if kind == "duration":
        try:
            keep_alive_seconds(item)
        except ApiError as exc:
            raise _Fatal(exc.message) from None
        return None
    if kind == "think":
        if isinstance(item, bool):
            return None
        if isinstance(item, str):
            if item not in ("high", "medium", "low", "max"):
                raise _Fatal(
                    f"invalid think value: {go_quote(item)} "
                    '(must be "high", "medium", "low", "max", true, or false)'
                )
            return None
        raise _Fatal(
            'think must be a boolean or string ("high", "medium", "low", "max", true, or false)'
        )
    if kind == "[]api.ImageData":
        if not isinstance(item, list):
            return _type_error(item, path, kind)
        for element in item:
            if not isinstance(element, str):
                return _type_error(element, path, "api.ImageData")
            try:
                base64.b64decode(element, validate=True)
            except (binascii.Error, ValueError):
                bad = next(
                    (i for i, c in enumerate(element) if not (c.isalnum() or c in "+/=")),
                    len(element) - len(element) % 4,
                )
                return f"illegal base64 data at input byte {bad}"
        return None
    if kind == "[]api.Message":
        if not isinstance(item, list):
            return _type_error(item, path, kind)
        for element in item:
            if element is None:
                continue
            if not isinstance(element, dict):
                return _type_error(element, path, "api.Message")
            error = _check_struct(element, _MESSAGE, path)
            if error:
                return error
        return None
    if kind in ("[]api.ToolCall", "api.Tools", "[]api.Tool", "[]openai.Message"):
        if not isinstance(item, list):
            return _type_error(item, path, kind)
        return None
    return None  # pragma: no cover - every kind above is handled


# -- options ----------------------------------------------------------------------------

_INT_OPTIONS = frozenset(
    {
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
        "draft_num_predict",
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "repeat_last_n",
    }
)
_FLOAT_OPTIONS = frozenset(
    {
        "top_p",
        "min_p",
        "typical_p",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    }
)
LOAD_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")


def merge_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Model parameters, then request options, checked like ``api.Options.FromMap``.

    Unknown keys are ignored (the daemon only logs them); a known key with the wrong JSON
    type is a 500 ``option "temperature" must be of type float32`` (the handler maps every
    scheduling error that is not a capability or queue error to 500).
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if value is None:
                continue
            if key in _INT_OPTIONS:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ApiError(500, f'option "{key}" must be of type integer')
                value = int(value)
            elif key in _FLOAT_OPTIONS:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ApiError(500, f'option "{key}" must be of type float32')
                value = float(value)
            elif key == "use_mmap":
                if not isinstance(value, bool):
                    raise ApiError(500, f'option "{key}" must be of type boolean')
            elif key == "stop":
                if not isinstance(value, list):
                    raise ApiError(500, f'option "{key}" must be of type array')
                if not all(isinstance(s, str) for s in value):
                    raise ApiError(500, f'option "{key}" must be of an array of strings')
            else:
                continue
            merged[key] = value
    return merged
