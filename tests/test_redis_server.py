"""`dsollama.testing.redis_server`: a real, throwaway redis-server for tests and benchmarks."""

from __future__ import annotations

import pytest

from dsollama.testing import redis_server
from dsollama.testing.redis_server import RedisServer, RedisServerMissing

# _binary: skips where redis-server is missing, fails under CI (like every Redis test).
from .redis_server import _binary

pytestmark = pytest.mark.redis


def test_it_serves_on_loopback_and_leaves_nothing_behind() -> None:
    with RedisServer(binary=_binary()) as server:
        folder = server.directory
        assert server.ping()
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert folder.is_dir()
        process = server.process
        assert process is not None
    assert process.poll() is not None  # stopped
    assert not folder.exists()  # the folder it made is gone
    assert not server.ping()


def test_a_restart_keeps_the_port() -> None:
    with RedisServer(binary=_binary()) as server:
        port = server.port
        server.kill()
        assert not server.ping()
        server.start()
        assert server.port == port
        assert server.ping()


def test_without_the_binary_it_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_server, "find_redis_server", lambda: None)
    with pytest.raises(RedisServerMissing, match=r"apt-get install redis-server"):
        RedisServer()
