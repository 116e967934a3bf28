"""Text from outside (request fields, model names, server answers) made safe to show.

A model name or an error text that reaches a log line or a terminal can carry control
characters: CR/LF forge log lines, ESC sequences retitle or clear the terminal, bidi
overrides reorder what is shown, a NUL truncates some viewers, a lone surrogate cannot
even be written as UTF-8. `printable` escapes all of them, visibly and reversibly for a
reader, and caps the length so a 1 MB name is not shown whole. `json_for_terminal` does
the same for JSON output without changing what it parses to. `PrintableLogArgs` applies
`printable` to the arguments of log records. Light on purpose: the CLI imports it.

>>> printable("deepseek-r1:8b")
'deepseek-r1:8b'
>>> printable("evil\\r\\nINFO: forged line \\x1b]0;pwned\\x07")
'evil\\\\r\\\\nINFO: forged line \\\\x1b]0;pwned\\\\x07'
>>> printable("x" * 30, limit=10)
'xxxxxxxxxx…[+20 chars]'
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["DEFAULT_LIMIT", "PrintableLogArgs", "json_for_terminal", "printable"]

DEFAULT_LIMIT = 300
"Characters shown of one outside value before it is cut (with a marker saying how much)."

# C0 controls, DEL, C1 controls (U+009B is an 8-bit CSI for some terminals), Arabic letter
# mark, LRM/RLM, line and paragraph separators, bidi embeddings/overrides and isolates,
# and lone surrogates (unencodable: printing one raises UnicodeEncodeError).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# What json.dumps(ensure_ascii=False) leaves raw but a terminal must not see raw; the C0
# controls are already \u-escaped by json.dumps itself.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` on one line with control, bidi and surrogate characters escaped, cut at ``limit``.

    The cut counts characters of the original text and says how many were left out;
    ``limit=None`` keeps everything.

    >>> printable("a\\u202eb\\x00c\\x9bd\\ud800")
    'a\\\\u202eb\\\\x00c\\\\x9bd\\\\ud800'
    >>> printable("naïve — 日本語 👍")
    'naïve — 日本語 👍'
    """
    value = text if isinstance(text, str) else str(text)
    cut = ""
    if limit is not None and len(value) > limit:
        cut = f"…[+{len(value) - limit} chars]"
        value = value[:limit]
    # isprintable() is False for every character _UNSAFE matches: skip the regex when it
    # is True, which is nearly always.
    if not value.isprintable():
        value = _UNSAFE.sub(_escape, value)
    return value + cut


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_for_terminal(value: Any, *, indent: int | None = 2) -> str:
    """JSON text that parses to exactly ``value`` and shows no raw control characters.

    Non-ASCII text stays readable; C1 controls, bidi overrides, line separators and lone
    surrogates become ``\\uXXXX`` escapes (outside strings, JSON text is plain ASCII, so
    each of them can only be inside a string, where the escape means the same character).

    >>> json_for_terminal({"model": "m\\x1b[2J\\u202e", "café": 1}, indent=None)
    '{"model": "m\\\\u001b[2J\\\\u202e", "café": 1}'
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


class PrintableLogArgs:
    """A logging filter: every text argument of a record shown with `printable`.

    The format string is the program's own; its arguments are where outside text comes
    in (a model name, a path, an error text). A record without arguments gets its message
    escaped instead. Traceback text is escaped line by line, keeping its line breaks.
    (Not a `logging.Filter` subclass, which logging accepts, so that importing this module
    does not import logging: the CLI uses `printable`.)
    """

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit

    def _clean(self, value: Any) -> Any:
        return printable(value, self.limit) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.args, dict):
                record.args = {k: self._clean(v) for k, v in record.args.items()}
            elif record.args:
                record.args = tuple(self._clean(a) for a in record.args)
            elif isinstance(record.msg, str):
                # A trailing line break is layout (uvicorn ends some messages with one).
                record.msg = printable(record.msg.rstrip("\r\n"), self.limit)
            if record.exc_info and not record.exc_text:
                import logging

                trace = logging.Formatter().formatException(record.exc_info)
                record.exc_text = "\n".join(printable(line, 2000) for line in trace.splitlines())
        except Exception:  # a filter must never lose a log line
            pass
        return True

    @classmethod
    def install(cls, *names: str) -> None:
        """Add the filter to these loggers, once each (records they create get escaped)."""
        import logging

        for name in names:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())
