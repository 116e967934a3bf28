"""The Ollama double's scheduler, shaped like ``server/sched.go``.

- A request for a loaded, compatible runner attaches to it at once (ref-counted) and then
  waits for one of the runner's parallel slots — silently, without a deadline, the way the
  llama-server semaphore makes it wait. Nothing bounds that wait (ollama/ollama#7758).
- A request that needs a load (or a reload, when a load-time option such as ``num_ctx``
  changed) goes to the pending queue. One load runs at a time; the queue holds
  ``max_queue`` more; past that the request fails at once with the 503
  ``server busy, please try again.  maximum pending requests exceeded``.
- ``max_loaded`` runners at most: loading another evicts an idle runner first (shortest
  keep-alive, then name), else waits for the busiest-to-expire one to drain.
- A runner's keep-alive timer starts when its last request finishes; ``keep_alive: 0``
  unloads at that moment; a negative one keeps it forever.
- A client that goes away while queued, loading or waiting for a slot leaves the queue or
  frees the slot (the handler's task is cancelled by the transport).

Everything here runs on the double's event-loop thread.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._ollama_models import FakeModel
from ._ollama_settings import DaemonSettings
from ._ollama_wire import LOAD_OPTIONS, ApiError

__all__ = ["MAX_QUEUE_MESSAGE", "Runner", "Scheduler"]

MAX_QUEUE_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
_LOAD_DEFAULTS: dict[str, Any] = {
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
}


def resolve_load_options(model: FakeModel, options: dict[str, Any]) -> dict[str, Any]:
    """The load-time options a runner is started with (a change forces a reload)."""
    resolved = {key: options.get(key, _LOAD_DEFAULTS.get(key)) for key in LOAD_OPTIONS}
    # Automatic num_ctx is 4096 below ~23 GiB of VRAM; always capped at the trained context.
    num_ctx = options.get("num_ctx") or 4096
    resolved["num_ctx"] = max(4, min(int(num_ctx), model.context_length))
    # num_gpu < 0 means "auto" and never forces a reload.
    if resolved["num_gpu"] is not None and resolved["num_gpu"] < 0:
        resolved["num_gpu"] = -1
    return resolved


@dataclass(eq=False)
class Runner:
    model: FakeModel
    "The model whose request loaded this runner (``/api/ps`` names it)."
    load_options: dict[str, Any]
    session: float
    "Keep-alive in seconds; ``inf`` = forever; 0 = unload when idle."
    refs: int = 0
    active: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    expires_at: float = 0.0
    "Wall-clock time the runner unloads if it stays idle."
    timer: asyncio.TimerHandle | None = None
    unloaded: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> str:
        # The daemon keys runners by weights path: a copy or a derived model shares one.
        return self.model.weights_digest

    @property
    def gone(self) -> bool:
        return self.unloaded.is_set()


@dataclass(eq=False)
class _Pending:
    model: FakeModel
    load_options: dict[str, Any]
    keep_alive: float | None
    future: asyncio.Future[Runner]


class Scheduler:
    def __init__(self, settings: DaemonSettings) -> None:
        self._settings = settings  # read at each decision: a test may change them live
        self.loaded: dict[str, Runner] = {}
        self._pending: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._task: asyncio.Task[None] | None = None

    # -- runners ----------------------------------------------------------------------

    async def acquire(
        self, model: FakeModel, options: dict[str, Any], keep_alive: float | None
    ) -> Runner:
        """A runner for ``model``, loading it if needed; raises the 503 when the queue is full."""
        load_options = resolve_load_options(model, options)
        runner = self.loaded.get(model.weights_digest)
        if runner is not None and runner.load_options == load_options:
            self._attach(runner, keep_alive)
            return runner
        loop = asyncio.get_running_loop()
        pending = _Pending(model, load_options, keep_alive, loop.create_future())
        if self._current is None:
            # The load loop takes a request out of the channel before loading, so an idle
            # scheduler never counts it against max_queue.
            self._current = pending
            self._task = loop.create_task(self._process())
        elif len(self._pending) >= max(self._settings.max_queue, 0):
            raise ApiError(503, MAX_QUEUE_MESSAGE)
        else:
            self._pending.append(pending)
        try:
            return await pending.future
        except asyncio.CancelledError:
            future = pending.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.detach(future.result())  # attached just as the client left
            elif pending in self._pending:
                self._pending.remove(pending)
            raise

    async def _process(self) -> None:
        while self._current is not None:
            pending = self._current
            try:
                await self._serve(pending)
            except Exception as exc:  # a bug must not strand the queue
                if not pending.future.done():
                    pending.future.set_exception(exc)
            self._current = self._pending.popleft() if self._pending else None

    async def _serve(self, pending: _Pending) -> None:
        key = pending.model.weights_digest
        while not pending.future.done():  # done = the client went away
            runner = self.loaded.get(key)
            victim: Runner | None
            if runner is not None:
                if runner.load_options == pending.load_options:
                    self._attach(runner, pending.keep_alive)
                    pending.future.set_result(runner)
                    return
                victim = runner
            elif len(self.loaded) >= max(self._settings.max_loaded, 1):
                victim = self._victim()
            else:
                await self._load(pending)
                return
            self.expire(victim)
            waiter: asyncio.Future[Any] = asyncio.ensure_future(victim.unloaded.wait())
            client: asyncio.Future[Any] = pending.future
            try:
                await asyncio.wait({waiter, client}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def _load(self, pending: _Pending) -> None:
        seconds = max(self._settings.load_seconds, 0.0)
        if seconds > 0:
            # The load runs with the request's context: a client that leaves aborts it.
            await asyncio.wait({pending.future}, timeout=seconds)
        if pending.future.done():
            return
        session = pending.keep_alive
        if session is None:
            session = self._settings.keep_alive_seconds
            session = math.inf if session < 0 else session
        runner = Runner(pending.model, pending.load_options, session)
        runner.expires_at = time.time() + session
        self.loaded[runner.key] = runner
        self._attach(runner, None)
        pending.future.set_result(runner)

    def _victim(self) -> Runner:
        # Shortest keep-alive first, then the weights' path (a digest: arbitrary but stable).
        ordered = sorted(self.loaded.values(), key=lambda r: (r.session, r.key))
        idle = [r for r in ordered if r.refs == 0]
        return (idle or ordered)[0]

    def _attach(self, runner: Runner, keep_alive: float | None) -> None:
        runner.refs += 1
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if keep_alive is not None:
            runner.session = keep_alive

    def detach(self, runner: Runner) -> None:
        """A request that held ``runner`` finished (or its client went away)."""
        runner.refs -= 1
        if runner.refs > 0 or runner.gone:
            return
        if runner.session <= 0:
            self._unload(runner)
            return
        runner.expires_at = time.time() + runner.session
        if math.isfinite(runner.session):
            loop = asyncio.get_running_loop()
            runner.timer = loop.call_later(runner.session, self._timer_fired, runner)

    def _timer_fired(self, runner: Runner) -> None:
        runner.timer = None
        if runner.refs == 0:
            self._unload(runner)

    def expire(self, runner: Runner) -> None:
        """Unload ``runner`` as soon as it is idle (eviction, or ``keep_alive: 0``)."""
        runner.session = 0
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        if runner.refs <= 0:
            self._unload(runner)

    def expire_model(self, model: FakeModel) -> None:
        runner = self.loaded.get(model.weights_digest)
        if runner is not None:
            self.expire(runner)

    def _unload(self, runner: Runner) -> None:
        if self.loaded.get(runner.key) is runner:
            del self.loaded[runner.key]
        if runner.timer is not None:
            runner.timer.cancel()
            runner.timer = None
        runner.unloaded.set()

    def unload_all(self) -> None:
        for runner in list(self.loaded.values()):
            self._unload(runner)

    # -- slots ------------------------------------------------------------------------

    def slots_for(self, runner: Runner) -> int:
        # Embedding-only models always run one request at a time.
        if "completion" not in runner.model.capabilities:
            return 1
        return max(int(self._settings.slots), 1)

    async def acquire_slot(self, runner: Runner) -> None:
        """Wait, silently and without a deadline, for one of the runner's parallel slots."""
        if runner.active < self.slots_for(runner) and not runner.waiters:
            runner.active += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner.waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release_slot(runner)  # handed to us as we left: pass it on
            elif future in runner.waiters:
                runner.waiters.remove(future)
            raise

    def release_slot(self, runner: Runner) -> None:
        while runner.waiters:
            future = runner.waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot moves to the next waiter
                return
        runner.active -= 1

    def slots_changed(self) -> None:
        """More slots (a setting changed): let waiters in."""
        for runner in self.loaded.values():
            while runner.waiters and runner.active < self.slots_for(runner):
                future = runner.waiters.popleft()
                if not future.done():
                    runner.active += 1
                    future.set_result(None)
