"""Writing a `Modelfile` back as text that parses to an equal `Modelfile`.

`render_modelfile` checks every parameter value and picks, for each value, the
shortest spelling (bare, ``"…"`` or ``\"\"\"…\"\"\"``) that the parser reads back
unchanged, refusing the one kind of value Modelfile syntax cannot hold.
"""

from __future__ import annotations

from .._exceptions import ModelfileError
from .model import _ROLES, Modelfile
from .parameters import _checked_parameter, _ParameterError
from .parse import _SPACE, _scan_value

__all__ = ["render_modelfile"]

# ---------------------------------------------------------------------------- rendering


def render_modelfile(m: Modelfile) -> str:
    """Write ``m`` as Modelfile text that parses back to an equal Modelfile.

    Values are written bare when that is unambiguous, otherwise in ``"…"`` or
    ``\"\"\"…\"\"\"`` (multi-line text prefers triple quotes). The one thing Modelfile
    syntax cannot hold is a line break inside a value right after ``\"\"\"`` (give or take
    white space): every quoting closes early there, so such a value raises
    ``ModelfileError`` instead of being written wrongly.
    """
    lines = [f"FROM {_quote(m.from_, 'FROM')}"]
    if m.requires is not None:
        lines.append(f"REQUIRES {_quote(m.requires, 'REQUIRES')}")
    lines += [f"ADAPTER {_quote(a, 'ADAPTER')}" for a in m.adapters]
    if m.draft is not None:
        lines.append(f"DRAFT {_quote(m.draft, 'DRAFT')}")
    for name, value in m.parameters.items():
        lines += [f"PARAMETER {name} {text}" for text in _parameter_texts(name, value)]
    for keyword, text in (
        ("TEMPLATE", m.template),
        ("SYSTEM", m.system),
        ("RENDERER", m.renderer),
        ("PARSER", m.parser),
    ):
        if text is not None:
            lines.append(f"{keyword} {_quote(text, keyword)}")
    lines += [f"LICENSE {_quote(text, 'LICENSE')}" for text in m.licenses]
    for message in m.messages:
        if message.role not in _ROLES:
            raise ModelfileError(
                f"cannot write a MESSAGE with role {message.role!r}",
                hint='use "system", "user" or "assistant"',
            )
        lines.append(f"MESSAGE {message.role} {_quote(message.content, 'MESSAGE')}")
    return "\n".join(lines) + "\n"


def _parameter_texts(name: str, value: object) -> list[str]:
    try:
        checked = _checked_parameter(name, value)
    except _ParameterError as exc:
        raise ModelfileError(
            f"cannot write PARAMETER {name}: {exc.problem}", hint=exc.hint
        ) from None
    if isinstance(checked, tuple):
        return [_quote(s, f"PARAMETER {name}") for s in checked]
    if isinstance(checked, bool):
        return ["true" if checked else "false"]
    return [repr(checked)]  # repr: the shortest text that reads back as the same number


def _quote(value: str, label: str) -> str:
    """The shortest spelling of ``value`` that ``_scan_value`` reads back unchanged."""
    multiline = "\n" in value or "\r" in value
    bare = [] if multiline or not value or value != value.strip(_SPACE) else [value]
    order = ('"""', '"') if multiline else ('"', '"""')
    for candidate in (*bare, *(d + value + d for d in order)):
        if _scan_value(candidate, 0) == (value, len(candidate)):
            return candidate
    raise ModelfileError(
        f"cannot write the {label} value in Modelfile syntax: a line inside it ends with "
        '""" (only white space may follow), which would close any quoting early',
        hint='change that line, e.g. add a character after the """',
    )
