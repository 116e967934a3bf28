"""Shared fixtures: a clean environment for every test, and anyio on asyncio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# A real redis-server for the tests marked `redis` (the state store's).
from .redis_server import private_redis, redis_namespace, redis_server  # noqa: F401

# Variables that would let a developer's own setup leak into a test.
_ISOLATED_ENV = (
    "OLLAMA_HOST",
    "OLLAMA_API_KEY",
    "OLLAMA_NUM_PARALLEL",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name in _ISOLATED_ENV or name.startswith("DSOLLAMA_"):
            monkeypatch.delenv(name, raising=False)
    # Config file and request log live in the test's own folder.
    monkeypatch.setenv("DSOLLAMA_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- a local daemon double and a hosted API double, and clients pointed at them --------

# Deadlines scaled to milliseconds so fault tests stay fast; generous enough for 2 cores
# running tests in parallel.
FAST_SETTINGS: dict[str, Any] = {
    "first_token_timeout": 0.4,
    "gap_timeout": 0.4,
    "total_timeout": 8.0,
    "connect_timeout": 1.0,
    "backoff_base": 0.01,
    "backoff_cap": 0.04,
    "breaker_cooldown": 0.25,
    "breaker_cooldown_max": 1.0,
    # The retry budget is process-wide; a big floor keeps unrelated tests from sharing it.
    "retry_budget_floor": 10_000,
    "log": False,
}


@dataclass
class Result:
    """A finished call: its final response, every chunk, and how long it took."""

    final: Any
    chunks: list[Any]
    elapsed: float

    @property
    def text(self) -> str:
        return "".join(_content(c) for c in self.chunks)

    @property
    def thinking(self) -> str:
        return "".join(_thinking(c) for c in self.chunks)

    @property
    def outcomes(self) -> list[tuple[str, str]]:
        return [(a.kind, a.outcome) for a in self.final.attempts or []]


def _content(part: Any) -> str:
    message = getattr(part, "message", None)
    return (message.content if message is not None else part.response) or ""


def _thinking(part: Any) -> str:
    message = getattr(part, "message", None)
    return (message.thinking if message is not None else part.thinking) or ""


@dataclass
class Stack:
    """FakeOllama + FakeDeepSeek, and a way to call either dsollama client at them."""

    ollama: Any
    deepseek: Any
    clients: list[Any] = field(default_factory=list)

    def settings(self, **overrides: Any) -> dict[str, Any]:
        base = {
            **FAST_SETTINGS,
            "ollama_hosts": [self.ollama.url],
            "hosted_base_url": self.deepseek.url,
            "hosted_api_key": self.deepseek.api_key,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def client(self, kind: str, **overrides: Any) -> Any:
        import dsollama

        cls = dsollama.AsyncClient if kind == "async" else dsollama.Client
        client = cls(**self.settings(**overrides))
        self.clients.append(client)
        return client

    async def call(
        self, kind: str, client: Any, op: str, *args: Any, stream: bool = False, **kwargs: Any
    ) -> Result:
        """Run chat/generate through the sync or async client; the same assertions apply."""
        started = time.perf_counter()
        if kind == "async":
            if stream:
                chunks = [
                    part async for part in await getattr(client, op)(*args, stream=True, **kwargs)
                ]
            else:
                chunks = [await getattr(client, op)(*args, **kwargs)]
        else:

            def run() -> list[Any]:
                if stream:
                    return list(getattr(client, op)(*args, stream=True, **kwargs))
                return [getattr(client, op)(*args, **kwargs)]

            chunks = await asyncio.to_thread(run)
        return Result(chunks[-1], chunks, time.perf_counter() - started)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """Both doubles, started; every client made through it is closed on the test's loop."""
    from dsollama.testing import FakeDeepSeek, FakeOllama

    with (
        FakeOllama(models=["deepseek-r1:8b", "deepseek-coder:6.7b"]) as ollama,
        FakeDeepSeek() as deepseek,
    ):
        ollama.preload("deepseek-r1:8b", "deepseek-coder:6.7b")  # a daemon that has been running
        s = Stack(ollama, deepseek)
        try:
            yield s
        finally:
            ollama.release()
            deepseek.release()
            for client in s.clients:
                if hasattr(client, "aclose"):
                    await client.aclose()
                else:
                    await asyncio.to_thread(client.close)


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["whole", "stream"])
def stream(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


USER = [{"role": "user", "content": "Why run DeepSeek locally?"}]
