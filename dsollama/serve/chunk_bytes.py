"""The bytes of a streamed part, built from its fields: the per-chunk hot path.

A streamed answer is mostly parts that carry a little text and nothing else. Writing
each through pydantic (``model_dump_json``) or ``json.dumps`` of a fresh dict costs more
than everything else serve does per chunk, so the common shapes are written here from
the fields directly, byte for byte what those would write (tests/test_serve_chunks.py
compares them on generated text). Anything else — tool calls, images, log
probabilities, counters, a restart — returns None and the caller takes the general way.

>>> string('say "hi"\\n')
'"say \\\\"hi\\\\"\\\\n"'
"""

from __future__ import annotations

import itertools
import operator
from json.encoder import encode_basestring
from typing import Any

__all__ = ["ChatPartWriter", "GeneratePartWriter", "string"]

string = encode_basestring
"A JSON string, UTF-8 text unescaped (``ensure_ascii=False``), as pydantic writes it."

_NONES = itertools.repeat(None)


def _unset(fields: dict[str, Any], names: tuple[str, ...]) -> bool:
    """Are all ``names`` None in ``fields``? (One pass in C: this runs for every chunk.)"""
    return all(map(operator.is_, map(fields.get, names), _NONES))


def _head(fields: dict[str, Any]) -> str | None:
    """``"model":…,"created_at":…,"done":…`` for the ones set, or None for odd types."""
    out = []
    for name in ("model", "created_at"):
        value = fields.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            out.append(f'"{name}":{string(value)}')
    done = fields.get("done")
    if done is not None:
        if type(done) is not bool:
            return None
        out.append('"done":true' if done else '"done":false')
    return ",".join(out)


def _texts(fields: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """``"name":"text"`` for the ones set, joined; None if one is not a string."""
    out = []
    for name in names:
        value = fields.get(name)
        if value is not None:
            if type(value) is not str:
                return None
            out.append(f'"{name}":{string(value)}')
    return ",".join(out)


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: let the general way report it
        return None


class _PartWriter:
    """Writes the parts of one kind. A plain part leaves every declared field unset but
    those written here and those excluded; which those are is learnt once per class."""

    written: frozenset[str] = frozenset()

    def __init__(self, exclude: frozenset[str]) -> None:
        self.exclude = exclude
        self._classes: dict[type, tuple[frozenset[str], tuple[str, ...], bool]] = {}

    def plain(self, model: Any, written: frozenset[str], exclude: frozenset[str]) -> bool:
        """Is every field of ``model`` but ``written`` and ``exclude`` None?"""
        cls = type(model)
        known = self._classes.get(cls)
        if known is None:
            allowed = written | exclude
            fields = {n: f for n, f in cls.model_fields.items() if n not in allowed}
            # A field pydantic has not seen set holds its default: None for these, or
            # the set of set fields proves nothing and the values are looked at.
            defaults_none = all(
                f.default is None and f.default_factory is None for f in fields.values()
            )
            known = self._classes[cls] = (allowed, tuple(fields), defaults_none)
        allowed, others, defaults_none = known
        if defaults_none and model.__pydantic_fields_set__ <= allowed:
            return True
        return _unset(model.__dict__, others)


_MESSAGE = frozenset({"role", "content", "thinking"})
_NOTHING: frozenset[str] = frozenset()


class ChatPartWriter(_PartWriter):
    """A chat part as ``part.model_dump_json(exclude_none=True, exclude=exclude)`` writes
    it, when it is a plain text part; else None. ``exclude``: dsollama's fields, which
    only the final line carries."""

    written = frozenset({"model", "created_at", "done", "message"})

    def __call__(self, part: Any) -> bytes | None:
        fields = part.__dict__
        message = fields.get("message")
        inner = getattr(message, "__dict__", None)
        if inner is None or not hasattr(message, "__pydantic_fields_set__"):
            return None
        if not self.plain(part, self.written, self.exclude):
            return None
        if not self.plain(message, _MESSAGE, _NOTHING):
            return None
        model, created, done = fields.get("model"), fields.get("created_at"), fields.get("done")
        role, content = inner.get("role"), inner.get("content")
        if (
            type(model) is str
            and type(created) is str
            and type(done) is bool
            and type(role) is str
            and type(content) is str
            and inner.get("thinking") is None
        ):  # the usual part, in one step
            flag = "true" if done else "false"
            return _utf8(
                f'{{"model":{string(model)},"created_at":{string(created)},"done":{flag},'
                f'"message":{{"role":{string(role)},"content":{string(content)}}}}}'
            )
        head = _head(fields)
        texts = _texts(inner, ("role", "content", "thinking"))
        if head is None or texts is None:
            return None
        return _utf8("{" + ",".join(filter(None, (head, f'"message":{{{texts}}}'))) + "}")


class GeneratePartWriter(_PartWriter):
    """`ChatPartWriter` for a generate part (``response`` and ``thinking`` at the top)."""

    written = frozenset({"model", "created_at", "done", "response", "thinking"})

    def __call__(self, part: Any) -> bytes | None:
        fields = part.__dict__
        if not self.plain(part, self.written, self.exclude):
            return None
        head = _head(fields)
        texts = _texts(fields, ("response", "thinking"))
        if head is None or texts is None:
            return None
        return _utf8("{" + ",".join(filter(None, (head, texts))) + "}")
