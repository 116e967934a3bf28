"""Predict a request's time to first token on a route before sending it.

Both routes are queues. Ollama serves ``slots`` requests per loaded model and makes the
rest wait *silently* (reference §4.3–4.4): busy shows up as latency, not as an error.
DeepSeek accepts a fixed number of concurrent requests per account and answers 429 at
once above it (lower when the balance is low). So for each route (a local (host, model),
or a hosted endpoint) dsollama keeps what *this process* has in flight there and how long
recent answers took, and simulates the queue:

- a request that has produced its first token holds a slot until it is done;
- of the requests still waiting, the first ``slots - running`` are being prompt-processed
  (they hold a slot too); the rest queue FIFO;
- each slot frees after its holder's remaining time; a queued request then takes a full
  service time (first token + generation).

A new request's predicted first token = when a slot frees for it + its time to first
token (+ a load time when `/api/ps` says a local model is cold). Estimates are EWMAs of
observed answers, seeded with priors until answers arrive. What this process cannot see
(other programs using the same daemon or account) is left to the first-token budget.

For a hosted route with a known concurrency limit, `HostedLoad` also gates sending:
requests beyond the limit wait here, FIFO, instead of provoking 429s.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Ewma", "HostedLoad", "LoadSnapshot", "RouteLoad", "Ticket"]

Clock = Callable[[], float]

UNBOUNDED = 1_000_000
"Slots of a route whose limit is unknown: effectively no queue."


class Ewma:
    """Exponentially weighted mean with a prior used until the first sample."""

    def __init__(self, prior: float, alpha: float = 0.3) -> None:
        self.value = prior
        self.alpha = alpha
        self.samples = 0

    def add(self, sample: float) -> None:
        if self.samples == 0:
            self.value = sample
        else:
            self.value += self.alpha * (sample - self.value)
        self.samples += 1


@dataclass
class Ticket:
    id: int
    started: float
    queued_behind: int
    "How many of our own requests were ahead of this one when it started."
    first_token_at: float | None = None


@dataclass(frozen=True)
class LoadSnapshot:
    in_flight: int
    running: int
    waiting: int
    slots: int
    prompt_s: float
    generation_s: float
    load_s: float
    samples: int
    cold: bool = False
    warming: bool = False
    missing: bool = False


class RouteLoad:
    """In-flight requests and latency estimates for one route (see the module docstring)."""

    def __init__(
        self,
        *,
        slots: int,
        prompt_prior: float = 0.3,
        generation_prior: float = 2.0,
        load_prior: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.slots = max(1, slots)
        self.prompt = Ewma(prompt_prior)
        "Time from getting a slot to the first token."
        self.generation = Ewma(generation_prior)
        "Time from the first token to done."
        self.load = Ewma(load_prior)
        self._clock = clock
        self._ids = itertools.count()
        self._in_flight: dict[int, Ticket] = {}
        self._lock = threading.Lock()
        self.cold = False
        "Set when /api/ps says the model is not loaded; cleared by the next answer."
        self.last_answer_at: float | None = None
        "When this process last got an answer from the route (a local model was loaded then)."
        self.warming = False
        "A background load of the model is under way."
        self.missing = False
        "The daemon does not have the model at all (not pulled)."

    # -- bookkeeping ------------------------------------------------------------------

    def start(self) -> Ticket:
        with self._lock:
            ticket = Ticket(next(self._ids), self._clock(), queued_behind=len(self._in_flight))
            self._in_flight[ticket.id] = ticket
            return ticket

    def first_token(self, ticket: Ticket) -> None:
        with self._lock:
            now = self._clock()
            ticket.first_token_at = now
            if ticket.queued_behind < self.slots:
                # It did not queue behind our own requests, so its wait is prompt (+ load) time.
                self.prompt.add(now - ticket.started)
            self.cold = False
            self.last_answer_at = now

    def finish(self, ticket: Ticket, *, ok: bool, load_s: float | None = None) -> None:
        with self._lock:
            self._in_flight.pop(ticket.id, None)
            if ok and ticket.first_token_at is not None:
                self.generation.add(self._clock() - ticket.first_token_at)
            if load_s is not None and load_s > 0.05:
                self.load.add(load_s)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def warmed(self, load_s: float | None) -> None:
        """A background load finished: the model is in memory now."""
        with self._lock:
            self.warming = False
            if load_s is None:
                return
            if load_s > 0.05:
                self.load.add(load_s)
            self.cold = False
            self.last_answer_at = self._clock()

    def idle_for(self) -> float | None:
        """Seconds since the last answer (None: never answered in this process)."""
        if self.last_answer_at is None:
            return None
        return self._clock() - self.last_answer_at

    # -- prediction -------------------------------------------------------------------

    def predict_first_token(self, ticket: Ticket | None = None) -> float:
        """Seconds until a request gets its first token: a new one sent now, or (given its
        ticket) one already waiting."""
        with self._lock:
            now = self._clock()
            prompt, generation = self.prompt.value, self.generation.value
            tickets = sorted(self._in_flight.values(), key=lambda t: t.started)
            running = [t for t in tickets if t.first_token_at is not None]
            waiting = [t for t in tickets if t.first_token_at is None]
            slot_free: list[float] = []
            for t in running[: self.slots]:
                assert t.first_token_at is not None
                slot_free.append(max(generation - (now - t.first_token_at), 0.0))
            in_prompt = max(self.slots - len(slot_free), 0)
            for t in waiting[:in_prompt]:
                if t is ticket:  # already being served: only its remaining prompt time
                    return max(prompt - (now - t.started), 0.0) + self._cold_extra()
                slot_free.append(max(prompt - (now - t.started), 0.0) + generation)
            if len(slot_free) < self.slots:
                slot_free += [0.0] * min(self.slots - len(slot_free), len(waiting) + 1)
            heapq.heapify(slot_free)
            service = prompt + generation
            for t in waiting[in_prompt:]:
                if t is ticket:
                    return self._slot_wait(slot_free) + prompt + self._cold_extra()
                heapq.heappush(slot_free, self._slot_wait(slot_free) + service)
            return self._slot_wait(slot_free) + prompt + self._cold_extra()

    @staticmethod
    def _slot_wait(slot_free: list[float]) -> float:
        return heapq.heappop(slot_free) if slot_free else 0.0

    def _cold_extra(self) -> float:
        # Only a measured load counts: a guess never keeps a call away from a route
        # (the first-token budget still moves a truly slow load elsewhere in time).
        return self.load.value if self.cold and self.load.samples else 0.0

    def snapshot(self) -> LoadSnapshot:
        with self._lock:
            running = sum(1 for t in self._in_flight.values() if t.first_token_at is not None)
            return LoadSnapshot(
                in_flight=len(self._in_flight),
                running=running,
                waiting=len(self._in_flight) - running,
                slots=self.slots,
                prompt_s=self.prompt.value,
                generation_s=self.generation.value,
                load_s=self.load.value,
                samples=self.generation.samples,
                cold=self.cold,
                warming=self.warming,
                missing=self.missing,
            )


class HostedLoad(RouteLoad):
    """A hosted route: unbounded until its concurrency limit is known, then a FIFO gate.

    The limit comes from ``hosted_concurrency`` or from a 429 that states it. Requests
    beyond it wait here for a slot instead of being sent to earn another 429.
    """

    def __init__(self, *, limit: int | None = None, clock: Clock = time.monotonic) -> None:
        super().__init__(
            slots=limit or UNBOUNDED, prompt_prior=1.0, generation_prior=2.0, clock=clock
        )
        self.configured = limit
        self.learned: int | None = None
        self.sent = 0
        "Requests sent and not yet finished (they hold one of the account's slots)."
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int | None:
        return self.configured if self.configured is not None else self.learned

    def learn_limit(self, limit: int) -> None:
        self.learned = max(limit, 1)
        if self.configured is None:
            self.slots = self.learned

    def at_capacity(self) -> bool:
        limit = self.limit
        return limit is not None and self.sent >= limit

    async def acquire(self) -> None:
        """Wait (FIFO) until sending would stay within the limit, then take a slot."""
        if not self.at_capacity() and not self._waiters:
            self.sent += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # the slot is handed over with the wake-up (see _wake)
        except BaseException:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as we left: give it back
            raise

    def release(self) -> None:
        self.sent = max(self.sent - 1, 0)
        self._wake()

    def forget_waiters(self) -> None:
        """The event loop the waiters lived on is gone: so are they."""
        self._waiters.clear()

    def _wake(self) -> None:
        # Count the slot for the waiter as it is woken, so nobody arriving in between can
        # take it and push the account over its limit.
        while self._waiters and not self.at_capacity():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.sent += 1
                waiter.set_result(None)
