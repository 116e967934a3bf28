"""A fixed set of generation slots with a FIFO queue in front: how vLLM and llama-server batch.

vLLM runs up to ``--max-num-seqs`` requests in one continuous batch, as long as their
KV cache fits; the rest wait in arrival order (its ``num_requests_waiting``). llama-server
has ``--parallel`` slots; a task that finds none free is deferred (its
``requests_deferred``) and runs when one frees up, oldest first. Both are this pool: a
request takes a slot (and its tokens of KV cache) when it is at the head of the queue and
both are free, and holds them until its answer ends.

The pool lives on the double's event loop; its counts are read from test threads, which
can also block until the pool reaches a state (`wait_for`) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SlotPool"]


@dataclass(eq=False)
class _Waiter:
    tokens: int
    future: asyncio.Future[int]


class SlotPool:
    """``size`` slots and ``token_capacity`` tokens of KV cache, handed out first come, first served."""

    def __init__(self, size: int, token_capacity: float = math.inf) -> None:
        self._size = max(size, 1)
        self._capacity = token_capacity
        self._busy: dict[int, int] = {}
        "slot id -> tokens it holds"
        self._queue: deque[_Waiter] = deque()
        self._changed = threading.Condition()

    # -- what tests and metrics read ------------------------------------------------------

    @property
    def size(self) -> int:
        return self._size

    @property
    def running(self) -> int:
        """Requests holding a slot."""
        return len(self._busy)

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return len(self._queue)

    @property
    def tokens_held(self) -> int:
        """KV-cache tokens held by running requests."""
        return sum(self._busy.values())

    def busy_slots(self) -> set[int]:
        with self._changed:
            return set(self._busy)

    def wait_for(self, predicate: Callable[[SlotPool], bool], timeout: float) -> bool:
        """Block (a test thread) until ``predicate(pool)`` holds; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    # -- what requests do (on the loop) -----------------------------------------------------

    async def acquire(self, tokens: int = 0) -> int:
        """A slot id, once this request is at the head of the queue and a slot and its
        tokens are free. A request that is cancelled while queued leaves the queue."""
        if not self._queue and self._fits(tokens):
            return self._take(tokens)
        waiter = _Waiter(tokens, asyncio.get_running_loop().create_future())
        with self._changed:
            self._queue.append(waiter)
            self._changed.notify_all()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            future = waiter.future
            if future.done() and not future.cancelled():
                self.release(future.result())  # handed a slot as its client left
            else:
                with self._changed:
                    if waiter in self._queue:
                        self._queue.remove(waiter)
                    self._changed.notify_all()
                self._admit()  # a big request leaving may unblock smaller ones behind it
            raise

    def release(self, slot: int) -> None:
        """The request on ``slot`` ended: the slot goes to the head of the queue."""
        with self._changed:
            self._busy.pop(slot, None)
            self._changed.notify_all()
        self._admit()

    def resize(self, size: int, token_capacity: float | None = None) -> None:
        """New limits (a setting changed): more room lets queued requests in at once."""
        self._size = max(size, 1)
        if token_capacity is not None:
            self._capacity = token_capacity
        self._admit()

    # -- internals ------------------------------------------------------------------------

    def _fits(self, tokens: int) -> bool:
        if len(self._busy) >= self._size:
            return False
        # An idle pool always admits: a request larger than the cache was refused at the
        # door (the double checks it against the context), never left to wait for ever.
        return not self._busy or self.tokens_held + tokens <= self._capacity

    def _take(self, tokens: int, *, dequeue: bool = False) -> int:
        # One locked step, so a test never sees a request both queued and running.
        with self._changed:
            slot = next(i for i in range(len(self._busy) + 1) if i not in self._busy)
            self._busy[slot] = tokens
            if dequeue:
                self._queue.popleft()
            self._changed.notify_all()
        return slot

    def _admit(self) -> None:
        # Strict FIFO: the head waits for room even when a smaller request behind it would
        # fit (vLLM's scheduler stops at the first request it cannot schedule).
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # cancelled while queued
                with self._changed:
                    self._queue.popleft()
                    self._changed.notify_all()
                continue
            if not self._fits(head.tokens):
                return
            head.future.set_result(self._take(head.tokens, dequeue=True))
