"""A real `dsollama serve` (uvicorn on 127.0.0.1, port 0) in a thread, in front of the doubles.

Used by the tests/test_serve_*.py files. The listening socket is bound before the server
thread starts, so clients can connect at once: their connections wait in the backlog
until the app has started (no waiting loop needed).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import h11
import httpx

from dsollama._config import load_settings
from dsollama.serve import create_app
from dsollama.serve.server import Server, bind, make_server, url_for
from dsollama.serve.state import ServeState

from .conftest import Stack

MODEL = "deepseek-r1:8b"
USER = [{"role": "user", "content": "Why run DeepSeek locally?"}]


@dataclass
class Served:
    url: str
    server: Server
    thread: threading.Thread
    app: Any
    token: str | None = None

    @property
    def state(self) -> ServeState:
        state = self.app.state.dsollama
        assert isinstance(state, ServeState)
        return state

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the server did not stop"


@contextlib.contextmanager
def serving(
    stack: Stack,
    *,
    token: str | None = None,
    max_body: int | None = None,
    grace: int = 5,
    sinks: tuple[Any, ...] = (),
    app_options: dict[str, Any] | None = None,
    server_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> Iterator[Served]:
    """Serve in front of ``stack``'s doubles with its fast settings (plus ``overrides``).

    ``app_options`` go to `create_app` (e.g. ``allow_admin``), ``server_options`` to
    `make_server` (e.g. ``header_timeout``).
    """
    settings = load_settings(**stack.settings(**overrides))
    kwargs: dict[str, Any] = {"token": token, "sinks": sinks, **(app_options or {})}
    if max_body is not None:
        kwargs["max_body"] = max_body
    app = create_app(settings=settings, **kwargs)
    sock = bind("127.0.0.1", 0)
    server = make_server(app, grace=grace, log_level="warning", **(server_options or {}))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="dsollama-serve", daemon=True
    )
    thread.start()
    served = Served(url_for(sock), server, thread, app, token)
    try:
        yield served
    finally:
        if thread.is_alive():
            served.stop()
        sock.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll a condition the doubles expose (no event to wait on); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


async def http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One plain HTTP request (no CA bundle to load: loopback is plain HTTP)."""
    async with httpx.AsyncClient(verify=False, timeout=10) as client:
        return await client.request(method, url, **kwargs)


async def ndjson(url: str, body: dict[str, Any], **kwargs: Any) -> tuple[httpx.Response, list[Any]]:
    """POST ``body`` and read a streamed NDJSON answer: (the response, its parsed lines)."""
    async with (
        httpx.AsyncClient(verify=False, timeout=10) as client,
        client.stream("POST", url, json=body, **kwargs) as response,
    ):
        lines = [json.loads(line) async for line in response.aiter_lines() if line]
    return response, lines


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One HTTP/1.1 connection, kept: what a keep-alive client does, with nothing hidden.

    httpx would quietly open a new connection when the server closed one; this client
    says so instead (`reusable`), which is what "the connection stays usable" needs.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.conn = h11.Connection(h11.CLIENT)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> RawAnswer:
        fields = {"host": self.host, "content-length": str(len(body)), **(headers or {})}
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        out = self.conn.send(h11.Request(method=method, target=path, headers=list(fields.items())))
        out += self.conn.send(h11.Data(data=body)) if body else b""
        out += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(out)
        status, received, parts = 0, {}, []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                received = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return RawAnswer(status, received, b"".join(parts))

    @property
    def reusable(self) -> bool:
        """Both sides finished the exchange and neither asked to close."""
        return self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes ``sock``: (closed within ``seconds``?, what it sent)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received
