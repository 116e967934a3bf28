"""The lean transport for a loopback daemon: faithful to httpx's own, and failing the way
httpx's own fails, so every failure maps to the same dsollama error.

Most tests talk to a tiny scripted HTTP server (exact bytes, cut where the test says);
one compares the official client's answers through both transports against the Ollama
double; the fault suites elsewhere run every routed call through this transport too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import ollama
import pytest

from dsollama._backends.loopback import LoopbackTransport, _Chunks, eligible
from dsollama.testing import FakeOllama

pytestmark = pytest.mark.anyio

MODEL = "deepseek-r1:8b"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A server on 127.0.0.1 that runs ``handler(reader, writer, n)`` for its n-th
    connection; yields its URL and the count of connections accepted so far."""
    accepted = [0]

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        try:
            await handler(reader, writer, accepted[0])
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"


async def answer_ok(writer: asyncio.StreamWriter) -> None:
    writer.write(OK_HEAD + b"Content-Length: 2\r\n\r\nok")
    await writer.drain()


def client(url: str, transport: LoopbackTransport, **timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, transport=transport, timeout=httpx.Timeout(5.0, **timeout)
    )


# -- where it is used ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "expected"),
    [
        ("http://127.0.0.1:11434", {}, True),
        ("http://localhost:11434", {"limits": httpx.Limits()}, True),
        ("http://[::1]:11434", {}, True),
        ("http://127.3.2.1:11434", {}, True),  # all of 127/8 is loopback
        ("https://127.0.0.1:11434", {}, False),  # TLS: httpx's
        ("http://192.168.1.20:11434", {}, False),  # another machine: httpx's
        ("http://gpu-box:11434", {}, False),
        ("http://127.0.0.1:11434", {"verify": False}, False),
        ("http://127.0.0.1:11434", {"proxy": "http://proxy:3128"}, False),
        ("http://127.0.0.1:11434", {"http2": True}, False),
    ],
)
def test_only_plain_http_to_this_machine_without_transport_options(
    url: str, options: dict[str, object], expected: bool
) -> None:
    assert eligible(url, options) is expected


def test_the_daemon_uses_it_for_routed_calls_only_when_eligible() -> None:
    import dsollama

    def transport_of(client: dsollama.AsyncClient) -> object:
        daemon = client._router.backends[0]
        return daemon._infer_http._transport

    with FakeOllama(models=[MODEL]) as local:
        assert isinstance(transport_of(dsollama.AsyncClient(host=local.url)), LoopbackTransport)
        own = httpx.AsyncHTTPTransport()
        assert transport_of(dsollama.AsyncClient(host=local.url, transport=own)) is own
        assert not isinstance(
            transport_of(dsollama.AsyncClient(host=local.url, verify=False)), LoopbackTransport
        )


# -- faithful ------------------------------------------------------------------------------


async def test_the_official_client_reads_the_same_answers_through_it() -> None:
    with FakeOllama(models=[MODEL]) as local:
        answers = {}
        for name, transport in (
            ("httpx", httpx.AsyncHTTPTransport()),
            ("loopback", LoopbackTransport()),
        ):
            official = ollama.AsyncClient(local.url, transport=transport)
            whole = await official.chat(MODEL, [{"role": "user", "content": "hi"}])
            parts = [
                p
                async for p in await official.chat(
                    MODEL, [{"role": "user", "content": "hi"}], stream=True
                )
            ]
            listing = await official.list()
            answers[name] = (
                whole.message.content,
                [p.message.content for p in parts],
                [m.model for m in listing.models],
            )
            await official._client.aclose()
    assert answers["loopback"] == answers["httpx"]
    assert answers["loopback"][1]  # a real stream, several parts


async def test_bodies_by_length_by_chunks_and_to_the_end_of_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + b"Content-Length: 5\r\n\r\nhello")
        await read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"a", b"bc"))
        await read_request(reader)
        writer.write(OK_HEAD + b"Connection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with scripted(handler) as (url, accepted):
        transport = LoopbackTransport()
        async with client(url, transport) as http:
            assert (await http.post("/api/chat", content=b"{}")).text == "hello"
            streamed = [part async for part in _stream_bytes(http, "/api/chat")]
            assert b"".join(streamed) == b"abc"  # the chunks that came together, as one part
            assert (await http.post("/api/chat", content=b"{}")).text == "until the end"
        assert accepted[0] == 1  # kept alive across the first three


_BODY = chunked(b"first line\n", b"x" * 300, b"\xe4\xb8\xad\n")


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, len(_BODY)])
def test_chunked_bodies_decode_alike_however_the_bytes_are_split(step: int) -> None:
    chunks = _Chunks()
    data = b"".join(chunks.feed(_BODY[i : i + step]) for i in range(0, len(_BODY), step))
    assert data == b"first line\n" + b"x" * 300 + b"\xe4\xb8\xad\n"
    assert chunks.ended
    assert not chunks.extra


def test_chunked_trailers_extensions_and_bytes_past_the_end() -> None:
    chunks = _Chunks()
    assert chunks.feed(b"3;name=value\r\nabc\r\n0\r\nX-Trailer: 1\r\n") == b"abc"
    assert not chunks.ended  # the empty line after the trailers has not come
    chunks.feed(b"\r\n")
    assert chunks.ended
    assert not chunks.extra
    past = _Chunks()
    past.feed(b"1\r\na\r\n0\r\n\r\nHTTP/1.1 200 OK")
    assert past.ended
    assert past.extra


@pytest.mark.parametrize(
    "bad",
    [b"zz\r\nab\r\n", b"0x2\r\nab\r\n", b"-1\r\n", b"2\r\nabXY", b"1" * 70_000],
    ids=["not-hex", "0x-prefix", "negative", "no-crlf-after-data", "endless-size-line"],
)
def test_a_malformed_chunked_body_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        _Chunks().feed(bad)


async def test_chunks_split_across_writes_arrive_whole_and_bytes_past_the_end_are_not_reused() -> (
    None
):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n > 1:
            await answer_ok(writer)
            return
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r")
        await writer.drain()
        await asyncio.sleep(0.005)  # the size line's end in a later packet
        writer.write(b"\nhel")
        await writer.drain()
        await asyncio.sleep(0.005)
        writer.write(b"lo\r\n0\r\n\r\nstray")  # bytes no request asked for
        await writer.drain()
        # A request reusing this connection would read "stray" as its answer's head.
        await read_request(reader)
        writer.write(OK_HEAD + b"Content-Length: 5\r\n\r\nwrong")
        await writer.drain()

    async with scripted(handler) as (url, accepted):
        async with client(url, LoopbackTransport()) as http:
            assert b"".join([p async for p in _stream_bytes(http, "/")]) == b"hello"
            assert (await http.post("/", content=b"{}")).text == "ok"
            assert accepted[0] == 2  # the connection with stray bytes was closed


async def _stream_bytes(http: httpx.AsyncClient, path: str) -> AsyncIterator[bytes]:
    async with http.stream("POST", path, content=b"{}") as response:
        async for part in response.aiter_raw():
            yield part


async def test_a_connection_read_to_the_end_is_reused_one_left_early_is_not() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"x", b"y"))
            await writer.drain()

    async with scripted(handler) as (url, accepted):
        async with client(url, LoopbackTransport()) as http:
            for _ in range(3):
                assert b"".join([p async for p in _stream_bytes(http, "/")]) == b"xy"
            assert accepted[0] == 1
            async with http.stream("POST", "/", content=b"{}") as response:
                async for _ in response.aiter_raw():
                    break  # the caller stops after the first part
            await http.post("/", content=b"{}")
            assert accepted[0] == 2  # the half-read connection was closed, not reused


async def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await answer_ok(writer)
        # ...then the server drops the idle connection (a restart, an idle timeout).

    async with scripted(handler) as (url, accepted):
        transport = LoopbackTransport()
        async with client(url, transport) as http:
            assert (await http.post("/", content=b"{}")).text == "ok"
            [kept] = transport._idle[next(iter(transport._idle))]
            # The server's close reaches the kept connection (nothing else is sent on it).
            assert await asyncio.wait_for(kept.reader.read(), 5) == b""
            assert (await http.post("/", content=b"{}")).text == "ok"
            assert accepted[0] == 2


@pytest.mark.parametrize("close", ["fin", "reset"])
async def test_a_reused_connection_closed_as_the_request_goes_out_is_retried_once(
    close: str,
) -> None:
    # The close has not arrived when the request is sent: nothing is answered on it (a
    # daemon restarting, or killed, between two calls).
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        await answer_ok(writer)
        if n == 1:
            await read_request(reader)  # the second request arrives, and is not answered
            if close == "reset":
                writer.transport.abort()
            return

    async with scripted(handler) as (url, accepted):
        async with client(url, LoopbackTransport()) as http:
            assert (await http.post("/", content=b"{}")).text == "ok"
            assert (await http.post("/", content=b"{}")).text == "ok"
            assert accepted[0] == 2


# -- failing as httpx's transport fails ----------------------------------------------------


async def test_nothing_listening_is_a_connect_error() -> None:
    async with scripted(read_request) as (url, _):
        pass  # closed: the port is free again
    async with client(url, LoopbackTransport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("/", content=b"{}")


async def test_a_fresh_connection_closed_without_an_answer_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)

    async with scripted(handler) as (url, accepted):
        async with client(url, LoopbackTransport()) as http:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await http.post("/", content=b"{}")
        assert accepted[0] == 1  # not retried: it was not a kept-alive connection


async def test_an_answer_cut_mid_body_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab")
        await writer.drain()

    async with scripted(handler) as (url, _):
        async with client(url, LoopbackTransport()) as http:
            got: list[bytes] = []
            with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
                async for part in _stream_bytes(http, "/"):
                    got.append(part)
            assert got == [b"hello"]


async def test_a_reset_mid_body_is_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # RST

    async with scripted(handler) as (url, _):
        async with client(url, LoopbackTransport()) as http:
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                async for _ in _stream_bytes(http, "/"):
                    pass


async def test_a_garbled_response_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with scripted(handler) as (url, _):
        async with client(url, LoopbackTransport()) as http:
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await http.post("/", content=b"{}")


async def test_silence_past_the_read_timeout_is_a_read_timeout() -> None:
    stop = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await stop.wait()  # then nothing: a stalled daemon

    async with scripted(handler) as (url, _):
        async with client(url, LoopbackTransport(), read=0.1) as http:
            got: list[bytes] = []
            with pytest.raises(httpx.ReadTimeout):
                async for part in _stream_bytes(http, "/"):
                    got.append(part)
            assert got == [b"hello"]
        stop.set()


async def test_a_call_cancelled_while_waiting_closes_its_connection() -> None:
    requested = asyncio.Event()
    stop = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            if n == 1:
                requested.set()
                await stop.wait()  # never answers: the caller gives up (a deadline)
                return
            await answer_ok(writer)

    async with scripted(handler) as (url, accepted):
        async with client(url, LoopbackTransport()) as http:
            waiting = asyncio.ensure_future(http.post("/", content=b"{}"))
            await requested.wait()
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The next call does not inherit the abandoned connection and its late answer.
            assert (await http.post("/", content=b"{}")).text == "ok"
            assert accepted[0] == 2
        stop.set()
