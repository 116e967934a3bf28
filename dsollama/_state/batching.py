"""Many tasks' script calls, sent to Redis in pipelines.

Under a burst (hundreds of calls in flight in one process) one round trip per operation
costs more in the client than in Redis: redis-py spends far more time per command than
the server does. So past a few operations in flight, the Redis store queues them here and
a few sender tasks send the queue in pipelines — one round trip and one parse loop for
many operations. Each script still runs atomically on the server; only the trip is
shared. Calls from one task stay in order (it awaits each before the next).

The senders are tasks of their own, not the callers: a caller that is cancelled (its
chat call was) cannot take the rest of a batch down with it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .timeouts import bounded_while_silent

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["Batcher"]


@dataclass(eq=False)
class _Call:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[Any]
    future: asyncio.Future[Any]


class Batcher:
    """A queue of script calls and the tasks that send it (see the module docstring)."""

    def __init__(
        self,
        redis: Redis,
        connections: asyncio.Semaphore,
        *,
        timeout: float,
        heard: Callable[[], float],
        on_answer: Callable[[], None],
        max_batch: int = 128,
        max_senders: int = 4,
    ) -> None:
        self._redis = redis
        self._connections = connections
        self._timeout = timeout
        self._heard = heard
        self._on_answer = on_answer
        self._max_batch = max_batch
        self._max_senders = max_senders
        self._queue: deque[_Call] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        self._idle = 0
        "Senders between batches, about to look at the queue again."

    def submit(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Queue one call; the returned future has its result (cancel it to drop it)."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        self._queue.append(call)
        if self._idle == 0 and len(self._senders) < self._max_senders:
            self._idle += 1  # counts from now: later calls in this loop turn wait for it
            task = loop.create_task(self._send())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return call.future

    async def _send(self) -> None:
        try:
            while self._queue:
                batch: list[_Call] = []
                while self._queue and len(batch) < self._max_batch:
                    call = self._queue.popleft()
                    if not call.future.done():  # its caller gave up: never sent
                        batch.append(call)
                if not batch:
                    continue
                self._idle -= 1
                try:
                    await self._send_batch(batch)
                finally:
                    self._idle += 1
        finally:
            self._idle -= 1

    async def _send_batch(self, batch: list[_Call]) -> None:
        try:
            async with self._connections:
                results = await bounded_while_silent(
                    self._pipeline(batch), self._timeout, self._heard
                )
        except Exception as exc:
            # Redis failed: so does everything waiting for it (the store then falls back).
            failed = batch + list(self._queue)
            self._queue.clear()
            for call in failed:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        self._on_answer()
        for call, result in zip(batch, results, strict=True):
            if call.future.done():
                continue
            if isinstance(result, Exception):
                call.future.set_exception(result)
            else:
                call.future.set_result(result)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        from redis.exceptions import NoScriptError

        results = await self._execute(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # Redis restarted (or flushed its scripts): load them again, resend those.
            for script in {id(batch[i].script): batch[i].script for i in missing}.values():
                script.sha = await self._redis.script_load(script.script)
            again = await self._execute([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        for task in list(self._senders):
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        for call in self._queue:
            call.future.cancel()
        self._queue.clear()
