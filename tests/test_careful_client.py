"""What a careful client does: a dead daemon costs one connect, facts are cached only from
real answers, each client has its own retry budget, and a deadline must be a deadline."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


class CountingTransport(httpx.AsyncHTTPTransport):
    """Every request a client sends through it (to a dead host: every connect attempt)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


async def test_a_dead_daemon_costs_one_connect_per_call(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    counting = CountingTransport()
    client = stack.client(kind, transport=counting, breaker_cooldown=0.0)
    for _ in range(3):  # a cooldown of 0: every call probes the daemon again
        result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        assert result.final.served_by.kind == "hosted"
    # Before: /api/ps, /api/version and the chat itself, three connects a call.
    assert len(counting.paths) == 3


async def test_the_daemons_version_is_cached_only_from_a_real_answer(
    stack: Stack, kind: str
) -> None:
    # An old daemon (reasoning inline) that is down at first: its version must not be
    # remembered as "current" from the failed attempt.
    stack.ollama.configure(version="0.8.0", think_inline=True)
    stack.ollama.refuse_connections()
    counting = CountingTransport()
    client = stack.client(kind, transport=counting, breaker_cooldown=0.0)
    await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    stack.ollama.accept_connections()
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.final.served_by.kind == "local"
    assert "<think>" not in result.text  # the inline reasoning was recognised
    assert result.thinking
    again = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert again.thinking
    # Asked of the live daemon once, and remembered from that answer (before, the failed
    # try was cached as "a current daemon" and the live one was never asked).
    assert len(stack.ollama.recorded("/api/version")) == 1


async def test_each_client_has_its_own_retry_budget(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=None, path="/api/chat"))
    tight: dict[str, Any] = {"retry_budget_floor": 1, "retry_budget_ratio": 0.0}
    first = stack.client(kind, **tight)
    second = stack.client(kind, **tight)
    one = await stack.call(kind, first, "chat", "deepseek-r1:8b", USER)
    two = await stack.call(kind, second, "chat", "deepseek-r1:8b", USER)
    # Each had its one retry: the first client's failures did not drain the second's.
    assert one.outcomes[:2] == [("local", "retry"), ("local", "fallback")]
    assert two.outcomes[:2] == [("local", "retry"), ("local", "fallback")]
    shared = {**tight, "retry_budget_shared": True, "retry_budget_ratio": 0.000123}
    third = stack.client(kind, **shared)
    fourth = stack.client(kind, **shared)
    await stack.call(kind, third, "chat", "deepseek-r1:8b", USER)
    drained = await stack.call(kind, fourth, "chat", "deepseek-r1:8b", USER)
    assert drained.outcomes[0] == ("local", "fallback")  # sharing is an explicit choice


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, "5"])
@pytest.mark.parametrize("name", ["first_token_timeout", "gap_timeout", "total_timeout"])
async def test_a_deadline_that_is_not_one_is_a_config_error_naming_it(
    stack: Stack, kind: str, name: str, value: Any
) -> None:
    client = stack.client(kind)
    with pytest.raises(dsollama.ConfigError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, **{name: value})
    assert name in str(caught.value)
    assert stack.ollama.recorded("/api/chat") == []


async def test_none_means_the_default_deadline(stack: Stack, kind: str) -> None:
    client = stack.client(kind)
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, first_token_timeout=None, gap_timeout=None
    )
    assert result.final.served_by.kind == "local"
