"""What serve's HTTP protocol does for the app besides HTTP: gathered writes, disconnect notices.

`ConnectionServices` goes before uvicorn's h11 protocol in `slow_clients`'s protocol class:

- the connection's writes made in one turn of the event loop leave together
  (`CoalescedWrites`): a whole answer in one ``send`` instead of two or three;
- each request's scope carries a ``dsollama.disconnect_notice`` extension: a function
  that registers a callback to run the moment the connection is lost (and returns the
  function that unregisters it). `streaming.run_until_disconnect` uses it to cancel an
  answer whose client left, instead of a task per request reading ``receive`` for
  ``http.disconnect``; under another server it falls back to that task.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

__all__ = ["DISCONNECT_NOTICE", "CoalescedWrites", "ConnectionServices", "Unregister"]

DISCONNECT_NOTICE = "dsollama.disconnect_notice"
"Key in ``scope['extensions']`` of the disconnect-notice registration function."

Unregister = Callable[[], None]


class CoalescedWrites:
    """A connection's transport whose writes made in one turn of the event loop leave
    together, in one ``send``.

    uvicorn writes a response's head, its body and its end separately: two or three
    system calls for a whole answer, each waking the client; and a stream's parts that
    are ready at once go out one call each. Gathering them costs at most one turn of the
    loop and changes nothing in the bytes. Closing sends what is gathered first;
    everything else is the transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _nothing() -> None:
    return None


class ConnectionServices:
    """Mixed into an ``asyncio.Protocol`` subclass of uvicorn's h11 protocol (see the module)."""

    app: Any
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gone: list[Callable[[], None]] = []
        self._lost = False
        app = self.app

        async def with_notices(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[DISCONNECT_NOTICE] = self.notice_disconnect
            await app(scope, receive, send)

        self.app = with_notices

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # type: ignore[misc]
        self._lost = True
        callbacks, self._gone = self._gone, []
        for callback in callbacks:
            callback()

    def notice_disconnect(self, callback: Callable[[], None]) -> Unregister:
        """Run ``callback`` when the connection is lost (now, if it is); returns the
        function that takes it back."""
        if self._lost:
            callback()
            return _nothing
        self._gone.append(callback)
        return functools.partial(self._forget, callback)

    def _forget(self, callback: Callable[[], None]) -> None:
        if callback in self._gone:
            self._gone.remove(callback)
