"""A small HTTP/1.1 server on loopback, for the test doubles.

The doubles must reproduce how real servers misbehave at the byte level: reset a
connection before the status line, stop mid-stream without the chunked terminator, stall
with the socket open, trickle keep-alive bytes. Frameworks hide exactly those details, so
this is a deliberately small server on asyncio's protocol API:

- runs its own event loop on a daemon thread, so sync tests (whose client blocks the main
  thread) and async tests use it alike;
- HTTP/1.1 keep-alive, Content-Length and chunked request bodies, chunked streaming
  responses with flow control;
- a client that disconnects cancels its handler (so a double frees the slot it held);
- every request is recorded for assertions;
- `refuse_connections()` closes the listening socket (clients get ECONNREFUSED, as with a
  dead daemon) and drops open connections; `accept_connections()` reopens the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "AbortConnection",
    "HTTPServer",
    "RecordedRequest",
    "Request",
    "Response",
    "StreamResponse",
    "TruncateStream",
]

T = TypeVar("T")

_MAX_HEADER_BYTES = 64 * 1024
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    499: "Client Closed Request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class AbortConnection(Exception):
    """Raise from a handler or a stream to reset the connection (no response, or a cut one)."""


class TruncateStream(Exception):
    """Raise inside a stream to close the connection without the chunked terminator."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    "Header names in lower case."
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError on bad JSON)."""
        return json.loads(self.body)


@dataclass(frozen=True)
class RecordedRequest:
    """What reached the server, for assertions in tests."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    "time.monotonic() when the request was complete."

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(
        cls, payload: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status=status, body=body, headers=headers or {})

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status=status, body=text.encode(), content_type="text/plain; charset=utf-8")


@dataclass
class StreamResponse:
    """A chunked response; each item of ``chunks`` goes out as it is produced."""

    chunks: AsyncIterator[bytes]
    status: int = 200
    content_type: str = "application/x-ndjson"
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]


class _Connection(asyncio.Protocol):
    def __init__(self, server: HTTPServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._task: asyncio.Task[None] | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._closed = False
        self._data_event = asyncio.Event()

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._connections.add(self)
        self._task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._data_event.set()

    def eof_received(self) -> bool | None:
        # The client half-closed: treat as gone (cancels a handler waiting on a slot).
        self._close_now()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._connections.discard(self)
        self._can_write.set()
        self._data_event.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- request loop -----------------------------------------------------------------

    async def _read_until(self, marker: bytes, limit: int) -> bytes | None:
        while True:
            index = self._buffer.find(marker)
            if index >= 0:
                chunk = bytes(self._buffer[: index + len(marker)])
                del self._buffer[: index + len(marker)]
                return chunk
            if len(self._buffer) > limit or self._closed:
                return None
            self._data_event.clear()
            await self._data_event.wait()

    async def _read_exact(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if self._closed:
                return None
            self._data_event.clear()
            await self._data_event.wait()
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    async def _read_chunked_body(self) -> bytes | None:
        body = bytearray()
        while True:
            line = await self._read_until(b"\r\n", 1024)
            if line is None:
                return None
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, ended by an empty line.
                while True:
                    trailer = await self._read_until(b"\r\n", _MAX_HEADER_BYTES)
                    if trailer is None or trailer == b"\r\n":
                        return bytes(body)
            data = await self._read_exact(size + 2)
            if data is None:
                return None
            body += data[:-2]

    async def _read_request(self) -> Request | None:
        head = await self._read_until(b"\r\n\r\n", _MAX_HEADER_BYTES)
        if head is None:
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, target, _version = lines[0].split(" ", 2)
        except ValueError:
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked_body()
        else:
            length = int(headers.get("content-length", "0") or "0")
            body = await self._read_exact(length) if length else b""
        if body is None:
            return None
        split = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(split.query))
        return Request(method.upper(), urllib.parse.unquote(split.path), query, headers, body)

    async def _serve(self) -> None:
        try:
            while not self._closed:
                request = await self._read_request()
                if request is None:
                    break
                self._server._record(request)
                keep_alive = request.headers.get("connection", "").lower() != "close"
                try:
                    response = await self._server._handler(request)
                except AbortConnection:
                    self._abort()
                    return
                except Exception as exc:  # a bug in a double must not hang the client
                    response = Response.text(f"double failed: {type(exc).__name__}: {exc}", 500)
                if isinstance(response, StreamResponse):
                    if not await self._write_stream(response, head_only=request.method == "HEAD"):
                        return
                else:
                    self._write_response(response, head_only=request.method == "HEAD")
                if not keep_alive:
                    self._close_now()
                    return
        except asyncio.CancelledError:
            pass
        finally:
            # The read loop ended (EOF, unparsable request, or cancelled): close our side.
            if not self._closed:
                self._close_now()

    # -- writing ----------------------------------------------------------------------

    def _head(
        self, status: int, content_type: str | None, headers: dict[str, str], extra: dict[str, str]
    ) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        merged: dict[str, str] = {"Date": email.utils.formatdate(usegmt=True)}
        if content_type is not None:
            merged["Content-Type"] = content_type
        merged.update(extra)
        merged.update(headers)
        lines += [f"{k}: {v}" for k, v in merged.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write_response(self, response: Response, *, head_only: bool) -> None:
        if self._transport is None or self._closed:
            return
        head = self._head(
            response.status,
            response.content_type if response.body or response.status >= 400 else None,
            response.headers,
            {"Content-Length": str(len(response.body))},
        )
        self._transport.write(head if head_only else head + response.body)

    async def _write_stream(self, response: StreamResponse, *, head_only: bool) -> bool:
        """Write a chunked response; False when the connection is gone or was cut."""
        if self._transport is None or self._closed:
            # Close the iterator even though it never ran, so a double can free what it
            # holds for this request (a concurrency slot) when the client left early.
            await _aclose(response.chunks)
            return False
        transport = self._transport
        transport.write(
            self._head(
                response.status,
                response.content_type,
                response.headers,
                {"Transfer-Encoding": "chunked"},
            )
        )
        if head_only:
            await _aclose(response.chunks)
            transport.write(b"0\r\n\r\n")
            return True
        chunks = response.chunks
        try:
            async for chunk in chunks:
                if self._gone():
                    return False
                if chunk:
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if not self._can_write.is_set():
                    await self._can_write.wait()
        except AbortConnection:
            self._abort()
            return False
        except TruncateStream:
            self._close_now()
            return False
        finally:
            await _aclose(chunks)
        if self._gone():
            return False
        transport.write(b"0\r\n\r\n")
        return True

    def _gone(self) -> bool:
        # A method, not the attribute, so type checkers don't assume it is unchanged across awaits.
        return self._closed

    def _abort(self) -> None:
        if self._transport is not None and not self._closed:
            sock = self._transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close with RST, like a crashed server, not a polite FIN.
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
            self._transport.abort()

    def _close_now(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


class HTTPServer:
    """An HTTP/1.1 server on its own event-loop thread (see the module docstring).

    Use as ``with HTTPServer(handler) as srv:`` or ``async with ...``; ``srv.url`` is the
    base URL. ``requests`` lists every request received, in order.
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._aserver: asyncio.base_events.Server | None = None
        self._lock = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the server is not running; call start() first")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> HTTPServer:
        if self.running:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(
            target=run, name=f"dsollama-double-{self.port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> HTTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> HTTPServer:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._aserver = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._aserver.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._aserver is not None:
            self._aserver.close()
        for conn in list(self._connections):
            if conn._transport is not None:
                conn._transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- faults that live at the socket level -----------------------------------------

    def refuse_connections(self, *, drop_existing: bool = True) -> None:
        """Stop listening (new connections are refused) and, by default, drop open ones."""

        async def close() -> None:
            if self._aserver is not None:
                self._aserver.close()
                self._aserver = None
            if drop_existing:
                for conn in list(self._connections):
                    conn._abort()

        self.call(close())

    def accept_connections(self) -> None:
        """Listen again on the same port after `refuse_connections()`."""
        if self._aserver is None:
            self.call(self._listen())

    @property
    def accepting(self) -> bool:
        return self._aserver is not None

    # -- helpers for doubles and tests ------------------------------------------------

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop from another thread and return its result."""
        if self._loop is not None and threading.current_thread() is self._thread:
            raise RuntimeError("call() from the server thread would deadlock; await instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    dict(request.headers),
                    request.body,
                    time.monotonic(),
                )
            )

    def recorded(self, path: str | None = None, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those for one path (prefix ``*`` allowed) or method."""
        with self._lock:
            items = list(self.requests)
        if path is not None:
            if path.endswith("*"):
                items = [r for r in items if r.path.startswith(path[:-1])]
            else:
                items = [r for r in items if r.path == path]
        if method is not None:
            items = [r for r in items if r.method == method.upper()]
        return items

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()
