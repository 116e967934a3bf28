"""A lean HTTP/1.1 transport for a daemon on this machine, reached over plain HTTP.

dsollama streams every routed call from the daemon — that is how it sees the first token
and every gap — so it pays the HTTP client's cost once per chunk, not once per answer. For
an unpaced answer, httpcore's and h11's general machinery (connection-pool scans, one
event object and state transition per chunk, AnyIO wrappers) was most of the library's
own time (`benchmarks/profiles/`). A daemon on a loopback address over plain HTTP needs
none of what they add: no TLS, no proxy, no HTTP/2, one peer this machine runs.

`LoopbackTransport` is an `httpx.AsyncBaseTransport`, so the official client's httpx
client keeps building the request (its headers, auth, hooks and timeouts) and reading the
response; only the wire work underneath is done here, with asyncio's streams:

- keep-alive connections, the most recently used first; one whose peer has closed it is
  dropped before reuse, and a request whose reused connection closes before answering a
  single byte is sent once more on a new one;
- bodies framed by ``Content-Length``, chunked, or read to the end of the connection;
- httpx's exceptions (``ConnectError``, ``ConnectTimeout``, ``ReadError``,
  ``ReadTimeout``, ``RemoteProtocolError``…) for the same failures, and its manners (a
  failed write still reads whatever the server answered), so a failure maps to
  the same dsollama error whichever transport carried it;
- the read timeout is watched per connection by one timer (progress is a float stored
  per read), not a timer per read.

Used only where dsollama builds the transport itself and the daemon's URL is
``http://`` on a loopback address (`eligible`); a proxy from the environment still takes
its requests through httpx's own transport, as httpx routes them before any transport.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from .._hosts import is_loopback_url

__all__ = ["LoopbackTransport", "eligible"]

# Options that make httpx's own transport necessary (TLS, a proxy, HTTP/2...).
_NEEDS_HTTPX = ("verify", "cert", "proxy", "http2", "http1")
_HEAD_LIMIT = 1 << 16
"Status line and headers larger than this are refused (a daemon sends a few hundred bytes)."
_MAX_IDLE = 100
_IDLE_EXPIRY = 5.0
"Seconds an idle connection is kept: as httpx's default keep-alive expiry."


def eligible(base_url: str, transport_options: Mapping[str, Any]) -> bool:
    """Whether the daemon at ``base_url`` may be reached through `LoopbackTransport`."""
    if any(option in transport_options for option in _NEEDS_HTTPX):
        return False
    scheme = urllib.parse.urlsplit(base_url.strip()).scheme.lower()
    return scheme == "http" and is_loopback_url(base_url.strip())


class _Connection:
    __slots__ = ("idle_since", "key", "progress", "reader", "timed_out", "watch", "writer")

    def __init__(
        self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.progress = 0.0
        self.timed_out = False
        self.watch: asyncio.TimerHandle | None = None

    def usable(self, now: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < _IDLE_EXPIRY
        )

    def arm(self, timeout: float | None) -> None:
        """Watch reads from now on: the connection is cut after ``timeout`` seconds
        without progress (`ReadTimeout`)."""
        if timeout is None:
            return
        loop = asyncio.get_running_loop()
        self.progress = loop.time()

        def check() -> None:
            idle = loop.time() - self.progress
            if idle >= timeout:
                self.timed_out = True
                self.watch = None
                self.writer.transport.abort()
            else:
                self.watch = loop.call_later(timeout - idle, check)

        self.watch = loop.call_later(timeout, check)

    def disarm(self) -> None:
        if self.watch is not None:
            self.watch.cancel()
            self.watch = None

    def close(self) -> None:
        self.disarm()
        self.writer.transport.abort()


class LoopbackTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams to loopback daemons (see the module docstring).
    One event loop, like the client that owns it."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        key = (request.url.host, request.url.port or 80)
        connection, reused = self._idle_connection(key), True
        if connection is None:
            connection, reused = await self._open(key, timeouts.get("connect"), request), False
        try:
            return await self._exchange(connection, request, timeouts)
        except _NothingAnswered:
            if not reused:
                raise _disconnected(request) from None
        # The peer closed a kept-alive connection as the request went out: once more, new.
        connection = await self._open(key, timeouts.get("connect"), request)
        try:
            return await self._exchange(connection, request, timeouts)
        except _NothingAnswered:
            raise _disconnected(request) from None

    def _idle_connection(self, key: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _open(
        self, key: tuple[str, int], timeout: float | None, request: httpx.Request
    ) -> _Connection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*key, limit=_HEAD_LIMIT), timeout
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Connection(key, reader, writer)

    async def _exchange(
        self, connection: _Connection, request: httpx.Request, timeouts: Mapping[str, Any]
    ) -> httpx.Response:
        """Send ``request`` on ``connection`` and read the response's head. Whatever ends
        it early (a failure, or the call's cancellation: a first-token deadline, a hedge
        that lost) closes the connection: it may hold half a request or answer."""
        try:
            return await self._send_and_read_head(connection, request, timeouts)
        except BaseException:
            connection.close()
            raise

    async def _send_and_read_head(
        self, connection: _Connection, request: httpx.Request, timeouts: Mapping[str, Any]
    ) -> httpx.Response:
        writer = connection.writer
        try:
            writer.write(_head(request))
            try:
                writer.write(request.content)
            except httpx.RequestNotRead:
                chunked = request.headers.get("transfer-encoding", "").lower() == "chunked"
                async for part in request.stream:  # type: ignore[union-attr]
                    if part:
                        writer.write(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
                if chunked:
                    writer.write(b"0\r\n\r\n")
            await writer.drain()
        except OSError:
            # As httpx's own transport does: a server may close its side early and still
            # have answered (an error status); what it sent is read below, and a
            # connection that answered nothing is "nothing answered".
            pass
        connection.arm(timeouts.get("read"))
        try:
            head = await connection.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and not connection.timed_out:
                raise _NothingAnswered from None
            raise _read_failure(connection, request, exc) from None
        except OSError as exc:
            if not connection.timed_out:
                raise _NothingAnswered from None  # reset before a byte of the head
            raise _read_failure(connection, request, exc) from None
        except asyncio.LimitOverrunError as exc:
            raise _read_failure(connection, request, exc) from None
        status, reason, headers = _parse_head(head, request, connection)
        body = _Body(self, connection, request, status, headers)
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    def _release(self, connection: _Connection) -> None:
        connection.disarm()
        idle = self._idle.setdefault(connection.key, [])
        if self._closed or len(idle) >= _MAX_IDLE:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _NothingAnswered(Exception):
    """The connection closed before a single byte of a response."""


def _disconnected(request: httpx.Request) -> httpx.RemoteProtocolError:
    # httpcore's words for the same failure.
    return httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


def _head(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), target)]
    lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(
    head: bytes, request: httpx.Request, connection: _Connection
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    try:
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise ValueError
            headers.append((name, value.strip()))
    except ValueError:
        connection.close()
        raise httpx.RemoteProtocolError(
            f"malformed response head: {lines[0][:80]!r}", request=request
        ) from None
    return status, parts[2] if len(parts) > 2 else b"", headers


def _read_failure(connection: _Connection, request: httpx.Request, exc: BaseException) -> Exception:
    """The httpx exception httpcore would raise for a failed read."""
    connection.close()
    if connection.timed_out:
        return httpx.ReadTimeout("timed out reading the response", request=request)
    if isinstance(exc, asyncio.IncompleteReadError):
        return httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body", request=request
        )
    if isinstance(exc, (asyncio.LimitOverrunError, ValueError)):
        return httpx.RemoteProtocolError(f"malformed response: {exc}", request=request)
    return httpx.ReadError(str(exc) or type(exc).__name__, request=request)


class _Chunks:
    """Decodes a chunked body fed in pieces as they arrive (RFC 9112 §7.1).

    `feed` returns the data of every chunk completed by the bytes so far, joined; the
    chunk boundaries carry no meaning. ``ended`` once the last chunk and the trailers are
    in; ``extra`` when bytes followed them. A malformed size line or chunk raises
    ValueError, a size line or trailer section longer than `_HEAD_LIMIT` too.
    """

    __slots__ = ("_buffer", "ended", "extra")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.ended = False
        self.extra = False

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer
        buffer += data
        out = bytearray()
        at = 0
        while True:
            eol = buffer.find(b"\r\n", at)
            if eol < 0:
                if len(buffer) - at > _HEAD_LIMIT:
                    raise ValueError("chunk size line too long")
                break
            size = _chunk_size(bytes(buffer[at:eol]))
            if size == 0:
                # Trailers (none from a daemon), then an empty line: "0\r\n\r\n" at least.
                end = buffer.find(b"\r\n\r\n", eol)
                if end < 0:
                    if len(buffer) - eol > _HEAD_LIMIT:
                        raise ValueError("trailers too long")
                    break
                self.ended = True
                self.extra = end + 4 < len(buffer)
                at = end + 4
                break
            start = eol + 2
            stop = start + size
            if len(buffer) < stop + 2:
                break
            if buffer[stop : stop + 2] != b"\r\n":
                raise ValueError("a chunk does not end where its size says")
            out += buffer[start:stop]
            at = stop + 2
        del buffer[:at]
        return bytes(out)


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].rstrip(b" \t")  # chunk extensions ignored
    if _HEX.fullmatch(digits) is None:  # int() would take "0x1f", "+1" or "1_0"
        raise ValueError(f"bad chunk size line {line[:40]!r}")
    return int(digits, 16)


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class _Body(httpx.AsyncByteStream):
    """A response body, read as it arrives; the connection goes back to the pool once the
    body was read to its end (and the peer keeps it open), else it is closed."""

    def __init__(
        self,
        transport: LoopbackTransport,
        connection: _Connection,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._request = request
        self._length: int | None = None
        self._chunked = False
        self._keep_alive = True
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                try:
                    self._length = int(value)
                except ValueError:
                    self._length = None
                if self._length is not None and self._length < 0:
                    self._length = None  # nonsense: read to the end, keep nothing alive
            elif lowered == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif lowered == b"connection" and b"close" in value.lower():
                self._keep_alive = False
        if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._length, self._chunked = 0, False
        if self._length is None and not self._chunked:
            self._keep_alive = False  # read to the end of the connection
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        reader = connection.reader
        loop = asyncio.get_running_loop()
        try:
            if self._chunked:
                chunks = _Chunks()
                while not chunks.ended:
                    data = await reader.read(1 << 16)
                    if not data:
                        raise asyncio.IncompleteReadError(b"", None)
                    connection.progress = loop.time()
                    # Every chunk that came whole in this read, as one piece: a daemon
                    # sends its lines back to back, and each piece costs the layers above.
                    if body := chunks.feed(data):
                        yield body
                if chunks.extra:
                    self._keep_alive = False  # bytes past the answer: the stream is out of step
            elif self._length is not None:
                left = self._length
                while left:
                    data = await reader.read(min(left, 1 << 16))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    connection.progress = loop.time()
                    yield data
            else:
                while data := await reader.read(1 << 16):
                    connection.progress = loop.time()
                    yield data
            self._complete = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self._connection = None
            raise _read_failure(connection, self._request, exc) from None
        except BaseException:
            # Cancelled mid-body (a deadline, a caller that stopped): the rest of the
            # answer would still arrive on this connection, so it cannot be reused.
            self._connection = None
            connection.close()
            raise

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._complete and self._keep_alive:
            self._transport._release(connection)
        else:
            connection.close()
