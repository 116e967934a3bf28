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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
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
        return _in_slices(future.result, concurrent.futures.TimeoutError)
    except BaseException:
        # KeyboardInterrupt (or any interruption of the wait): cancel the work upstream.
        future.cancel()
        raise


def _in_slices(wait: Callable[[float], T], timed_out: type[Exception]) -> T:
    """``wait(_SLICE)`` until it returns, so Ctrl-C lands within a slice.

    A lock wait without a timeout is not woken by `_thread.interrupt_main` or by a SIGINT
    delivered to another thread, so the interrupt would only land with the answer.

    Keep this loop in its own function, called inside the ``try`` that cancels: on
    CPython 3.11 and 3.12, when a loop is the first statement of a ``try``, a
    KeyboardInterrupt raised at the jump back to its top skips that ``try``'s handlers
    (python/cpython#108214). Inline, the interrupt landed but never cancelled the
    upstream request, and the next call queued silently behind it.
    """
    while True:
        try:
            return wait(_SLICE)
        except timed_out:
            continue


_END = object()


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def iterate(agen_factory: Coroutine[Any, Any, AsyncIterator[T]]) -> Iterator[T]:
    """Turn an awaitable returning an async iterator into a plain iterator.

    A pump task on the shared loop moves items into a thread-safe queue; the returned
    iterator reads them. Closing the iterator, dropping it (even before its first item)
    or Ctrl-C while it waits cancels the pump, which cancels the upstream request.
    """
    target = loop()
    _check_not_on_loop(target)
    items: queue.SimpleQueue[object] = queue.SimpleQueue()
    taken = threading.Event()

    async def pump() -> None:
        try:
            agen = await agen_factory
            first = True
            async for item in agen:
                items.put(item)
                if first:
                    first = False
                    _hand_over(taken)
        except BaseException as exc:  # delivered to the reading thread
            items.put(_Failure(exc))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            items.put(_END)

    return _Stream(items, asyncio.run_coroutine_threadsafe(pump(), target), taken)


_HAND_OVER_WAIT = 0.002
"At most this long (seconds) the loop waits, once per stream, for the reader's first item."


def _hand_over(taken: threading.Event) -> None:
    """Let the reading thread take the GIL now, to show the first item at once.

    The thread woken by ``put`` needs the GIL, which this loop keeps while it has work:
    when the rest of an answer arrives back to back, the first item would reach the
    caller only after a switch interval (5 ms) or the whole answer. Yielding the GIL
    (``sleep(0)``) is not enough: the woken thread is rarely running yet, and the loop
    takes the GIL straight back. Waiting on the reader's signal, capped, blocks this
    thread until the reader has its item (about 0.1 ms), once per stream: for every item,
    the hand-overs would cost more than the waits they save.
    """
    taken.wait(_HAND_OVER_WAIT)


class _Stream(Iterator[T]):
    """The iterator `iterate` returns: the pump's items, read in slices.

    A class rather than a generator because a generator that never started runs no
    `finally` when it is closed or collected: a stream the caller made but did not read
    would keep its upstream request, and with it the daemon's only slot, busy to the end.
    """

    __slots__ = ("_future", "_items", "_open", "_taken")

    def __init__(
        self, items: queue.SimpleQueue[object], future: Future[None], taken: threading.Event
    ) -> None:
        self._items = items
        self._future = future
        self._open = True
        self._taken = taken

    def __iter__(self) -> _Stream[T]:
        return self

    def __next__(self) -> T:
        if not self._open:
            raise StopIteration
        try:
            item = _in_slices(self._take, queue.Empty)
            self._taken.set()
        except BaseException:
            # Ctrl-C (or any interruption of the wait): cancel the work upstream.
            self.close()
            raise
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            if isinstance(item.error, asyncio.CancelledError):
                raise StopIteration
            raise item.error
        return item  # type: ignore[return-value]

    def _take(self, timeout: float) -> object:
        return self._items.get(timeout=timeout)

    def close(self) -> None:
        """Stop reading and cancel the upstream request if it is still running."""
        self._open = False
        self._future.cancel()  # a no-op once the pump has finished

    def __del__(self) -> None:
        self.close()
