"""Predict a local request's time to first token before sending it.

Ollama serves ``slots`` requests per loaded model and makes the rest wait *silently*
(reference §4.3–4.4): busy shows up as latency, not as an error. So instead of waiting a
first-token budget out, dsollama keeps, per local (host, model), what *this process* has
in flight and how long recent answers took, and simulates the daemon's queue:

- a request that has produced its first token holds a slot until it is done;
- of the requests still waiting, the first ``slots - running`` are being prompt-processed
  (they hold a slot too); the rest queue FIFO;
- each slot frees after its holder's remaining time; a queued request then takes a full
  service time (prompt + generation).

The new request's predicted first token = when a slot frees for it + prompt time (+ a load
time when `/api/ps` says the model is cold). Estimates are EWMAs of observed answers,
seeded with priors until the first answers arrive. What this process cannot see (other
programs on the same daemon) is left to the first-token budget, the backstop.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Ewma", "HostedLoad", "LoadSnapshot", "LocalLoad", "Ticket"]

Clock = Callable[[], float]


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


class LocalLoad:
    """In-flight requests and latency estimates for one local (host, model)."""

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
        "When this process last got an answer from the model (it was loaded then)."
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

    def predict_first_token(self) -> float:
        """Seconds until a request sent now would get its first token (our best estimate)."""
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
                slot_free.append(max(prompt - (now - t.started), 0.0) + generation)
            queued = waiting[in_prompt:]
            slot_free += [0.0] * (self.slots - len(slot_free))
            heapq.heapify(slot_free)
            service = prompt + generation
            for _ in queued:
                heapq.heappush(slot_free, heapq.heappop(slot_free) + service)
            wait = heapq.heappop(slot_free) if slot_free else 0.0
            return wait + prompt + (self.load.value if self.cold else 0.0)

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


class HostedLoad:
    """Our requests in flight on a hosted route, against its concurrency limit.

    DeepSeek limits concurrent requests per account and answers 429 at once above the
    limit — which shrinks with a low balance. Knowing the limit (configured, or read from
    a 429 that states it), the router keeps requests local instead of provoking 429s.
    """

    def __init__(self, *, limit: int | None = None) -> None:
        self.configured = limit
        self.learned: int | None = None
        self.in_flight = 0
        self.ttft = Ewma(prior=1.0)
        "Time to first token of recent hosted answers."
        self._lock = threading.Lock()

    @property
    def limit(self) -> int | None:
        return self.configured if self.configured is not None else self.learned

    def learn_limit(self, limit: int) -> None:
        with self._lock:
            self.learned = max(limit, 1)

    def start(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finish(self) -> None:
        with self._lock:
            self.in_flight = max(self.in_flight - 1, 0)

    def at_capacity(self) -> bool:
        limit = self.limit
        return limit is not None and self.in_flight >= limit
