"""One private event loop on a daemon thread, for the sync client.

`dsollama.Client` runs the async core here. A call made from a thread that already runs an
event loop (a notebook cell, an async web handler calling sync code) therefore does not
deadlock or need nest_asyncio: the work happens on this loop, the caller's thread just
waits. Ctrl-C while waiting cancels the work on the loop (and so the upstream request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["iterate", "loop", "run"]

T = TypeVar("T")

# How long a waiting caller sleeps before checking for Ctrl-C again.
_SLICE = 0.1

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use (and again after a fork)."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is not None and _thread is not None and _thread.is_alive() and _pid == os.getpid():
            return _loop
        new_loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run_forever() -> None:
            asyncio.set_event_loop(new_loop)
            new_loop.call_soon(ready.set)
            new_loop.run_forever()

        thread = threading.Thread(target=run_forever, name="dsollama-loop", daemon=True)
        thread.start()
        ready.wait()
        _loop, _thread, _pid = new_loop, thread, os.getpid()
        return new_loop


def _check_not_on_loop(target: asyncio.AbstractEventLoop) -> None:
    if threading.current_thread() is _thread:
        raise RuntimeError(
            "dsollama.Client was called from dsollama's own event loop thread; "
            "use dsollama.AsyncClient inside async code"
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the shared loop and wait for its result in this thread."""
    target = loop()
    _check_not_on_loop(target)
    future: Future[T] = asyncio.run_coroutine_threadsafe(coro, target)
    try:
        while True:
            # Wait in slices: a lock wait without a timeout is not woken by Ctrl-C, so
            # the interrupt would only land once the answer was complete.
            try:
                return future.result(timeout=_SLICE)
            except concurrent.futures.TimeoutError:
                continue
    except BaseException:
        # KeyboardInterrupt (or any interruption of the wait): cancel the work upstream.
        future.cancel()
        raise


_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def iterate(agen_factory: Coroutine[Any, Any, AsyncIterator[T]]) -> Iterator[T]:
    """Turn an awaitable returning an async iterator into a plain iterator.

    A pump task on the shared loop moves items into a thread-safe queue; the returned
    generator reads them. Closing the generator (or Ctrl-C) cancels the pump, which
    cancels the upstream request.
    """
    target = loop()
    _check_not_on_loop(target)
    items: queue.SimpleQueue[object] = queue.SimpleQueue()

    async def pump() -> None:
        try:
            agen = await agen_factory
            async for item in agen:
                items.put(item)
        except BaseException as exc:  # delivered to the reading thread
            items.put(_Failure(exc))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            items.put(_END)

    future = asyncio.run_coroutine_threadsafe(pump(), target)
    return _reader(items, future)


def _reader(items: queue.SimpleQueue[object], future: Future[None]) -> Iterator[Any]:
    try:
        while True:
            try:
                item = items.get(timeout=_SLICE)  # in slices, so Ctrl-C lands at once
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                if isinstance(item.error, asyncio.CancelledError):
                    return
                raise item.error
            yield item
    finally:
        if not future.done():
            future.cancel()
