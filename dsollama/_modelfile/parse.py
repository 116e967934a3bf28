"""Reading Modelfile text: the lexer, the parser and the file loader.

`parse_modelfile` follows Ollama's ``parser/parser.go`` line by line — instructions,
``#`` comments, bare, ``"…"`` and ``\"\"\"…\"\"\"`` values (`_scan_value`, which the
renderer also uses to check its quoting) — and builds a `Modelfile`, raising a
`ModelfileError` that names the line, the column and the fix; `load_modelfile` reads
and decodes a file first (UTF-8, or UTF-16 with a byte-order mark).
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._exceptions import ModelfileError
from .model import _ROLES, Message, Modelfile, ParamValue, Role
from .parameters import (
    _COMMENT_HINT,
    DEPRECATED_PARAMETERS,
    PARAMETER_TYPES,
    _ParameterError,
    _unknown_parameter_hint,
    _value_hint,
    coerce_parameter,
)

__all__ = ["load_modelfile", "parse_modelfile"]

_INSTRUCTIONS = (
    "from",
    "parameter",
    "template",
    "system",
    "adapter",
    "license",
    "message",
    "requires",
    "renderer",
    "parser",
    "draft",
)

# Go's unicode.IsSpace: what strings.TrimSpace removes around a value. Python's
# str.strip() differs (it also strips U+001C..U+001F), so the set is spelled out.
_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_BLANKS = " \t"  # what separates an instruction from its arguments
_BREAK = re.compile(r"[\r\n]")  # like Ollama: CR, LF and CRLF all end a line
_LINE_START = re.compile(r"\r\n|\r|\n")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")
# golang.org/x/mod/semver, which Ollama uses: shorthand 1 and 1.2 are valid; prerelease and
# build only after a full MAJOR.MINOR.PATCH; no leading zeros in numbers.
_NUM = r"(?:0|[1-9][0-9]*)"
_PRE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(
    rf"v?{_NUM}(?:\.{_NUM}(?:\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)?)?"
)


# ------------------------------------------------------------------------------ parsing


@dataclass
class _Builder:
    """What the instructions seen so far add up to, plus where each one was."""

    from_: str | None = None
    from_line: int = 0
    draft_line: int = 0
    parameters: dict[str, ParamValue] = field(default_factory=dict)
    param_lines: dict[str, int] = field(default_factory=dict)
    stops: list[str] = field(default_factory=list)
    single: dict[str, str] = field(default_factory=dict)  # template, system, …
    single_lines: dict[str, int] = field(default_factory=dict)
    adapters: list[str] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Parser:
    def __init__(self, text: str, path: str | None) -> None:
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.path = path
        self.starts = [0] + [m.end() for m in _LINE_START.finditer(self.text)]
        self.out = _Builder()

    # positions -------------------------------------------------------------------

    def where(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, pos)
        return line, pos - self.starts[line - 1] + 1

    def error(self, pos: int, problem: str, hint: str | None = None) -> ModelfileError:
        line, column = self.where(pos)
        return ModelfileError(problem, path=self.path, line=line, column=column, hint=hint)

    def warn(self, pos: int, message: str) -> None:
        line, column = self.where(pos)
        self.out.warnings.append(f"{self.path or '<modelfile>'}:{line}:{column}: {message}")

    def line_end(self, pos: int) -> int:
        found = _BREAK.search(self.text, pos)
        return found.start() if found else len(self.text)

    def skip(self, pos: int, end: int, chars: str = _BLANKS) -> int:
        while pos < end and self.text[pos] in chars:
            pos += 1
        return pos

    def token_end(self, pos: int, end: int) -> int:
        while pos < end and self.text[pos] not in _BLANKS:
            pos += 1
        return pos

    # the loop --------------------------------------------------------------------

    def parse(self) -> Modelfile:
        pos, n = 0, len(self.text)
        while pos < n:
            end = self.line_end(pos)
            start = self.skip(pos, end)
            if start < end and self.text[start] != "#":
                end = self.instruction(start, end)
            pos = end + (2 if self.text.startswith("\r\n", end) else 1)
        return self.finish()

    def instruction(self, start: int, end: int) -> int:
        """Parse the instruction at ``start``; return the line end where its value ends."""
        word_end = self.token_end(start, end)
        word = self.text[start:word_end]
        keyword = word.lower()
        if keyword not in _INSTRUCTIONS:
            raise self.error(start, f"unknown instruction {word!r}", _instruction_hint(word))
        pos = self.skip(word_end, end)
        label, arg, arg_pos = keyword.upper(), "", pos
        if keyword in ("parameter", "message"):
            arg_end = self.token_end(pos, end)
            arg = self.text[pos:arg_end]
            if not arg:
                raise self.error(pos, f"{label} needs a {_ARG_NAME[keyword]} and a value")
            self.check_argument(keyword, arg, pos)
            label = f"{label} {arg}"
            pos = self.skip(arg_end, end)
        pos = self.skip(pos, end, _INLINE_SPACE)
        if pos == end:
            raise self.error(pos, f"{label} needs a value", _missing_value_hint(keyword))
        value, value_end = self.value(pos, keyword, label)
        _Instruction(self, keyword, start, arg, arg_pos, pos).apply(value)
        return value_end

    def check_argument(self, keyword: str, arg: str, pos: int) -> None:
        if keyword == "message" and arg not in _ROLES:
            hint = 'the role must be "system", "user" or "assistant"'
            if arg.lower() in _ROLES:
                hint = f"roles are lower case: write MESSAGE {arg.lower()}"
            elif arg.lower() == "tool":
                hint = "tool messages cannot be preset in a Modelfile; " + hint
            raise self.error(pos, f"invalid message role {arg!r}", hint)
        if keyword == "parameter" and not _PARAM_NAME.fullmatch(arg):
            hint = "parameter names use letters, digits and _ only"
            if "=" in arg or ":" in arg:
                name = re.split("[=:]", arg, maxsplit=1)[0]
                hint = f"separate the name from the value with a space: PARAMETER {name} <value>"
            raise self.error(pos, f"invalid parameter name {arg!r}", hint)

    def value(self, pos: int, keyword: str, label: str) -> tuple[str, int]:
        scanned = _scan_value(self.text, pos)
        delim = _delimiter(self.text, pos)
        if scanned is None:
            raise self.error(
                pos,
                f"unterminated {delim} in the {label} value: the quote opened here never closes",
                self.early_close_hint(pos, delim)
                or f"end the value with {delim} as the last thing on a line",
            )
        value, value_end = scanned
        if delim and self.line_end(pos) < value_end:
            hint = self.early_close_hint(pos, delim)
            if hint:
                line, _ = self.where(value_end)
                self.warn(pos, f"the {label} value runs on to line {line}: {hint}")
        elif not delim and keyword in _NAME_LIKE and re.search(r"[ \t]#", value):
            self.warn(pos, f"the {label} value {value!r} contains ' #': {_COMMENT_HINT}")
        return value, value_end

    def early_close_hint(self, pos: int, delim: str) -> str | None:
        """Explain a quote that looks closed on its first line but is not."""
        first_end = self.line_end(pos)
        close = self.text.find(delim, pos + len(delim), first_end)
        if close == -1:
            return None
        line, column = self.where(close)
        return (
            f"the {delim} at line {line}, column {column} does not close the value because "
            "text follows it; a closing quote must be the last thing on its line"
        )

    def finish(self) -> Modelfile:
        out = self.out
        if out.from_ is None:
            raise ModelfileError(
                "no FROM line",
                path=self.path,
                hint="add a FROM line naming the base model or a local file, "
                "e.g. FROM deepseek-r1:8b",
            )
        single = out.single
        if out.stops:
            out.parameters["stop"] = tuple(out.stops)
        return Modelfile(
            from_=out.from_,
            parameters=out.parameters,
            template=single.get("template"),
            system=single.get("system"),
            adapters=tuple(out.adapters),
            licenses=tuple(out.licenses),
            messages=tuple(out.messages),
            requires=single.get("requires"),
            renderer=single.get("renderer"),
            parser=single.get("parser"),
            draft=single.get("draft"),
            path=self.path,
            warnings=tuple(out.warnings),
        )


@dataclass
class _Instruction:
    """One instruction being applied: where it is, for errors and warnings."""

    parser: _Parser
    keyword: str
    start: int  # the keyword
    arg: str  # PARAMETER name or MESSAGE role
    arg_pos: int
    pos: int  # the value

    @property
    def out(self) -> _Builder:
        return self.parser.out

    @property
    def line(self) -> int:
        return self.parser.where(self.start)[0]

    def apply(self, value: str) -> None:
        out, keyword = self.out, self.keyword
        if keyword == "from":
            self.set_from(value)
        elif keyword == "parameter":
            self.set_parameter(value)
        elif keyword == "message":
            out.messages.append(Message(role=_ROLE_BY_NAME[self.arg], content=value))
        elif keyword == "adapter":
            if out.adapters:
                self.parser.warn(self.start, "several ADAPTER lines: Ollama applies only one")
            out.adapters.append(value)
        elif keyword == "license":
            out.licenses.append(value)
        elif keyword == "requires":
            self.set_single(self.checked_version(value))
        elif keyword == "draft":
            self.set_draft(value)
        else:  # template, system, renderer, parser: the last one wins, as in Ollama
            self.set_single(value)

    def set_from(self, value: str) -> None:
        # Several FROM lines are refused. A Modelfile describes one model, and Ollama's
        # handling of several is a trap: with model names the last one silently wins;
        # with a name and a path the name wins on the server and the files are uploaded
        # for nothing. Files that belong together go in one folder: FROM the folder.
        out = self.out
        if out.from_ is not None:
            raise self.parser.error(
                self.start,
                f"a second FROM (the first is on line {out.from_line})",
                "keep one FROM; to import a model split into several files, "
                "put them in one folder and write FROM <folder>",
            )
        if not value:
            raise self.parser.error(
                self.pos, "FROM needs a model name or a path", _missing_value_hint("from")
            )
        out.from_, out.from_line = value, self.line

    def set_draft(self, value: str) -> None:
        # One DRAFT, for the same reason as one FROM: Ollama merges the files of several.
        if self.out.draft_line:
            raise self.parser.error(
                self.start,
                f"a second DRAFT (the first is on line {self.out.draft_line})",
                "keep one DRAFT; put the draft model's files in one folder and name it",
            )
        self.out.draft_line = self.line
        self.out.single["draft"] = value

    def set_single(self, value: str) -> None:
        previous = self.out.single_lines.get(self.keyword)
        if previous is not None:
            self.parser.warn(
                self.start, f"{self.keyword.upper()} replaces the one on line {previous}"
            )
        self.out.single[self.keyword] = value
        self.out.single_lines[self.keyword] = self.line

    def set_parameter(self, raw: str) -> None:
        name, parser = self.arg, self.parser
        if name in DEPRECATED_PARAMETERS:
            parser.warn(
                self.arg_pos, f"parameter {name} is deprecated and was dropped (Ollama ignores it)"
            )
            return
        if name not in PARAMETER_TYPES:
            raise parser.error(
                self.arg_pos, f"unknown parameter {name!r}", _unknown_parameter_hint(name)
            )
        try:
            value = coerce_parameter(name, raw)
        except _ParameterError as exc:
            raise parser.error(self.pos, exc.problem, exc.hint) from None
        params = self.out.parameters
        if isinstance(value, tuple):  # stop: every line adds one; the tuple is built at the end
            params.setdefault(name, ())
            self.out.stops.extend(value)
            return
        if name in params:
            first = self.out.param_lines[name]
            parser.warn(
                self.arg_pos, f"{name} is set again; this value replaces the one on line {first}"
            )
        params[name] = value
        self.out.param_lines[name] = self.line

    def checked_version(self, value: str) -> str:
        if not _SEMVER.fullmatch(value):
            raise self.parser.error(
                self.pos,
                f"REQUIRES {value!r} is not a semantic version",
                _value_hint(value, "write a version such as REQUIRES 0.14.0"),
            )
        return value[1:] if value.startswith("v") else value


_ARG_NAME = {"parameter": "name", "message": "role"}
_ROLE_BY_NAME: Mapping[str, Role] = {role: role for role in _ROLES}
# Values that are names or paths: a " #" in them is almost surely a misplaced comment.
_NAME_LIKE = frozenset({"from", "adapter", "draft", "renderer", "parser", "parameter"})
_INLINE_SPACE = _SPACE.replace("\r", "").replace("\n", "")


def _instruction_hint(word: str) -> str:
    lower = word.lower()
    for keyword in _INSTRUCTIONS:
        if (
            lower.startswith(keyword)
            and len(lower) > len(keyword)
            and not lower[len(keyword)].isalpha()
        ):
            return f"put a space after {keyword.upper()}"
    close = difflib.get_close_matches(lower, _INSTRUCTIONS, n=1)
    if close:
        return f"did you mean {close[0].upper()}?"
    return (
        "a line must start with FROM, PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE, "
        "MESSAGE, REQUIRES, RENDERER, PARSER or DRAFT; comments start with #"
    )


def _missing_value_hint(keyword: str) -> str:
    if keyword == "from":
        return "name a model (FROM deepseek-r1:8b) or a GGUF file or folder (FROM ./model.gguf)"
    if keyword in ("system", "template", "license", "message"):
        return 'write "" for an empty value'
    return "write the value after the instruction, on the same line"


def _delimiter(text: str, pos: int) -> str:
    if text.startswith('"""', pos):
        return '"""'
    return '"' if text.startswith('"', pos) else ""


def _scan_value(text: str, start: int) -> tuple[str, int] | None:
    """Read the value that starts at ``text[start]`` (not a blank).

    Returns the value and the index of the line end (or end of text) where it stops, or
    None when a quote never closes. As in Ollama, a quoted value closes at the first
    line end where the text so far, less trailing white space, ends with the quote;
    a quote followed by more text on its line therefore does not close the value.
    """
    delim = _delimiter(text, start)
    if not delim:
        found = _BREAK.search(text, start)
        end = found.start() if found else len(text)
        return text[start:end].rstrip(_SPACE), end
    width, pos, last = len(delim), start, start  # last: end of the last non-blank run
    while True:
        found = _BREAK.search(text, pos)
        end = found.start() if found else len(text)
        segment = text[pos:end].rstrip(_SPACE)
        if segment:
            last = pos + len(segment)
        if last - start >= 2 * width and text.startswith(delim, last - width):
            return text[start + width : last - width], end
        if found is None:
            return None
        pos = end + 1


def parse_modelfile(text: str, *, path: str | None = None) -> Modelfile:
    """Parse Modelfile text; raise ``ModelfileError`` naming path:line:column and the fix.

    ``path`` is only used in messages and kept on the result (``Modelfile.path``), so
    relative FROM/ADAPTER paths can later be resolved against the file's folder.
    """
    return _Parser(text, path).parse()


def load_modelfile(path: str | os.PathLike[str]) -> Modelfile:
    """Read and parse a Modelfile (UTF-8, or UTF-16 with a byte-order mark)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ModelfileError(
            f"cannot read the Modelfile: {exc.strerror or exc}",
            path=name,
            hint="check the path (dsollama create takes the Modelfile with -f)",
        ) from exc
    return parse_modelfile(_decode(raw, name), path=name)


def _decode(raw: bytes, name: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")  # the BOM picks the byte order and is dropped
        except UnicodeDecodeError as exc:
            raise ModelfileError(
                f"invalid UTF-16 at byte {exc.start}", path=name, hint=_ENCODING_HINT
            ) from exc
    if b"\x00" in raw[:200]:
        raise ModelfileError(
            "the file looks like UTF-16 without a byte-order mark", path=name, hint=_ENCODING_HINT
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        body_start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        before = raw[body_start : exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
        raise ModelfileError(
            f"invalid UTF-8 (byte 0x{raw[exc.start]:02x})",
            path=name,
            line=line,
            column=column,
            hint=_ENCODING_HINT,
        ) from exc


_ENCODING_HINT = "save the Modelfile as UTF-8 (or UTF-16 with a byte-order mark)"
