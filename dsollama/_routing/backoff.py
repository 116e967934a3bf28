"""Backoff, the process-wide retry budget, and per-route breakers — pure, clock injected.

Borrowed semantics: full-jitter exponential backoff (AWS: least total work),
``Retry-After`` clamped to [backoff, backoff + cap] (never trust an unbounded server delay),
a retry budget as a share of recent calls with a floor (Envoy/SRE: retries must not
multiply an overload), and breakers with a growing cooldown and a half-open probe
(Envoy's ejection time grows with each ejection).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Breaker", "BreakerState", "RetryBudget", "backoff_delay"]

Clock = Callable[[], float]


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    retry_after_cap: float = 30.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    Full jitter: uniform in [0, min(cap, base·2^(attempt-1))]. A server's Retry-After is
    honoured but clamped to at most ``retry_after_cap`` seconds.

    >>> backoff_delay(1, base=0.2, cap=4.0, rng=random.Random(0)) <= 0.2
    True
    >>> backoff_delay(10, base=0.2, cap=4.0, rng=random.Random(0)) <= 4.0
    True
    >>> backoff_delay(1, base=0.2, cap=4.0, retry_after=120, retry_after_cap=30, rng=random.Random(0))
    30.0
    """
    uniform = rng.uniform if rng is not None else random.uniform
    ceiling = min(cap, base * float(2 ** max(attempt - 1, 0)))
    delay = uniform(0.0, ceiling) if ceiling > 0 else 0.0
    if retry_after is not None and retry_after > 0:
        delay = max(delay, float(min(retry_after, retry_after_cap)))
    return delay


class RetryBudget:
    """Retries allowed process-wide: ``floor`` + ``ratio`` × calls in the last ``window`` s.

    A retry is only spent when `try_spend()` says yes; when the budget is exhausted the
    caller moves on to the next route instead of adding load to a struggling one.
    """

    def __init__(
        self, *, ratio: float, floor: int, window: float = 10.0, clock: Clock = time.monotonic
    ):
        self.ratio = ratio
        self.floor = floor
        self.window = window
        self._clock = clock
        self._calls: collections.deque[float] = collections.deque()
        self._retries: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        horizon = now - self.window
        for queue in (self._calls, self._retries):
            while queue and queue[0] < horizon:
                queue.popleft()

    def record_call(self) -> None:
        with self._lock:
            now = self._clock()
            self._trim(now)
            self._calls.append(now)

    def try_spend(self) -> bool:
        with self._lock:
            now = self._clock()
            self._trim(now)
            allowed = self.floor + self.ratio * len(self._calls)
            if len(self._retries) + 1 > allowed:
                return False
            self._retries.append(now)
            return True

    @property
    def retries_in_window(self) -> int:
        with self._lock:
            self._trim(self._clock())
            return len(self._retries)


@dataclass(frozen=True)
class BreakerState:
    state: str
    "closed, open or half-open."
    failures: int
    opened: int
    "How many times the breaker has opened since it was last healthy."
    retry_in: float
    "Seconds until the next probe is allowed (0 when closed)."
    reason: str | None


class Breaker:
    """A per-route circuit breaker with growing cooldown and a single half-open probe."""

    def __init__(
        self,
        *,
        threshold: int,
        cooldown: float,
        cooldown_max: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.cooldown_max = cooldown_max
        self._clock = clock
        self._failures = 0
        self._opened = 0
        self._open_until = 0.0
        self._probing = False
        self._reason: str | None = None
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """May a request use the route now? In half-open state only one probe goes through."""
        with self._lock:
            if self._open_until == 0.0:
                return True
            if self._clock() < self._open_until:
                return False
            if self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened = 0
            self._open_until = 0.0
            self._probing = False
            self._reason = None

    def record_failure(self, reason: str, *, open_now: bool = False) -> None:
        with self._lock:
            self._failures += 1
            was_probe = self._probing
            self._probing = False
            if open_now or was_probe or self._failures >= self.threshold:
                self._open(reason, self._next_cooldown())

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled): let the next request probe."""
        with self._lock:
            self._probing = False

    def disable(self, reason: str, seconds: float) -> None:
        with self._lock:
            self._probing = False
            self._open(reason, seconds)

    def _next_cooldown(self) -> float:
        return min(self.cooldown * float(2**self._opened), self.cooldown_max)

    def _open(self, reason: str, seconds: float) -> None:
        self._opened += 1
        self._open_until = self._clock() + seconds
        self._reason = reason

    def snapshot(self) -> BreakerState:
        with self._lock:
            now = self._clock()
            if self._open_until == 0.0:
                return BreakerState("closed", self._failures, self._opened, 0.0, None)
            if now < self._open_until:
                return BreakerState(
                    "open", self._failures, self._opened, self._open_until - now, self._reason
                )
            return BreakerState("half-open", self._failures, self._opened, 0.0, self._reason)
