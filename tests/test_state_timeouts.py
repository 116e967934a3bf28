"""The deadline of a shared store's operations: a silent store fails fast; a store that is
answering, or a process too busy to read the answers, does not."""

from __future__ import annotations

import asyncio
import time

import pytest

from dsollama._state.timeouts import bounded, bounded_while_silent

pytestmark = pytest.mark.anyio

NEVER = float("-inf")


async def test_a_silent_store_times_out_after_the_deadline() -> None:
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await bounded_while_silent(asyncio.Event().wait(), 0.05, lambda: NEVER)
    assert 0.05 <= time.perf_counter() - started < 2.0


async def test_a_store_that_keeps_answering_is_waited_for() -> None:
    loop = asyncio.get_running_loop()
    heard = loop.time()
    done = asyncio.Event()

    async def answers_elsewhere() -> None:
        nonlocal heard
        while not done.is_set():
            heard = loop.time()
            await asyncio.sleep(0.005)

    async def slow_operation() -> str:
        await asyncio.sleep(0.3)  # six deadlines long, but the store is answering others
        return "ok"

    other = asyncio.create_task(answers_elsewhere())
    try:
        assert await bounded_while_silent(slow_operation(), 0.05, lambda: heard) == "ok"
    finally:
        done.set()
        await other


async def test_a_busy_loop_is_not_blamed_on_the_store() -> None:
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str] = loop.create_future()
    # The loop is stuck in other work from 5 ms to 205 ms (a burst of calls): when it comes
    # back the deadline has long passed, and the answer is only read just after.
    loop.call_later(0.005, time.sleep, 0.2)
    loop.call_later(0.21, answer.set_result, "ok")
    assert await bounded_while_silent(answer, 0.05, lambda: NEVER) == "ok"


async def test_a_cancelled_caller_stays_cancelled() -> None:
    task = asyncio.create_task(bounded_while_silent(asyncio.Event().wait(), 10.0, lambda: NEVER))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_plain_deadline() -> None:
    assert await bounded(asyncio.sleep(0, "ok"), 1.0) == "ok"
    with pytest.raises(TimeoutError):
        await bounded(asyncio.Event().wait(), 0.01)
