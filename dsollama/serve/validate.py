"""Request bodies: read within the size limit, parse as a JSON object, check field types.

Every problem is an `ApiError` 400 (413 for size) naming the field, what was expected and
what came, so a client sees "invalid field 'stream': expected true or false, got \"yes\""
rather than a stack trace or a silently ignored setting.

>>> body = Body({"stream": "yes"})
>>> body.flag("stream")
Traceback (most recent call last):
...
dsollama.serve.errors.ApiError: invalid field 'stream': expected true or false, got "yes"
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from .errors import CLOSE, ApiError
from .safe_json import MAX_DEPTH, check_values, decode, too_deep

__all__ = [
    "Body",
    "decode_image",
    "describe",
    "dumps",
    "parse_json_object",
    "read_body",
    "read_limited",
]


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, UTF-8 (not \\u-escaped), as the servers we stand in for send."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def describe(value: Any) -> str:
    """A short JSON rendering of a value for error messages.

    >>> describe("yes"), describe(3), describe({"a": [1, 2]}), describe("x" * 100)[:12]
    ('"yes"', '3', 'an object', '"xxxxxxxxxxx')
    """
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"request body too large: {size} bytes, the limit is {limit}; "
        "send less (for example smaller images), or start the server with a larger --max-body",
        code="request_too_large",
        # The rest of the body is not wanted: end the connection rather than read it.
        headers=dict(CLOSE),
    )


async def read_limited(
    chunks: AsyncIterator[bytes], limit: int, declared: str | None = None
) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed ``limit`` bytes."""

    def too_large(size: int) -> ApiError:
        return _too_large(size, limit)

    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(size)
        parts.append(chunk)
    return b"".join(parts)


async def read_body(receive: Receive, limit: int, declared: bytes | None = None) -> bytes:
    """A request's whole body from the ASGI ``receive``, or 413 as soon as it is known to
    exceed ``limit`` bytes; `ClientDisconnect` if the client leaves before it is in.

    What ``read_limited(request.stream(), ...)`` does, without an async generator per
    request: most bodies arrive in one message.
    """
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":  # pragma: no cover - not in ASGI 3
            continue
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        if not message.get("more_body", False):
            if not parts:
                return chunk
            parts.append(chunk)
            return b"".join(parts)
        parts.append(chunk)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 saying what is wrong with it.

    >>> parse_json_object(b'{"model": "m"}')
    {'model': 'm'}
    >>> parse_json_object(b"")
    Traceback (most recent call last):
    ...
    dsollama.serve.errors.ApiError: missing request body: send a JSON object
    """
    if not raw.strip():
        raise ApiError(400, "missing request body: send a JSON object")
    if too_deep(raw):
        raise _too_deep()
    try:
        data, suspect = decode(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text: send a JSON object") from None
    except ValueError as exc:
        raise ApiError(
            400, f"the request body is not valid JSON ({exc}): send a JSON object"
        ) from None
    except RecursionError:  # pragma: no cover - too_deep() refuses these first
        raise _too_deep() from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the request body is {describe(data)}: send a JSON object")
    if suspect:
        check_values(data)
    return data


def _too_deep() -> ApiError:
    return ApiError(
        400,
        f"the request body nests arrays and objects more than {MAX_DEPTH} levels deep: "
        "send a flatter JSON object",
    )


def decode_image(value: Any, where: str, *, param: str | None = None) -> bytes:
    """An image sent as base64 text, decoded; a 400 naming ``where`` if it is not base64.

    Decoding here matters beyond the error message: the ``ollama`` client reads a string
    image that names an existing file *as a path* and sends that file, so a request must
    never hand it text. Line breaks are allowed (the daemon's decoder skips them too).

    >>> decode_image("R0lG", "images[0]")
    b'GIF'
    >>> decode_image("/etc/passwd", "images[0]")
    Traceback (most recent call last):
    ...
    dsollama.serve.errors.ApiError: invalid field 'images[0]': expected base64-encoded image data, got "/etc/passwd"
    """
    if isinstance(value, str):
        try:
            return base64.b64decode(value.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError):
            pass
    raise ApiError(
        400,
        f"invalid field '{where}': expected base64-encoded image data, got {describe(value)}",
        param=param or where.split("[", 1)[0].split(".", 1)[0],
    )


class Body:
    """Typed access to the fields of a JSON request body; a wrong type is a 400."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def __contains__(self, name: str) -> bool:
        return self.data.get(name) is not None

    def _bad(self, name: str, expected: str) -> ApiError:
        return ApiError(
            400,
            f"invalid field '{name}': expected {expected}, got {describe(self.data[name])}",
            param=name,
        )

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def flag(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self._bad(name, "an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ApiError(
                400,
                f"invalid field '{name}': {value} is outside {low if low is not None else '-inf'}..{high if high is not None else 'inf'}",
                param=name,
            )
        return value

    def number(
        self, name: str, low: float | None = None, high: float | None = None
    ) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(name, "a number")
        if isinstance(value, int) and abs(value) > 1e308:  # float() would overflow
            raise self._bad(name, "a number a float can hold")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ApiError(
                400,
                f"invalid field '{name}': {value} is outside {low}..{high}",
                param=name,
            )
        return float(value)

    def array(self, name: str) -> list[Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._bad(name, "a list")
        return value

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._bad(name, "an object")
        return value

    def required_str(self, name: str, message: str) -> str:
        value = self.text(name)
        if not value:
            raise ApiError(400, message, param=name)
        return value
