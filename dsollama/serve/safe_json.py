"""Decoding untrusted JSON: what `json.loads` accepts but nothing after it can handle.

- Nesting: ``json.loads`` recurses once per level and raises `RecursionError` (not
  `ValueError`) near Python's recursion limit; structures just below it break later, when
  re-encoded. `nesting_depth` measures the depth on the raw bytes, before decoding.
- ``NaN``, ``Infinity``, ``-Infinity`` and overflowing literals (``1e999``) decode to
  floats that no strict JSON encoder (ours, httpx's, pydantic's) will write again.
- ``"\\ud800"``: a lone surrogate decodes to a string that cannot be encoded as UTF-8.

`check_values` finds the last two after decoding and names the field, so a client gets
"invalid field 'options.temperature': ..." instead of a 500 from deep inside a call.

>>> nesting_depth(b'{"a": [1, {"b": "]]]"}]}')
3
>>> check_values({"options": {"temperature": float("nan")}})
Traceback (most recent call last):
...
dsollama.serve.errors.ApiError: invalid field 'options.temperature': NaN is not a number JSON allows; send a finite number
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from .errors import ApiError

__all__ = ["MAX_DEPTH", "check_values", "decode", "nesting_depth", "too_deep"]

MAX_DEPTH = 64
"Deepest nesting of arrays and objects accepted (requests need about 10; schemas a few more)."

_STRING = re.compile(rb'"[^"]*"')
_KEEP_STRUCTURE = bytes(c for c in range(256) if c not in b'[]{}"')
_KEEP_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_SURROGATE = re.compile("[\ud800-\udfff]")
_OPEN_CLOSE = bytes(1 if c in b"[{" else 0xFF if c in b"]}" else 0 for c in range(256))


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in ``raw`` (0 for a scalar), without decoding it.

    Exact for valid JSON. For invalid text it may be off after the first error, but never
    below the depth a decoder reaches before finding that error. Linear and in C: about
    10 ms per MB, three times json.loads (`too_deep` calls it only when there are many
    brackets).

    >>> nesting_depth(b'[[["\\\\"[", "\\\\\\\\"], {}]]')
    3
    >>> nesting_depth(b"[" * 100 + b"]" * 100), nesting_depth(b'"just text"')
    (100, 0)
    """
    if b"\\" in raw:
        # Escaped backslashes, then escaped quotes: afterwards every quote opens or closes
        # a string. Left-to-right pairs are exactly how a run of backslashes reads.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = raw.translate(None, _KEEP_STRUCTURE)
    if b'"' in structure:
        structure = _STRING.sub(b"", structure)  # brackets inside strings do not nest
    steps = memoryview(structure.translate(_OPEN_CLOSE)).cast("b")  # +1 open, -1 close
    return max(accumulate(steps, initial=0))


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Does ``raw`` nest deeper than ``limit``? (Counting brackets first: usually enough.)

    >>> too_deep(b'{"messages": [{"role": "user", "content": "hi"}]}')
    False
    >>> too_deep(b"[" * 65 + b"]" * 65)
    True
    """
    # One pass in C keeps the brackets: with few of them the answer is known (about
    # 1.5 ms per MB, where json.loads takes 2-3).
    brackets = raw.translate(None, _KEEP_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    return nesting_depth(raw) > limit


class _NotFinite(ValueError):
    """Decoding met a NaN, an Infinity or a number too large for a float."""


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # 1e999: decodes to inf, which nothing writes back
        raise _NotFinite(text)
    return value


def _not_a_number(name: str) -> float:
    raise _NotFinite(name)  # NaN, Infinity, -Infinity


# Decodes as json.loads does, but stops at the first number `check_values` refuses: the
# hooks run only for literals with a fraction or an exponent (and for NaN, Infinity).
_STRICT = json.JSONDecoder(parse_float=_finite, parse_constant=_not_a_number)

# A lone surrogate in UTF-8 text: escaped (\ud800 to \udfff) or as the bytes that
# json.loads decodes with "surrogatepass". Each looked for only where its first bytes are.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_BYTES = re.compile(b"\xed[\xa0-\xbf]")


def decode(raw: bytes) -> tuple[Any, bool]:
    """``raw`` decoded as `json.loads` decodes it, and whether `check_values` must look
    at the result: only when it met a non-finite number or the text holds a surrogate
    (two hooks and a byte search tell; walking every value of a big list costs more).

    Raises what `json.loads` raises (`UnicodeDecodeError`, `ValueError`, `RecursionError`).

    >>> decode(b'{"temperature": 0.5}'), decode(b'{"t": NaN}')[1], decode(b'["\\\\udfff"]')[1]
    (({'temperature': 0.5}, False), True, True)
    """
    encoding = json.detect_encoding(raw)
    text = raw.decode(encoding, "surrogatepass")
    try:
        data = _STRICT.decode(text)
    except _NotFinite:
        return json.loads(text), True
    if encoding != "utf-8":
        return data, True  # UTF-16 and UTF-32 bodies are rare: look at every value
    suspect = (b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None) or (
        b"\xed" in raw and _SURROGATE_BYTES.search(raw) is not None
    )
    return data, suspect


def _bad_number(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _find(value: Any) -> tuple[list[str], str] | None:
    """The path to the first value that cannot be re-encoded, and what is wrong with it."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return [], f"{_bad_number(value)} is not a number JSON allows; send a finite number"
    elif isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            return [], (
                "contains a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair), "
                "which is not text; send valid Unicode"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key.isascii() and _SURROGATE.search(key):
                return [], "has a key with a lone UTF-16 surrogate escape: send valid Unicode"
            found = _find(item)
            if found is not None:
                found[0].append(f".{key}")
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item)
            if found is not None:
                found[0].append(f"[{index}]")
                return found
    return None


def check_values(data: Any) -> None:
    """Raise a 400 naming the first non-finite number or lone surrogate in decoded JSON.

    Costs little: an ASCII string (``isascii`` is free) cannot hold a surrogate, so only
    other strings are searched.
    """
    found = _find(data)
    if found is None:
        return
    parts, problem = found
    path = "".join(reversed(parts)).lstrip(".")
    field = path.split(".", 1)[0].split("[", 1)[0]
    where = f"invalid field '{path}'" if path else "invalid request body"
    raise ApiError(400, f"{where}: {problem}", param=field or None)
