"""`printable` and friends: outside text shown on a terminal or in a log without acting on it."""

from __future__ import annotations

import doctest
import io
import json
import logging

import pytest

import dsollama._text_safety
from dsollama._provision import ProgressEvent
from dsollama._text_safety import PrintableLogArgs, json_for_terminal, printable
from dsollama.cli._render import PlainRenderer

HOSTILE = [
    ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # OSC: retitles the terminal
    ("\x1b[2J", "\\x1b[2J"),  # clear screen
    ("\x9b2J", "\\x9b2J"),  # C1 CSI
    ("a\r\nb", "a\\r\\nb"),  # forged log line
    ("\x00\x7f", "\\x00\\x7f"),
    ("\u202eevil\u202c", "\\u202eevil\\u202c"),  # bidi override
    ("\u2066x\u2069\u200f", "\\u2066x\\u2069\\u200f"),
    ("line\u2028sep", "line\\u2028sep"),
    ("\ud800", "\\ud800"),  # lone surrogate: unprintable as UTF-8
]


def test_docstring_examples() -> None:
    result = doctest.testmod(dsollama._text_safety, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(("raw", "shown"), HOSTILE)
def test_control_bidi_and_surrogate_characters_are_escaped(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    printable(raw).encode("utf-8")  # always writable


def test_ordinary_text_is_unchanged_and_long_text_is_cut_with_a_marker() -> None:
    text = "deepseek-r1:8b — naïve 日本語 👨‍👩‍👧 tab-free"
    assert printable(text) == text
    assert printable("x" * 1000) == "x" * 300 + "…[+700 chars]"
    assert printable("ab", limit=None) == "ab"
    assert printable(42) == "42"


def test_json_for_terminal_parses_back_to_the_same_value() -> None:
    value = {"model": "".join(raw for raw, _ in HOSTILE), "n": [1, 2.5, None]}
    text = json_for_terminal(value, indent=None)
    for raw, _ in HOSTILE:
        for char in raw:
            if not char.isprintable():
                assert char not in text, repr(char)
    assert json.loads(text) == value


def test_the_log_filter_escapes_arguments_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PrintableLogArgs(limit=50))
    logger = logging.getLogger("tests.text_safety")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("chat %s -> %s", "m\r\nWARNING forged", "x" * 80)
        logger.warning("%(name)s", {"name": "\x1b[2J"})
        logger.warning("no args \x1b[2J")
        try:
            raise ValueError("bad \x1b]0;t\x07")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "chat m\\r\\nWARNING forged -> " + "x" * 50 + "…[+30 chars]"
    assert lines[1] == "\\x1b[2J"
    assert lines[2] == "no args \\x1b[2J"
    assert "ValueError: bad \\x1b]0;t\\x07" in lines
    assert "\x1b" not in stream.getvalue()


def test_progress_lines_from_the_daemon_are_escaped() -> None:
    out, err = io.StringIO(), io.StringIO()
    renderer = PlainRenderer(out, err)
    renderer.handle(ProgressEvent(kind="status", model="m\x1b[2J", message="pulling \x1b]0;x\x07"))
    renderer.handle(ProgressEvent(kind="warning", model="m", message="careful\r\nFAKE"))
    assert out.getvalue() == "m\\x1b[2J: pulling \\x1b]0;x\\x07\n"
    assert err.getvalue() == "warning: careful\\r\\nFAKE\n"
