"""serve's HTTP protocol: writes made in one turn of the event loop leave together, and
the app hears of a lost connection at once (with a watch on ``receive`` as the fallback
under other servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from dsollama.serve.connection import DISCONNECT_NOTICE
from dsollama.serve.slow_clients import guarded_protocol
from dsollama.serve.streaming import Exchange, run_until_disconnect

pytestmark = pytest.mark.anyio

REQUEST = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"


class Transport(asyncio.Transport):
    """Records every write a protocol makes (each would be one ``send`` on a socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.written = asyncio.Event()
        self.ended = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))
        self.written.set()

    def close(self) -> None:
        self.closed = True
        self.ended.set()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 11435), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _connect(app: Any) -> tuple[Any, Transport]:
    config = uvicorn.Config(app, lifespan="off", log_level="warning")
    protocol_class = guarded_protocol()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _read_body(receive: Any) -> None:
    while (await receive()).get("more_body"):
        pass


async def test_a_whole_answer_leaves_in_one_write() -> None:
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})
        answered.set()

    protocol, transport = _connect(app)
    protocol.data_received(REQUEST)
    await answered.wait()
    await asyncio.sleep(0)  # the turn the gathered writes leave in
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b'{"ok":true}'


async def test_parts_ready_together_leave_together_and_later_ones_follow() -> None:
    step = asyncio.Event()
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"a\n", b"b\n"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await step.wait()  # the next part is not ready yet: what came goes out now
        await send({"type": "http.response.body", "body": b"c\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        done.set()

    protocol, transport = _connect(app)
    protocol.data_received(REQUEST)
    await transport.written.wait()
    assert len(transport.writes) == 1
    assert transport.writes[0].endswith(b"2\r\na\n\r\n2\r\nb\n\r\n")
    step.set()
    await done.wait()
    await asyncio.sleep(0)
    assert transport.writes[1:] == [b"2\r\nc\n\r\n0\r\n\r\n"]


async def test_closing_sends_what_was_gathered_first() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        headers = [(b"connection", b"close"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    protocol, transport = _connect(app)
    protocol.data_received(REQUEST)
    await transport.ended.wait()
    assert b"".join(transport.writes).endswith(b"\r\n\r\nok")


async def test_the_app_hears_of_a_lost_connection_at_once() -> None:
    registered = asyncio.Event()
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await _read_body(receive)
        notice = scope["extensions"][DISCONNECT_NOTICE]
        notice(lambda: heard.append("first"))
        forget = notice(lambda: heard.append("taken back"))
        forget()
        registered.set()

    protocol, _ = _connect(app)
    protocol.data_received(REQUEST)
    await registered.wait()
    protocol.connection_lost(None)
    assert heard == ["first"]
    protocol.notice_disconnect(lambda: heard.append("late"))  # already lost: at once
    assert heard == ["first", "late"]


async def _never() -> None:
    await asyncio.Event().wait()


async def test_an_answer_is_cancelled_when_its_client_leaves_under_any_server() -> None:
    # With the server's notice ...
    callbacks: list[Any] = []
    registered = asyncio.Event()

    def notice(callback: Any) -> Any:
        callbacks.append(callback)
        registered.set()
        return lambda: None

    exchange = Exchange(send=None)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(run_until_disconnect(_never, _never(), exchange, notice))
    await registered.wait()
    callbacks[0]()
    assert await waiting is False
    assert exchange.gone
    # ... and without it, from the http.disconnect message.
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    exchange = Exchange(send=None)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(run_until_disconnect(receive, _never(), exchange))
    await asyncio.sleep(0)
    left.set()
    assert await waiting is False
    assert exchange.gone


async def test_work_that_ends_or_fails_is_reported_with_either_watch() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def ends() -> None:
        return None

    for notice in (None, lambda cb: print):
        assert await run_until_disconnect(_never, ends(), Exchange(None), notice) is True  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="boom"):
            await run_until_disconnect(_never, fails(), Exchange(None), notice)  # type: ignore[arg-type]
