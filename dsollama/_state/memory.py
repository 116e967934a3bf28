"""`MemoryStore`: this process's routing state, in memory — the default and the reference.

No I/O: every method is a few dictionary operations. The methods are ``async`` only to
share the `StateStore` interface; none of them awaits, so on one event loop each runs
atomically. The router calls them from its event loop (the sync client's is one private
thread); one lock guards the state anyway, so a store shared by clients on different
loops stays consistent (uncontended, it costs a fraction of a microsecond).

Leases here have no TTL: a process that dies takes its memory with it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .._bounded import make_room
from . import (
    Admission,
    BreakerConfig,
    BreakerOutcome,
    BreakerPass,
    BreakerState,
    Estimates,
    Lease,
    LoadView,
    ServerQueue,
    StoreHealth,
)
from .breakers import BreakerRecord, breaker_pass, breaker_report, breaker_state
from .queue import LOAD_MIN_S, QueueInput, ewma, extra_from_server, first_token_in

__all__ = ["MemoryStore", "check_fact_ttl"]

Clock = Callable[[], float]


@dataclass
class _Entry:
    started: float
    learn_prompt: bool
    "It did not queue behind a full set of slots, so its wait is prompt time."
    first_token_at: float | None = None


@dataclass
class _Estimate:
    value: float = 0.0
    samples: int = 0

    def get(self, prior: float) -> float:
        return self.value if self.samples else prior

    def add(self, sample: float) -> None:
        self.value = ewma(self.value, self.samples, sample)
        self.samples += 1


@dataclass
class _Load:
    leases: dict[str, _Entry] = field(default_factory=dict)
    "In admission order (dicts keep insertion order)."
    prompt: _Estimate = field(default_factory=_Estimate)
    generation: _Estimate = field(default_factory=_Estimate)
    load: _Estimate = field(default_factory=_Estimate)

    def estimates(self, priors: Estimates) -> Estimates:
        return Estimates(
            prompt_s=self.prompt.get(priors.prompt_s),
            generation_s=self.generation.get(priors.generation_s),
            load_s=self.load.get(priors.load_s),
            samples=self.generation.samples,
            load_samples=self.load.samples,
        )


def _idle(load: _Load) -> bool:
    # Its estimates are forgotten with it: the priors hold until it is learned again.
    return not load.leases


def _closed(record: BreakerRecord) -> bool:
    return not record.opened and record.failures == 0


class MemoryStore:
    """Leases, estimates, breakers, gates and facts of this process (see the module doc)."""

    kind = "memory"

    def __init__(self, breaker: BreakerConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.breaker_config = breaker or BreakerConfig()
        self._clock = clock
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loads: dict[str, _Load] = {}
        self._breakers: dict[str, BreakerRecord] = {}
        self._gates: dict[str, dict[str, float]] = {}
        self._facts: dict[str, tuple[str, float]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(keys={len(self._loads)}, breakers={len(self._breakers)})"

    # -- admission ------------------------------------------------------------------------

    def _queue(
        self,
        load: _Load,
        now: float,
        slots: int,
        priors: Estimates,
        server: ServerQueue | None,
    ) -> QueueInput:
        running: list[float] = []
        waiting: list[float] = []
        for entry in load.leases.values():
            if entry.first_token_at is not None:
                running.append(now - entry.first_token_at)
            else:
                waiting.append(now - entry.started)
        extra = (0, 0)
        if server is not None:
            extra = extra_from_server(
                slots, len(running), len(waiting), server.running, server.waiting
            )
        return QueueInput(
            slots,
            load.prompt.get(priors.prompt_s),
            load.generation.get(priors.generation_s),
            running,
            waiting,
            *extra,
        )

    def _load(self, key: str) -> _Load:
        load = self._loads.get(key)
        if load is None:
            make_room(self._loads, at_rest=_idle)
            load = self._loads[key] = _Load()
        return load

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
        slots = max(1, slots)
        with self._lock:
            now = self._clock()
            load = self._load(key)
            in_flight = len(load.leases)
            if in_flight < slots and server is None:
                # A slot is free whatever the others do: no queue to simulate (the same
                # number first_token_in gives, at any number in flight).
                predicted = load.prompt.get(priors.prompt_s) + cold_s
            else:
                queue = self._queue(load, now, slots, priors, server)
                predicted = first_token_in(queue, cold_s=cold_s)
            if limit_s is not None and predicted > limit_s:
                return Admission(None, predicted, in_flight)
            lease_id = str(next(self._ids))
            load.leases[lease_id] = _Entry(now, learn_prompt=in_flight < slots)
            lease = Lease(key, lease_id, now, in_flight, self.kind)
            return Admission(lease, predicted, in_flight)

    async def first_token(self, lease: Lease) -> None:
        with self._lock:
            load = self._loads.get(lease.key)
            entry = load.leases.get(lease.id) if load is not None else None
            if load is None or entry is None or entry.first_token_at is not None:
                return
            now = self._clock()
            entry.first_token_at = now
            if entry.learn_prompt:
                load.prompt.add(now - entry.started)

    async def finish(self, lease: Lease, *, ok: bool, load_s: float | None = None) -> None:
        with self._lock:
            load = self._loads.get(lease.key)
            entry = load.leases.pop(lease.id, None) if load is not None else None
            if load is None or entry is None:
                return  # already finished: learn nothing twice
            if ok and entry.first_token_at is not None:
                load.generation.add(self._clock() - entry.first_token_at)
            if load_s is not None and load_s > LOAD_MIN_S:
                load.load.add(load_s)

    async def observe(self, key: str, *, load_s: float) -> None:
        if load_s <= LOAD_MIN_S:
            return
        with self._lock:
            load = self._load(key)
            load.load.add(load_s)

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
        slots = max(1, slots)
        with self._lock:
            now = self._clock()
            load = self._loads.get(key) or _Load()
            target = None
            if lease is None and server is None and len(load.leases) < slots:
                return load.prompt.get(priors.prompt_s) + cold_s  # a slot is free
            if lease is not None and lease.id in load.leases:
                waiting_ids = [i for i, e in load.leases.items() if e.first_token_at is None]
                if lease.id not in waiting_ids:
                    return 0.0  # it has its first token already
                target = waiting_ids.index(lease.id)
            return first_token_in(
                self._queue(load, now, slots, priors, server), target=target, cold_s=cold_s
            )

    async def view(self, key: str, *, priors: Estimates) -> LoadView:
        with self._lock:
            load = self._loads.get(key) or _Load()
            running = sum(1 for e in load.leases.values() if e.first_token_at is not None)
            in_flight = len(load.leases)
            return LoadView(in_flight, running, in_flight - running, load.estimates(priors))

    # -- breakers ---------------------------------------------------------------------------

    def _breaker(self, key: str) -> BreakerRecord:
        record = self._breakers.get(key)
        if record is None:
            make_room(self._breakers, at_rest=_closed)
            record = self._breakers[key] = BreakerRecord()
        return record

    async def breaker_pass(self, key: str) -> BreakerPass:
        with self._lock:
            return breaker_pass(self._breaker(key), self._clock(), self.breaker_config)

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
        with self._lock:
            breaker_report(
                self._breaker(key),
                self._clock(),
                self.breaker_config,
                outcome,
                epoch=epoch,
                reason=reason,
                probe=probe,
                disable_s=disable_s,
            )

    async def breaker_state(self, key: str) -> BreakerState:
        with self._lock:
            record = self._breakers.get(key) or BreakerRecord()
            return breaker_state(record, self._clock())

    # -- gates --------------------------------------------------------------------------------

    async def gate_take(self, key: str, *, limit: int) -> Lease | None:
        with self._lock:
            holders = self._gates.get(key)
            if holders is None:
                holders = self._gates[key] = {}
            taken = len(holders)
            if taken >= limit:
                return None
            now = self._clock()
            lease_id = str(next(self._ids))
            holders[lease_id] = now
            return Lease(key, lease_id, now, taken, self.kind)

    async def gate_release(self, lease: Lease) -> None:
        with self._lock:
            holders = self._gates.get(lease.key)
            if holders is not None:
                holders.pop(lease.id, None)

    async def gate_count(self, key: str) -> int:
        with self._lock:
            return len(self._gates.get(key, ()))

    # -- facts ----------------------------------------------------------------------------------

    async def fact_get(self, key: str) -> str | None:
        with self._lock:
            item = self._facts.get(key)
            if item is None:
                return None
            if self._clock() >= item[1]:
                del self._facts[key]
                return None
            return item[0]

    async def fact_set(self, key: str, value: str, *, ttl_s: float) -> None:
        check_fact_ttl(ttl_s)
        with self._lock:
            if key not in self._facts:
                make_room(self._facts)  # facts are a cache: read again when forgotten
            self._facts[key] = (value, self._clock() + ttl_s)

    # -- lifecycle --------------------------------------------------------------------------------

    def health(self) -> StoreHealth:
        return StoreHealth(kind=self.kind, url=None, ok=True, using_fallback=False)

    async def aclose(self) -> None:
        return None


def check_fact_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ValueError(f"a fact needs a positive ttl_s (got {ttl_s!r}); pass seconds > 0")
