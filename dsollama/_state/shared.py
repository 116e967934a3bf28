"""`SharedStore`: a shared store (Redis) whose failure never fails a call.

Every operation on the shared store has a deadline: ``op_timeout`` (tens of milliseconds)
for the shared store to answer. A store that queues operations for its connections (the
Redis store, under a burst of calls from this process) applies ``op_timeout`` itself,
once an operation is under way, and fails the queued ones at once when one fails; here
the whole operation, queue included, is then bounded by ``wait_limit``: a burst through
one process is slow, not a failing Redis. The first failure or timeout switches this
process to its own view (a `MemoryStore`) with one WARNING — not one per call — and the
calls carry on. While on its own view, an operation
starts a probe of the shared store at most every ``retry_every`` seconds, in the
background (a call never waits for it); when a probe answers the process rejoins, with one
INFO line.

The local view is kept warm while the shared store is healthy: every lease taken there is
mirrored by a lease here (no limit: the shared store already decided), and what the
shared store learns (first tokens, finishes, loads, facts) is learned here too. So on the
first call after a failure this process still sees its own requests in flight and its own
estimates: it routes as a single process would, instead of as an idle one. Breakers are
not mirrored (their epochs belong to the store that granted the pass); after a switch the
local ones start closed, and a report carrying the other store's epoch is ignored as stale.

A lease goes back to the store that issued it (``Lease.store``). A shared lease finished
while the shared store is away is finished there in the background; if that fails too,
it expires there within its lease time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from . import (
    Admission,
    BreakerOutcome,
    BreakerPass,
    BreakerState,
    Estimates,
    Lease,
    LoadView,
    ServerQueue,
    StateStore,
    StoreError,
    StoreHealth,
)
from .memory import MemoryStore, check_fact_ttl
from .timeouts import bounded

__all__ = ["SharedStore"]

logger = logging.getLogger("dsollama")

T = TypeVar("T")

_PROBE_KEY = "__dsollama_probe__"
_UNLIMITED = sys.maxsize
"A mirror's gate limit: the shared store already decided."


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q))]


class SharedStore:
    """`StateStore` over a shared ``primary`` with a ``local`` fallback (module docstring)."""

    def __init__(
        self,
        primary: StateStore,
        local: StateStore | None = None,
        *,
        op_timeout: float = 0.05,
        wait_limit: float = 1.0,
        retry_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if local is None:
            local = MemoryStore(breaker=getattr(primary, "breaker_config", None))
        if local.kind == primary.kind:
            raise ValueError(
                f"the local store must be another kind than the shared one (both {local.kind!r}): "
                "leases find their way back by kind"
            )
        self.kind = primary.kind
        self.primary = primary
        self.local = local
        self.op_timeout = op_timeout
        # The bound applied here: the primary's own per-operation timeout covers the
        # network when it has one, and this one its queue for a connection too.
        self._bound = wait_limit if getattr(primary, "bounds_operations", False) else op_timeout
        self.retry_every = retry_every
        self._clock = clock
        self._using_fallback = False
        self._fell_back_at = 0.0
        self._next_probe = 0.0
        self._fallbacks = 0
        self._last_error: str | None = None
        self._latencies: deque[float] = deque(maxlen=1000)
        self._mirrors: dict[tuple[str, str, str], Lease] = {}
        "(load|gate, key, shared lease id) → the local lease that mirrors it."
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SharedStore({self.primary!r}, using_fallback={self._using_fallback})"

    @property
    def using_fallback(self) -> bool:
        return self._using_fallback

    # -- the switch -------------------------------------------------------------------------

    async def _shared(self, op: str, call: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        """(True, result) from the shared store, or (False, None) when this process is (or
        has just gone) on its own view."""
        if self._using_fallback:
            self._maybe_probe()
            return False, None
        started = time.perf_counter()
        try:
            result = await bounded(call(), self._bound)
        except Exception as exc:
            self._fall_back(op, exc)
            return False, None
        self._latencies.append(time.perf_counter() - started)
        return True, result

    def _describe(self, op: str, exc: BaseException) -> str:
        if isinstance(exc, StoreError):
            return str(exc)  # names the operation already
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return f"{op}: no answer within {self._bound * 1000:.0f} ms"
        return f"{op}: {type(exc).__name__}: {exc}"

    def _fall_back(self, op: str, exc: BaseException) -> None:
        self._last_error = self._describe(op, exc)
        if self._using_fallback:
            return
        self._using_fallback = True
        self._fallbacks += 1
        self._fell_back_at = self._clock()
        self._next_probe = self._fell_back_at + self.retry_every
        logger.warning(
            "routing state store %s failed (%s); routing continues on this process's own "
            "view until it is back",
            self._url(),
            self._last_error,
        )

    def _maybe_probe(self) -> None:
        now = self._clock()
        if now < self._next_probe:
            return
        self._next_probe = now + self.retry_every
        self._spawn(self._probe())

    async def _probe(self) -> None:
        try:
            await bounded(self.primary.fact_get(_PROBE_KEY), self._bound)
        except Exception as exc:
            self._last_error = self._describe("probe", exc)
            return
        if self._using_fallback:
            self._using_fallback = False
            logger.info(
                "routing state store %s is back: sharing routing state again (after %.1fs on "
                "this process's own view)",
                self._url(),
                self._clock() - self._fell_back_at,
            )

    def _spawn(self, call: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await bounded(call, self._bound)
            except Exception:
                pass  # the shared store is away; what it missed expires there

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _url(self) -> str:
        return self.primary.health().url or self.primary.kind

    def _is_shared(self, lease: Lease) -> bool:
        return lease.store == self.primary.kind

    # -- admission ------------------------------------------------------------------------

    async def admit(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        limit_s: float | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> Admission:
        ok, admission = await self._shared(
            "admit",
            lambda: self.primary.admit(
                key, slots=slots, priors=priors, limit_s=limit_s, cold_s=cold_s, server=server
            ),
        )
        if ok and admission is not None:
            if admission.lease is not None:
                mirror = await self.local.admit(key, slots=slots, priors=priors)
                if mirror.lease is not None:
                    self._mirrors[("load", key, admission.lease.id)] = mirror.lease
            return admission
        return await self.local.admit(
            key, slots=slots, priors=priors, limit_s=limit_s, cold_s=cold_s, server=server
        )

    async def first_token(self, lease: Lease) -> None:
        if not self._is_shared(lease):
            await self.local.first_token(lease)
            return
        mirror = self._mirrors.get(("load", lease.key, lease.id))
        if mirror is not None:
            await self.local.first_token(mirror)
        if self._using_fallback:
            self._spawn(self.primary.first_token(lease))
        else:
            await self._shared("first_token", lambda: self.primary.first_token(lease))

    async def finish(self, lease: Lease, *, ok: bool, load_s: float | None = None) -> None:
        if not self._is_shared(lease):
            await self.local.finish(lease, ok=ok, load_s=load_s)
            return
        mirror = self._mirrors.pop(("load", lease.key, lease.id), None)
        if mirror is not None:
            await self.local.finish(mirror, ok=ok, load_s=load_s)
        if self._using_fallback:
            self._spawn(self.primary.finish(lease, ok=ok, load_s=load_s))
        else:
            await self._shared("finish", lambda: self.primary.finish(lease, ok=ok, load_s=load_s))

    async def observe(self, key: str, *, load_s: float) -> None:
        await self.local.observe(key, load_s=load_s)
        await self._shared("observe", lambda: self.primary.observe(key, load_s=load_s))

    async def predict(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        lease: Lease | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> float:
        if lease is None or self._is_shared(lease):
            ok, predicted = await self._shared(
                "predict",
                lambda: self.primary.predict(
                    key, slots=slots, priors=priors, lease=lease, cold_s=cold_s, server=server
                ),
            )
            if ok and predicted is not None:
                return predicted
            if lease is not None:
                lease = self._mirrors.get(("load", key, lease.id))
        return await self.local.predict(
            key, slots=slots, priors=priors, lease=lease, cold_s=cold_s, server=server
        )

    async def view(self, key: str, *, priors: Estimates) -> LoadView:
        ok, view = await self._shared("view", lambda: self.primary.view(key, priors=priors))
        if ok and view is not None:
            return view
        return await self.local.view(key, priors=priors)

    # -- breakers ---------------------------------------------------------------------------

    async def breaker_pass(self, key: str) -> BreakerPass:
        ok, granted = await self._shared("breaker_pass", lambda: self.primary.breaker_pass(key))
        if ok and granted is not None:
            return granted
        return await self.local.breaker_pass(key)

    async def breaker_report(
        self,
        key: str,
        outcome: BreakerOutcome,
        *,
        epoch: int,
        reason: str = "",
        probe: bool = False,
        disable_s: float | None = None,
    ) -> None:
        def report(store: StateStore) -> Awaitable[None]:
            return store.breaker_report(
                key, outcome, epoch=epoch, reason=reason, probe=probe, disable_s=disable_s
            )

        ok, _ = await self._shared("breaker_report", lambda: report(self.primary))
        if not ok:
            await report(self.local)

    async def breaker_state(self, key: str) -> BreakerState:
        ok, state = await self._shared("breaker_state", lambda: self.primary.breaker_state(key))
        if ok and state is not None:
            return state
        return await self.local.breaker_state(key)

    # -- gates --------------------------------------------------------------------------------

    async def gate_take(self, key: str, *, limit: int) -> Lease | None:
        ok, lease = await self._shared(
            "gate_take", lambda: self.primary.gate_take(key, limit=limit)
        )
        if not ok:
            return await self.local.gate_take(key, limit=limit)
        if lease is not None:
            mirror = await self.local.gate_take(key, limit=_UNLIMITED)
            if mirror is not None:
                self._mirrors[("gate", key, lease.id)] = mirror
        return lease

    async def gate_release(self, lease: Lease) -> None:
        if not self._is_shared(lease):
            await self.local.gate_release(lease)
            return
        mirror = self._mirrors.pop(("gate", lease.key, lease.id), None)
        if mirror is not None:
            await self.local.gate_release(mirror)
        if self._using_fallback:
            self._spawn(self.primary.gate_release(lease))
        else:
            await self._shared("gate_release", lambda: self.primary.gate_release(lease))

    async def gate_count(self, key: str) -> int:
        ok, count = await self._shared("gate_count", lambda: self.primary.gate_count(key))
        if ok and count is not None:
            return count
        return await self.local.gate_count(key)

    # -- facts ----------------------------------------------------------------------------------

    async def fact_get(self, key: str) -> str | None:
        ok, value = await self._shared("fact_get", lambda: self.primary.fact_get(key))
        if ok:
            return value
        return await self.local.fact_get(key)

    async def fact_set(self, key: str, value: str, *, ttl_s: float) -> None:
        check_fact_ttl(ttl_s)  # bad input is the caller's error, not the store's failure
        await self.local.fact_set(key, value, ttl_s=ttl_s)
        await self._shared("fact_set", lambda: self.primary.fact_set(key, value, ttl_s=ttl_s))

    # -- lifecycle --------------------------------------------------------------------------------

    def health(self) -> StoreHealth:
        ordered = sorted(self._latencies)
        return StoreHealth(
            kind=self.kind,
            url=self.primary.health().url,
            ok=not self._using_fallback,
            using_fallback=self._using_fallback,
            last_error=self._last_error,
            latency_p50_s=_percentile(ordered, 0.5) if ordered else None,
            latency_p99_s=_percentile(ordered, 0.99) if ordered else None,
            fallbacks=self._fallbacks,
        )

    async def aclose(self) -> None:
        # Background finishes and probes are bounded: let them end rather than
        # cancel them (a finish that reaches the shared store frees its slot at once).
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.primary.aclose()
        await self.local.aclose()
