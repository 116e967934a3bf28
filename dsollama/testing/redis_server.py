"""`RedisServer`: a real, throwaway ``redis-server`` on a free loopback port.

For tests and benchmarks of shared routing state (``state_url = "redis://…"``): no fake,
so scripts, TTLs and the server clock are Redis's own. No persistence, loopback only, its
files in one folder (a temporary one unless given)::

    with RedisServer() as redis:
        client = dsollama.AsyncClient(state_url=redis.url)

Needs the ``redis-server`` binary (Debian: ``apt-get install redis-server``); without it,
`RedisServer` raises `RedisServerMissing`, which says how to install it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["RedisServer", "RedisServerMissing", "find_redis_server", "free_port"]

_SOCKET_PATH_LIMIT = 100
"Unix socket paths are limited to about 104 bytes; past that the server runs on TCP only."


class RedisServerMissing(RuntimeError):
    """The ``redis-server`` binary is not installed."""

    def __init__(self) -> None:
        super().__init__("redis-server is not installed (Debian: apt-get install redis-server)")


def find_redis_server() -> str | None:
    """Path of the ``redis-server`` binary, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found is None and os.path.exists("/usr/bin/redis-server"):
        found = "/usr/bin/redis-server"  # sbin-less PATHs of some service managers
    return found


def free_port() -> int:
    """A loopback port nothing listens on now (bound and closed again at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    # Another process starting: there is no event to wait on, only its port.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def _resp(words: tuple[str, ...]) -> bytes:
    out = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisServer:
    """One redis-server process: no persistence, loopback only, in its own folder.

    `start` picks a free port (and keeps it across a `stop`/`start`, for restart tests);
    `stop` ends it politely, `kill` at once (SIGKILL, like a machine that lost power).
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        binary: str | None = None,
        start_timeout: float = 20.0,
    ) -> None:
        found = binary or find_redis_server()
        if found is None:
            raise RedisServerMissing()
        self.binary = found
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._folder = tempfile.TemporaryDirectory(prefix="dsollama-redis-")
            directory = Path(self._folder.name)
        self.directory = directory
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_socket(self) -> Path:
        return self.directory / "redis.sock"

    def ping(self) -> bool:
        """Does it answer PING now?"""
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
            port = self.port or free_port()
            command = [
                self.binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ]  # fmt: skip
            if len(str(self.unix_socket)) < _SOCKET_PATH_LIMIT:
                command += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
            with open(self.directory / f"redis-{port}.log", "ab") as log:
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self.port = port
            if self._came_up(self.process):
                return
            self.stop()
            # Another process took the port between our look and the server's bind.
            self.port = 0 if attempts > 1 else port
        raise RuntimeError(f"redis-server did not start; see its log in {self.directory}")

    def _came_up(self, process: subprocess.Popen[bytes]) -> bool:
        """It answers PING (False when it exited first: its port was taken)."""
        _wait_for(lambda: self.ping() or process.poll() is not None, self.start_timeout)
        return process.poll() is None and self.ping()

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

    def close(self) -> None:
        """Stop it and remove its folder (when it made one)."""
        self.stop()
        if self._folder is not None:
            self._folder.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
