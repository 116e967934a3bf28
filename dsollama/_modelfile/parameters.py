"""Modelfile parameters: their names, their types, and typing a value the way Ollama does.

`PARAMETER_TYPES` mirrors Ollama's ``api.Options``; `coerce_parameter` types the text of
a ``PARAMETER`` line (Go's rules for bools, 64-bit ints and 32-bit floats) and
`_checked_parameter` checks a value that comes from code. Mistakes raise
`_ParameterError` with a hint that can be copied as the fix; the parser and the
renderer turn it into a `ModelfileError`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from .model import ParamValue

__all__ = ["DEPRECATED_PARAMETERS", "PARAMETER_TYPES", "coerce_parameter"]

# api.Options in Ollama; `list` means "one string per PARAMETER line, accumulated".
PARAMETER_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "num_ctx": int,
        "num_batch": int,
        "num_gpu": int,
        "main_gpu": int,
        "use_mmap": bool,
        "num_thread": int,
        "draft_num_predict": int,
        "num_keep": int,
        "seed": int,
        "num_predict": int,
        "top_k": int,
        "top_p": float,
        "min_p": float,
        "typical_p": float,
        "repeat_last_n": int,
        "temperature": float,
        "repeat_penalty": float,
        "presence_penalty": float,
        "frequency_penalty": float,
        "stop": list,
    }
)

# Accepted by Ollama with a printed warning and then dropped; we do the same, but the
# warning lands in Modelfile.warnings where a CLI or a test can see it.
DEPRECATED_PARAMETERS: frozenset[str] = frozenset(
    {
        "penalize_newline",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mlock",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
    }
)

# Once valid, now refused as unknown; common in Modelfiles copied from old blog posts.
_REMOVED_PARAMETERS = frozenset(
    {"numa", "num_gqa", "tfs_z", "rope_frequency_base", "rope_frequency_scale", "embedding_only"}
)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+"
)
_KILO = re.compile(r"([0-9]+)[kK]")
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
    **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False),
}
_INT64 = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = 3.4028234663852886e38  # Ollama parses floats as float32; larger is an error
_COMMENT_HINT = (
    "a # after a value is not a comment in a Modelfile; move the comment to its own line"
)
# Used in hints, so a fix can be copied as is.
_EXAMPLES: Mapping[str, str] = {
    "num_ctx": "8192",
    "num_batch": "512",
    "num_gpu": "99",
    "main_gpu": "0",
    "num_thread": "8",
    "draft_num_predict": "4",
    "num_keep": "4",
    "seed": "42",
    "num_predict": "512",
    "top_k": "40",
    "repeat_last_n": "64",
    "top_p": "0.95",
    "min_p": "0.05",
    "typical_p": "1.0",
    "temperature": "0.7",
    "repeat_penalty": "1.1",
    "presence_penalty": "0.5",
    "frequency_penalty": "0.5",
}


# --------------------------------------------------------------------------- parameters


class _ParameterError(ValueError):
    """A parameter value or name is wrong; ``problem`` and ``hint`` feed ModelfileError."""

    def __init__(self, problem: str, hint: str | None = None) -> None:
        super().__init__(f"{problem}; {hint}" if hint else problem)
        self.problem = problem
        self.hint = hint


def coerce_parameter(name: str, raw: str) -> ParamValue:
    """Type one ``PARAMETER name raw`` value the way Ollama does, or raise ``ValueError``.

    ``stop`` gives a one-element tuple (each line adds one stop sequence).

    >>> coerce_parameter('num_ctx', '16384'), coerce_parameter('temperature', '0.6')
    (16384, 0.6)
    >>> coerce_parameter('use_mmap', 'T'), coerce_parameter('stop', '<|EOT|>')
    (True, ('<|EOT|>',))
    >>> try:
    ...     coerce_parameter('temperature', 'abc')
    ... except ValueError as exc:
    ...     print(exc)
    invalid float value 'abc' for parameter temperature (expected a number such as 0.7); write a decimal number, for example PARAMETER temperature 0.7
    """
    kind = _parameter_type(name)
    if kind is list:
        return (raw,)
    if kind is bool:
        return _coerce_bool(name, raw)
    if kind is int:
        return _coerce_int(name, raw)
    return _coerce_float(name, raw)


def _parameter_type(name: str) -> type:
    kind = PARAMETER_TYPES.get(name)
    if kind is not None:
        return kind
    if name in DEPRECATED_PARAMETERS:
        raise _ParameterError(
            f"parameter {name} is deprecated and Ollama ignores it", "remove the line"
        )
    raise _ParameterError(f"unknown parameter {name!r}", _unknown_parameter_hint(name))


def _unknown_parameter_hint(name: str) -> str:
    if name in _REMOVED_PARAMETERS:
        return "Ollama no longer has this parameter (it is refused, not ignored): remove the line"
    if name.lower() in PARAMETER_TYPES:
        return f"parameter names are case-sensitive: write {name.lower()}"
    close = difflib.get_close_matches(name, list(PARAMETER_TYPES), n=1)
    if close:
        return f"did you mean {close[0]}?"
    return "known parameters: " + ", ".join(sorted(PARAMETER_TYPES))


def _value_hint(raw: str, fallback: str) -> str:
    return _COMMENT_HINT if "#" in raw else fallback


def _coerce_bool(name: str, raw: str) -> bool:
    if raw in _GO_BOOLS:
        return _GO_BOOLS[raw]
    raise _ParameterError(
        f"invalid bool value {raw!r} for parameter {name} (expected true or false)",
        _value_hint(raw, f"write PARAMETER {name} true or PARAMETER {name} false"),
    )


def _coerce_int(name: str, raw: str) -> int:
    if _INT.fullmatch(raw):
        value = int(raw)
        if _INT64[0] <= value <= _INT64[1]:
            return value
        raise _ParameterError(
            f"int value {raw} for parameter {name} is out of range", "use a 64-bit integer"
        )
    example = _EXAMPLES.get(name, "4")
    hint = f"write a whole number, for example PARAMETER {name} {example}"
    kilo = _KILO.fullmatch(raw)
    if kilo:
        hint = f"write the number of tokens in full: PARAMETER {name} {int(kilo[1]) * 1024}"
    elif _FLOAT.fullmatch(raw):
        hint = f"{name} takes a whole number; drop the decimals"
    raise _ParameterError(
        f"invalid int value {raw!r} for parameter {name} (expected a whole number such as {example})",
        _value_hint(raw, hint),
    )


def _coerce_float(name: str, raw: str) -> float:
    if _FLOAT.fullmatch(raw):
        value = float(raw)
    elif _HEX_FLOAT.fullmatch(raw):
        value = float.fromhex(raw)
    else:
        example = _EXAMPLES.get(name, "0.7")
        hint = f"write a decimal number, for example PARAMETER {name} {example}"
        if "," in raw and _FLOAT.fullmatch(raw.replace(",", ".")):
            hint = f"use a dot as the decimal separator: PARAMETER {name} {raw.replace(',', '.')}"
        elif raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            hint = "the value must be a finite number"
        raise _ParameterError(
            f"invalid float value {raw!r} for parameter {name} (expected a number such as {example})",
            _value_hint(raw, hint),
        )
    if abs(value) > _FLOAT32_MAX:
        raise _ParameterError(
            f"float value {raw} for parameter {name} is out of range",
            "Ollama stores parameters as 32-bit floats (at most about 3.4e38)",
        )
    return value


def _checked_parameter(name: str, value: object) -> ParamValue:
    """Check a typed value (from code, not text) and normalise it: stop -> tuple.

    Used by the renderer and by the create request, because a string where a number is
    due, once baked into a model, breaks every later request to it.
    """
    kind = _parameter_type(name)
    if kind is list:
        items = (value,) if isinstance(value, str) else value
        if isinstance(items, (list, tuple)) and all(isinstance(s, str) for s in items):
            return tuple(items)
        raise _ParameterError(f"parameter {name} must be a list of strings, not {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _ParameterError(f"parameter {name} must be true or false, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        what = "an integer" if kind is int else "a number"
        raise _ParameterError(f"parameter {name} must be {what}, not {value!r}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise _ParameterError(f"parameter {name} must be an integer, not {value!r}")
        return _coerce_int(name, str(int(value)))
    try:
        number = float(value)
    except OverflowError:  # an int too large for any float
        number = math.inf
    if not math.isfinite(number):
        raise _ParameterError(f"parameter {name} must be a finite number, not {value!r}")
    return _coerce_float(name, repr(number))
