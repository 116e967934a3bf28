"""A real ``redis-server`` on a free loopback port, for the tests marked ``redis``.

No mock, no fake: the Redis store's scripts, TTLs and clock are Redis's own. One server
per test session (per xdist worker); each test gets its own key namespace, so tests share
it safely. Tests that kill or stall the server get a private one (`private_redis`).

Where the binary is missing the tests skip — except under CI (``CI`` set), where a missing
server is a broken setup and fails loudly (``.ci/run`` installs Debian's package).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run the Redis tests", pytrace=False)
        pytest.skip(message)
    return found


class RedisServer:
    """One redis-server process: no persistence, loopback only, in its own folder."""

    def __init__(self, directory: Path) -> None:
        self.binary = _binary()
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        return self.directory / "redis.sock"

    def client(self) -> Any:
        """A plain (sync) redis-py client, to inspect or steer the server from a test."""
        import redis

        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=10)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def send(self, *words: str) -> None:
        """Send one command and do not wait for its answer (DEBUG SLEEP blocks it)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(_resp(words))

    def start(self) -> None:
        """Start on the same port as before (a restart) or on a free one."""
        attempts = 1 if self.port else 5
        for _ in range(attempts):
            port = self.port or _free_port()
            log = open(self.directory / f"redis-{port}.log", "ab")  # noqa: SIM115
            command = [
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ]  # fmt: skip
            if len(str(self.unix_socket)) < 100:  # the limit of a socket's path
                command += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
            with log:
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self.port = port
            started = wait_for(lambda: self.ping() or self.process.poll() is not None)
            if started and self.process.poll() is None:
                return
            self.stop()
            self.port = 0 if attempts > 1 else port  # another worker took the port: try again
        raise RuntimeError(f"redis-server did not start; see its log in {self.directory}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: gone at once, like a machine that lost power."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


def _resp(words: tuple[str, ...]) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


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
