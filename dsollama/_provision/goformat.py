"""Go's ``%#v`` formatting of model parameters, as ``/api/show`` reports them.

The daemon prints each parameter with Go's ``%#v`` (strings via ``strconv.Quote``, numbers
as float64 in ``%g`` style), keys padded to 30 columns and one line per list entry. This
module quotes, unquotes, formats and parses that text, so the plan can compare what a
daemon has with what a Modelfile wants. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "format_show_parameters",
    "go_format_value",
    "go_quote",
    "go_unquote",
    "parse_show_parameters",
]

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_GO_ESCAPE_OUT = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def go_quote(text: str) -> str:
    r"""Go's ``strconv.Quote`` (what ``%#v`` prints for a string).

    >>> print(go_quote('<｜User｜>'))
    "<｜User｜>"
    >>> print(go_quote('a"b\\c\n\x01'))
    "a\"b\\c\n\x01"
    """
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif code in _GO_ESCAPE_OUT:
            out.append(_GO_ESCAPE_OUT[code])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_unquote(text: str) -> str:
    r"""Reverse of `go_quote` (accepts every escape Go's quoting can produce).

    >>> go_unquote('"a\\"b\\\\c\\n\\x01\\u00e9"') == 'a"b\\c\n\x01é'
    True
    """
    body = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 >= len(body):
            out += ch.encode("utf-8")
            i += 1
            continue
        esc = body[i + 1]
        if esc in _GO_ESCAPES:
            out.append(_GO_ESCAPES[esc])
            i += 2
        elif esc == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif esc in {"u", "U"}:
            width = 4 if esc == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        elif esc.isdigit():  # octal \NNN
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out += ("\\" + esc).encode("utf-8")
            i += 2
    return out.decode("utf-8", errors="replace")


def go_format_value(value: Any) -> str:
    """What Go's ``%#v`` prints for a JSON-decoded parameter value.

    Numbers arrive in Go as float64, printed like ``%g`` with the shortest digits.

    >>> [go_format_value(v) for v in (0.6, 8192, 1_000_000, 1e-05, True, "x")]
    ['0.6', '8192', '1e+06', '1e-05', 'true', '"x"']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    return go_quote(str(value))


def _go_float(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    from decimal import Decimal

    sign, digits, exponent = Decimal(repr(x)).as_tuple()
    digs = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    point = len(digits) + exponent  # position of the decimal point in the digits
    exp = point - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go switches to %e at the shortest-precision threshold of 6
        mantissa = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digs}"
    if point >= len(digs):
        return f"{neg}{digs}{'0' * (point - len(digs))}"
    return f"{neg}{digs[:point]}.{digs[point:]}"


def format_show_parameters(params: Mapping[str, Any]) -> str:
    """The ``parameters`` string ``/api/show`` returns for these model parameters.

    Keys are padded to 30 columns, one line per list entry. Go iterates a map in random
    order; this sorts keys so the result is stable (compare with `parse_show_parameters`).

    >>> print(format_show_parameters({"temperature": 0.6, "stop": ["<a>", "<b>"]}))
    stop                           "<a>"
    stop                           "<b>"
    temperature                    0.6
    """
    lines: list[str] = []
    for key in sorted(params):
        value = params[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        lines.extend(f"{key:<30} {go_format_value(v)}" for v in values)
    return "\n".join(lines)


def _parse_go_value(raw: str) -> Any:
    if raw.startswith('"'):
        return go_unquote(raw)
    if raw in {"true", "false"}:
        return raw == "true"
    try:
        return float(raw.replace("+Inf", "inf").replace("-Inf", "-inf"))
    except ValueError:
        return raw


def parse_show_parameters(text: str) -> dict[str, tuple[Any, ...]]:
    """The show ``parameters`` string as {key: values}; numbers become floats.

    >>> parse_show_parameters('stop                           "<a>"\\nnum_ctx                        8192')
    {'stop': ('<a>',), 'num_ctx': (8192.0,)}
    """
    out: dict[str, list[Any]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, rest = line.strip().partition(" ")
        out.setdefault(key, []).append(_parse_go_value(rest.strip(" ")))
    return {k: tuple(v) for k, v in out.items()}
