"""Server-sent-event framing for OpenAI-format streams, keep-alive aware.

Fed the lines of a response (as ``httpx.Response.aiter_lines()`` yields them), the
parser returns one event per meaningful line:

- `Data` — a ``data: {json}`` line (with or without the space after the colon);
- `Done` — ``data: [DONE]``, the end of the answer;
- `Comment` — a ``: keep-alive`` comment line. DeepSeek sends these while a request
  waits in its queue (ref §2.5, §4.2); they are filler, not progress, and the router
  needs to *see* them to report "hosted queued: N keep-alives, no data" — which is why
  this is written here instead of using httpx-sse, which swallows comments.

Blank lines and ``id:``/``event:``/``retry:`` fields (DeepSeek sends none, ref "Test-relevant
facts" 11) give no event. DeepSeek and the other OpenAI-format servers send each
event's JSON on one ``data:`` line, so each line is parsed as it arrives and the
answer streams without waiting for the blank line that ends the event.

A ``data:`` payload that is not a JSON object raises `ServerError` (malformed stream);
an error object (`is_in_band_error`) raises the error `classify_stream_error` gives it.
Nothing carried by a ``data:`` line is ever skipped: a skipped line may have held text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .._exceptions import ServerError, redact
from .hosted_errors import classify_stream_error, is_in_band_error

__all__ = ["Comment", "Data", "Done", "SSEEvent", "SSEParser"]


@dataclass(frozen=True, slots=True)
class Data:
    """A ``data:`` event carrying a JSON object."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done:
    """``data: [DONE]``: the server finished the stream."""


@dataclass(frozen=True, slots=True)
class Comment:
    """An SSE comment such as ``: keep-alive``; ``text`` is what follows the colon."""

    text: str


SSEEvent = Union[Data, Done, Comment]

_IGNORED_FIELDS = frozenset({"id", "event", "retry"})


class SSEParser:
    """Incremental SSE parser fed one line at a time.

    >>> p = SSEParser()
    >>> p.feed_line(": keep-alive"), p.feed_line(""), p.feed_line('data:{"a": 1}')
    (Comment(text='keep-alive'), None, Data(payload={'a': 1}))
    >>> p.feed_line("data: [DONE]"), p.keepalives_before_data
    (Done(), 1)
    """

    def __init__(self, *, route: str | None = None, secrets: Sequence[str] = ()) -> None:
        self._route = route
        self._secrets = tuple(secrets)
        self._first = True
        self.comments = 0
        "Comment lines seen in total."
        self.keepalives_before_data = 0
        "Comment lines seen before the first data event: how long the request sat queued."
        self.data_events = 0
        "Data events (JSON objects) seen."
        self.done = False
        "True once ``data: [DONE]`` arrived."

    def feed_line(self, line: str) -> SSEEvent | None:
        """Parse one line (without its line ending); None when it carries no event."""
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")  # a UTF-8 BOM may open the stream
        line = line.rstrip("\r\n")
        if not line:
            return None
        if line.startswith(":"):
            self.comments += 1
            if self.data_events == 0:
                self.keepalives_before_data += 1
            return Comment(line[1:].strip())
        name, colon, value = line.partition(":")
        if name == "data":
            return self._data(value.removeprefix(" "))
        if colon and name in _IGNORED_FIELDS:
            return None
        if line.lstrip().startswith("{"):
            # A bare JSON object where an event stream was expected: some servers
            # answer an error this way under a 200.
            return self._data(line.strip())
        # Any other field name is ignored, as the SSE specification requires.
        return None

    def feed_lines(self, lines: Iterable[str]) -> list[SSEEvent]:
        """Parse several lines; the events they carry, in order."""
        events: list[SSEEvent] = []
        for line in lines:
            event = self.feed_line(line)
            if event is not None:
                events.append(event)
        return events

    def _data(self, value: str) -> SSEEvent:
        if value.strip() == "[DONE]":
            self.done = True
            return Done()
        try:
            payload = json.loads(value)
        except ValueError:
            raise ServerError(
                f"malformed hosted stream: a data line is not JSON: {redact(value[:120], self._secrets)!r}",
                route=self._route,
            ) from None
        if not isinstance(payload, dict):
            raise ServerError(
                f"malformed hosted stream: a data line is JSON but not an object: {redact(value[:120], self._secrets)!r}",
                route=self._route,
            )
        if is_in_band_error(payload):
            raise classify_stream_error(payload, route=self._route, secrets=self._secrets)
        self.data_events += 1
        return Data(payload)
