"""One AsyncClient across several event loops: a script with two asyncio.run() calls."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from collections.abc import Iterator

import pytest

import dsollama
from dsollama.testing import FakeOllama

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def daemon() -> Iterator[FakeOllama]:
    with FakeOllama(models=["deepseek-r1:8b"]) as fake:
        fake.preload("deepseek-r1:8b")
        yield fake


def test_a_client_serves_one_asyncio_run_after_another(daemon: FakeOllama) -> None:
    client = dsollama.AsyncClient(daemon.url, log=False)

    async def ask() -> str:
        return (await client.chat("deepseek-r1:8b", USER)).message.content or ""

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        first = asyncio.run(ask())
        second = asyncio.run(ask())  # raised "Event loop is closed" before
        streamed = asyncio.run(_stream(client))
        listed = asyncio.run(client.list())
        asyncio.run(client.aclose())
        gc.collect()  # connections of the finished loops were closed with them
    assert first
    assert first == second == streamed
    assert [m.model for m in listed.models] == ["deepseek-r1:8b"]


async def _stream(client: dsollama.AsyncClient) -> str:
    parts = [
        p.message.content or ""
        async for p in await client.chat("deepseek-r1:8b", USER, stream=True)
    ]
    return "".join(parts)


def test_two_loops_at_once_is_a_clear_error(daemon: FakeOllama) -> None:
    client = dsollama.AsyncClient(daemon.url, log=False)
    started, done = threading.Event(), threading.Event()

    async def hold() -> None:
        await client.chat("deepseek-r1:8b", USER)
        started.set()
        await asyncio.to_thread(done.wait)  # this loop keeps running meanwhile

    thread = threading.Thread(target=lambda: asyncio.run(hold()))
    thread.start()
    try:
        assert started.wait(10)
        with pytest.raises(dsollama.ConfigError, match="another running event loop") as caught:
            asyncio.run(client.chat("deepseek-r1:8b", USER))
        assert "its own AsyncClient" in (caught.value.hint or "")
    finally:
        done.set()
        thread.join(10)
