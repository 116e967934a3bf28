"""A real `dsollama serve` (uvicorn on 127.0.0.1, port 0) in a thread, in front of the doubles.

Used by the tests/test_serve_*.py files. The listening socket is bound before the server
thread starts, so clients can connect at once: their connections wait in the backlog
until the app has started (no waiting loop needed).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

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
    **overrides: Any,
) -> Iterator[Served]:
    """Serve in front of ``stack``'s doubles with its fast settings (plus ``overrides``)."""
    settings = load_settings(**stack.settings(**overrides))
    kwargs: dict[str, Any] = {"token": token, "sinks": sinks}
    if max_body is not None:
        kwargs["max_body"] = max_body
    app = create_app(settings=settings, **kwargs)
    sock = bind("127.0.0.1", 0)
    server = make_server(app, grace=grace, log_level="warning")
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
