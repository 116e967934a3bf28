"""The type rules an OpenAI-format answer must follow before its text is trusted.

A chunk (or a whole completion) whose fields have the wrong types is a malformed answer,
not a chunk to skip: skipping ``{"delta": {"content": 42}}`` would drop a piece of the
answer and let the rest pass for complete. `check_chunk` walks one JSON object and
raises `ShapeError` naming the first field that breaks a rule; the decoder turns that
into a `ServerError` (retryable, like the local side's malformed chunks).

Only the fields the decoder reads are checked, so the extras servers add (``logprobs``,
OpenRouter's ``cost`` in ``usage``, Azure's filter results) never fail an answer.
``null`` and an absent field both mean "nothing here" (ref §2.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ShapeError", "check_chunk", "is_whole_completion"]

_MISSING = object()

# The counters `hosted_response` reads from ``usage``; details objects hold the nested ones.
_USAGE_COUNTS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_cache_hit_tokens",
    "prompt_cache_miss_tokens",
)
_USAGE_DETAILS = {
    "prompt_tokens_details": ("cached_tokens",),
    "completion_tokens_details": ("reasoning_tokens",),
}
# DeepSeek, llama-server and older vLLM say reasoning_content; OpenRouter and newer vLLM
# say reasoning (servers in the middle of the rename send both, with the same text).
REASONING_FIELDS = ("reasoning_content", "reasoning")
_TEXT_FIELDS = ("content", *REASONING_FIELDS)


class ShapeError(ValueError):
    """A field has the wrong type: ``path`` names it (``choices[0].delta.content``)."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        self.path = path
        self.expected = expected
        self.got = _type_name(value)
        super().__init__(f"{path} must be {expected}, got {self.got}")


def _type_name(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _optional_str(obj: Mapping[str, Any], key: str, path: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ShapeError(f"{path}.{key}", "a string or null", value)


def _optional_object(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise ShapeError(f"{path}.{key}", "an object or null", value)
    return value


def _optional_count(obj: Mapping[str, Any], key: str, path: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    # Integral floats (17.0) pass: some JSON encoders write every number that way.
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or value < 0:
        raise ShapeError(f"{path}.{key}", "a non-negative integer or null", value)


def _check_usage(usage: Any) -> None:
    if usage is None:
        return
    if not isinstance(usage, Mapping):
        raise ShapeError("usage", "an object or null", usage)
    for key in _USAGE_COUNTS:
        _optional_count(usage, key, "usage")
    for details_key, counts in _USAGE_DETAILS.items():
        details = _optional_object(usage, details_key, "usage")
        if details is not None:
            for key in counts:
                _optional_count(details, key, f"usage.{details_key}")


def _check_tool_calls(holder: Mapping[str, Any], path: str, *, whole: bool) -> None:
    calls = holder.get("tool_calls")
    if calls is None:
        return
    path = f"{path}.tool_calls"
    if not isinstance(calls, list):
        raise ShapeError(path, "a list of objects or null", calls)
    for position, call in enumerate(calls):
        where = f"{path}[{position}]"
        if not isinstance(call, Mapping):
            raise ShapeError(where, "an object", call)
        _optional_count(call, "index", where)
        _optional_str(call, "id", where)
        _optional_str(call, "type", where)
        function = _optional_object(call, "function", where)
        if function is None:
            continue
        _optional_str(function, "name", f"{where}.function")
        arguments = function.get("arguments")
        # Streamed fragments are concatenated, so they must be text; a whole message may
        # also carry the arguments already decoded (as some OpenAI-format servers do).
        decoded = whole and isinstance(arguments, Mapping)
        if arguments is not None and not isinstance(arguments, str) and not decoded:
            expected = "a string, an object or null" if whole else "a string or null"
            raise ShapeError(f"{where}.function.arguments", expected, arguments)


def _check_choice(choice: Any, path: str) -> None:
    if not isinstance(choice, Mapping):
        raise ShapeError(path, "an object", choice)
    _optional_count(choice, "index", path)
    _optional_str(choice, "finish_reason", path)
    _optional_str(choice, "text", path)  # FIM (text_completion) answers
    for key in ("delta", "message"):
        part = _optional_object(choice, key, path)
        if part is None:
            continue
        for field in _TEXT_FIELDS:
            _optional_str(part, field, f"{path}.{key}")
        _check_tool_calls(part, f"{path}.{key}", whole=key == "message")


def check_chunk(chunk: Mapping[str, Any]) -> None:
    """Raise `ShapeError` when a stream chunk or a whole completion has a wrong type.

    ``choices`` must be a list of objects; it may be absent or null only on a chunk that
    carries ``usage`` (the usage-only chunk some servers send last). Anything else with
    no choices could not be decoded at all, so it is malformed too.

    >>> check_chunk({"choices": [{"index": 0, "delta": {"content": "Hi"}}], "usage": None})
    >>> check_chunk({"choices": [{"index": 0, "delta": {"content": 42}}]})
    Traceback (most recent call last):
    ...
    dsollama._wire.hosted_shapes.ShapeError: choices[0].delta.content must be a string or null, got a number
    >>> check_chunk({"choices": "x"})
    Traceback (most recent call last):
    ...
    dsollama._wire.hosted_shapes.ShapeError: choices must be a list of objects, got a string
    """
    usage = chunk.get("usage")
    _check_usage(usage)
    choices = chunk.get("choices", _MISSING)
    if choices is _MISSING or choices is None:
        if usage is None:
            raise ShapeError("choices", "a list of objects", choices)
        return
    if not isinstance(choices, list):
        raise ShapeError("choices", "a list of objects", choices)
    for position, choice in enumerate(choices):
        _check_choice(choice, f"choices[{position}]")


def is_whole_completion(body: Mapping[str, Any]) -> bool:
    """True when ``body`` is a whole answer: a first choice with a message or a text.

    What a streaming request may get back as one JSON body instead of events; a chunk
    (``delta``) or an object without choices is not a completion.

    >>> is_whole_completion({"choices": [{"index": 0, "message": {"content": "Hi"}}]})
    True
    >>> is_whole_completion({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    False
    """
    choices = body.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if isinstance(choice, Mapping) and choice.get("index", 0) == 0:
            return isinstance(choice.get("message"), Mapping) or isinstance(choice.get("text"), str)
    return False
