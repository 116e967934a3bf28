"""A real ``redis-server`` on a free loopback port, for the tests marked ``redis``.

No mock, no fake: the Redis store's scripts, TTLs and clock are Redis's own. One server
per test session (per xdist worker); each test gets its own key namespace, so tests share
it safely. Tests that kill or stall the server get a private one (`private_redis`).

Where the binary is missing the tests skip — except under CI (``CI`` set), where a missing
server is a broken setup and fails loudly (``.ci/run`` installs Debian's package). The
server itself is `dsollama.testing.redis_server`'s, which the benchmarks use too.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dsollama.testing.redis_server import RedisServer as _RedisServer
from dsollama.testing.redis_server import RedisServerMissing, find_redis_server

__all__ = [
    "FrozenClock",
    "RedisServer",
    "eventually",
    "private_redis",
    "redis_namespace",
    "redis_server",
    "wait_for",
]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.005) -> bool:
    """Poll ``condition`` (another process's state: no event to wait on) until it holds or
    ``timeout`` passes; True if it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, every: float = 0.005
) -> float | None:
    """Await ``condition`` until it holds; the seconds that took, or None on timeout."""
    started = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        await asyncio.sleep(every)


class FrozenClock:
    """Time that moves only when a test says: given to a `MemoryStore` and to a
    `RedisStore` (``clock=``) alike, so both stores can be held to the same numbers."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _binary() -> str:
    found = find_redis_server()
    if found is None:
        message = str(RedisServerMissing())
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the Redis tests", pytrace=False)
        pytest.skip(message)
    return found


class RedisServer(_RedisServer):
    """`dsollama.testing.redis_server.RedisServer` for a test: skips (fails under CI)
    where the binary is missing, and hands out a client to inspect or steer it."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, binary=_binary())

    def client(self) -> Any:
        """A plain (sync) redis-py client, to inspect or steer the server from a test."""
        import redis

        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (each xdist worker has its own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, which may kill, stall or restart it."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_namespace() -> str:
    """Key namespace of one test: tests share a server, never keys."""
    return f"t{uuid.uuid4().hex[:12]}"
