"""Deadlines around one awaited operation of a shared store.

`bounded` is a plain deadline. `bounded_while_silent` is the one a store's operations use:
it gives up after ``seconds`` only if the store has also been *silent* that long. Under a
burst of calls one process may keep hundreds of operations in flight, and its own event
loop, not the store, makes each of them late; while replies keep arriving the store is
answering, so the operation keeps waiting (an outer bound still caps it). A stalled or
dead store answers nothing, and the operation fails after ``seconds`` as with a plain
deadline.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["bounded", "bounded_while_silent"]

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def bounded(call: Awaitable[T], seconds: float) -> T:
        """``await call``, or `TimeoutError` after ``seconds``."""
        # asyncio.timeout cancels the call in place: no extra task per operation.
        async with asyncio.timeout(seconds):
            return await call

else:  # pragma: no cover - Python 3.10

    async def bounded(call: Awaitable[T], seconds: float) -> T:
        """``await call``, or `TimeoutError` after ``seconds``."""
        return await asyncio.wait_for(call, seconds)


async def bounded_while_silent(
    call: Awaitable[T], seconds: float, last_heard: Callable[[], float]
) -> T:
    """``await call``; `TimeoutError` once ``seconds`` have passed both since it started
    and since ``last_heard()`` (a ``loop.time()`` at which the store last answered) while
    this process was paying attention."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    expired = False
    # What asyncio.timeout does: cancel in place, then turn our own cancellation (and only
    # ours) into TimeoutError.
    cancelling = 0
    if sys.version_info >= (3, 11):
        cancelling = task.cancelling()
    # A callback that runs this much later than asked means the loop was busy (a burst)
    # or the process was not scheduled: answers may be waiting unread, so the silence
    # proves nothing about the store.
    slack = max(seconds / 10, 0.002)
    start = loop.time()
    handle: asyncio.Handle | None = None

    def due() -> float:
        return max(start, last_heard()) + seconds

    def check(asked_at: float) -> None:
        nonlocal handle, start
        now = loop.time()
        if now < due():
            handle = loop.call_at(due(), check, due())  # it answered meanwhile
        elif now - asked_at > slack:
            start = now
            handle = loop.call_at(due(), check, due())
        else:
            # Answers already read in this loop iteration are handled after this
            # callback: look once more, right after them.
            handle = loop.call_soon(confirm, now)

    def confirm(asked_at: float) -> None:
        nonlocal handle, start, expired
        now = loop.time()
        if now < due():
            handle = loop.call_at(due(), check, due())
        elif now - asked_at > slack:
            start = now
            handle = loop.call_at(due(), check, due())
        else:
            expired = True
            task.cancel()

    handle = loop.call_at(due(), check, due())
    try:
        return await call
    except asyncio.CancelledError:
        ours = expired
        if sys.version_info >= (3, 11) and expired:
            ours = task.uncancel() <= cancelling
        if ours:
            raise TimeoutError from None
        raise
    finally:
        if handle is not None:
            handle.cancel()
