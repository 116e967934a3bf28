"""Several clients (processes, serve replicas) share one view of a route's queue via Redis.

Each client here has its own store connection, as separate processes would; what one has
in flight on a one-slot daemon keeps the other from queueing silently behind it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import dsollama

from .conftest import USER, Stack
from .redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def _hold_the_slot(client: dsollama.AsyncClient) -> tuple[asyncio.Task[str], asyncio.Event]:
    """A streamed answer that has its first token and keeps the daemon's one slot."""
    first = asyncio.Event()

    async def run() -> str:
        parts = []
        async for part in await client.chat("deepseek-r1:8b", USER, stream=True, think=False):
            parts.append(part.message.content or "")
            first.set()
        return "".join(parts)

    task = asyncio.ensure_future(run())
    await asyncio.wait_for(first.wait(), 10)
    return task, first


def _settings(stack: Stack, **extra: Any) -> dict[str, Any]:
    # One slot, ~1 s answers: a second request would wait out the whole budget.
    return stack.settings(first_token_timeout=0.6, local_slots=1, **extra)


async def test_a_second_client_sees_the_first_ones_request_through_redis(
    stack: Stack, redis_server: RedisServer, redis_namespace: str
) -> None:
    stack.ollama.configure(tokens_per_second=30, answer_tokens=30)
    # Patient store operations: a loaded test machine must not look like a Redis that failed.
    shared = {
        "state_url": redis_server.url,
        "state_namespace": redis_namespace,
        "state_op_timeout": 2.0,
    }
    first = dsollama.AsyncClient(**_settings(stack, **shared))
    second = dsollama.AsyncClient(**_settings(stack, **shared))
    try:
        await first.chat("deepseek-r1:8b", USER, think=False)  # learns how long an answer takes
        holder, _ = await _hold_the_slot(first)
        started = asyncio.get_running_loop().time()
        answer = await second.chat("deepseek-r1:8b", USER, think=False)
        elapsed = asyncio.get_running_loop().time() - started
        await holder
    finally:
        await first.aclose()
        await second.aclose()
    # It knew the slot was taken (by another client) and went hosted at once, instead of
    # waiting out the 0.6 s first-token budget behind the daemon's silent queue.
    assert answer.served_by.kind == "hosted"
    assert answer.attempts[0].outcome == "skipped"
    assert "1 in flight" in (answer.attempts[0].detail or "")
    assert elapsed < 0.6


async def test_without_a_shared_store_each_client_sees_only_its_own(stack: Stack) -> None:
    stack.ollama.configure(tokens_per_second=30, answer_tokens=30)
    first = dsollama.AsyncClient(**_settings(stack))
    second = dsollama.AsyncClient(**_settings(stack))
    try:
        await second.chat("deepseek-r1:8b", USER, think=False)  # knows how long one takes
        holder, _ = await _hold_the_slot(first)
        answer = await second.chat("deepseek-r1:8b", USER, think=False)
        await holder
    finally:
        await first.aclose()
        await second.aclose()
    # The baseline the shared store removes: it queued, then waited out the budget.
    assert answer.served_by.kind == "hosted"
    assert answer.attempts[0].outcome == "fallback"
    assert "no first token within" in (answer.fallback_reason or "")


async def test_a_redis_that_dies_mid_burst_fails_no_call(
    stack: Stack, private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = dsollama.AsyncClient(
        **stack.settings(state_url=private_redis.url, state_namespace="burst")
    )
    try:
        with caplog.at_level(logging.WARNING, logger="dsollama"):

            async def ask(i: int) -> str:
                if i == 10:
                    private_redis.kill()
                answer = await client.chat("deepseek-r1:8b", USER, think=False)
                return answer.message.content or ""

            answers = [await ask(i) for i in range(30)]
        assert all(answers)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once, not once per call
        assert "this process" in warnings[0].getMessage()
        assert client.router.state.store.health().using_fallback
    finally:
        await client.aclose()


async def test_closing_right_after_a_streamed_hosted_call_gives_its_slot_back(
    stack: Stack, redis_server: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    shared = {
        "state_url": redis_server.url,
        "state_namespace": redis_namespace,
        "state_op_timeout": 2.0,
    }
    client = dsollama.AsyncClient(**stack.settings(policy="hosted-first", **shared))
    with caplog.at_level(logging.WARNING, logger="dsollama"):
        async for _ in await client.chat("deepseek-r1:8b", USER, stream=True, think=False):
            pass
        route = client.router.backends[-1].route
        await client.aclose()  # before: the slot's release raced the store's closing
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    observer = dsollama.AsyncClient(**stack.settings(**shared))
    try:
        assert await observer.router.state.gate_count(route) == 0
    finally:
        await observer.aclose()
