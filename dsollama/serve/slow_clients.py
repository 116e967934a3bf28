"""Bounds on how long a client may take to send its request, below the app.

uvicorn waits as long as a client likes for a request's headers and body, and the app's
token check only runs once the headers are in: a peer without the token could hold
connections open by sending a request line byte by byte. `guarded_protocol` makes
uvicorn's h11 protocol close such connections:

- **headers**: the request line and headers must arrive within ``header_timeout``
  seconds of the connection opening (or of the first byte of a next request on a
  kept-alive connection). Past it: a 408 if part of a request came, then the connection
  is closed.
- **body**: the body must arrive within ``body_timeout`` seconds of the headers. A
  streamed blob upload (gigabytes of weights) may take longer, but may not go silent for
  ``body_timeout`` while the server waits for it. Past it: a 408 in the route's dialect
  if no answer started, then the connection is closed.

Connections waiting for the app to answer, or idle between requests (uvicorn's own
keep-alive timeout), are not affected.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .connection import ConnectionServices
from .errors import CLOSE, ApiError, dialect_for, render

__all__ = ["DEFAULT_BODY_TIMEOUT", "DEFAULT_HEADER_TIMEOUT", "guarded_protocol"]

DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_BODY_TIMEOUT = 10.0
_UPLOAD_PREFIX = "/api/blobs/"
_HEADER_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 36\r\n\r\nrequest headers not received in time"
)


class _GuardedH11Protocol(ConnectionServices, H11Protocol):
    """uvicorn's h11 protocol with deadlines on receiving a request (see the module), and
    the services of `connection` (gathered writes, disconnect notices)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT

    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _upload = False

    # -- uvicorn's protocol hooks --------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(got_data=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(got_data=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    # -- deadlines ------------------------------------------------------------------------

    def _watch(self, *, got_data: bool) -> None:
        """Arm or stop the timers for what the client is sending now."""
        if self.transport.is_closing():
            return
        their = self.conn.their_state
        if their is h11.IDLE:
            self._cancel_body_timer()
            # Bytes of a next request are buffered: its headers are on the clock. (With no
            # bytes, the connection is idle and uvicorn's keep-alive timeout applies.)
            if self._header_timer is None and self.conn.trailing_data[0]:
                self._header_timer = self.loop.call_later(
                    self.header_timeout, self._headers_too_slow
                )
        elif their is h11.SEND_BODY:
            self._cancel_header_timer()
            self._upload = self.scope["method"] == "POST" and self.scope["path"].startswith(
                _UPLOAD_PREFIX
            )
            streaming = self._upload and not self.cycle.response_complete
            if streaming and got_data:
                self._cancel_body_timer()  # an upload may take long, but never stall
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)
        else:
            self._cancel_header_timer()
            self._cancel_body_timer()

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:
            # Part of a request came: say why it ends (h11 cannot answer a request it has
            # not parsed, so the response is written as is).
            self.transport.write(_HEADER_TIMEOUT_RESPONSE)
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.SEND_BODY:
            return
        cycle = self.cycle
        if self._upload and not cycle.response_complete and self.flow.read_paused:
            # We stopped reading (the app is busy with what came): not the client's stall.
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)
            return
        if not cycle.response_started:
            self._answer_timeout()
        # The app may be waiting for the rest of the body: tell it the client is gone.
        cycle.disconnected = True
        cycle.message_event.set()
        self.transport.close()

    def _answer_timeout(self) -> None:
        """A 408 in the route's dialect, written before the app answers (it never will)."""
        seconds = f"{self.body_timeout:g}"
        error = ApiError(
            408,
            f"the request body did not arrive within {seconds}s; send it at once "
            "(the server was started with --body-timeout "
            f"{seconds})",
            code="request_timeout",
        )
        status, headers, body = render(error, dialect_for(self.scope["path"]))
        fields = {**headers, **CLOSE, "content-length": str(len(body))}
        raw = [(k.encode(), v.encode()) for k, v in fields.items()]
        try:
            out = self.conn.send(
                h11.Response(
                    status_code=status,
                    headers=self.server_state.default_headers + raw,
                    reason=b"Request Timeout",
                )
            )
            out = (out or b"") + (self.conn.send(h11.Data(data=body)) or b"")
            out += self.conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:  # pragma: no cover - the state was checked above
            return
        self.transport.write(out)
        self.cycle.response_started = True
        self.cycle.response_complete = True


def guarded_protocol(
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
) -> type[H11Protocol]:
    """uvicorn's h11 protocol with these deadlines: pass it as ``uvicorn.Config(http=...)``."""
    if header_timeout <= 0 or body_timeout <= 0:
        raise ValueError("header_timeout and body_timeout must be positive numbers of seconds")
    return _make(float(header_timeout), float(body_timeout))


@functools.cache
def _make(header_timeout: float, body_timeout: float) -> type[H11Protocol]:
    namespace: dict[str, Any] = {"header_timeout": header_timeout, "body_timeout": body_timeout}
    return type("GuardedH11Protocol", (_GuardedH11Protocol,), namespace)
