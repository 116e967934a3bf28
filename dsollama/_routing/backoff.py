"""Backoff and the retry budget — pure, clock injected.

Borrowed semantics: full-jitter exponential backoff (AWS: least total work),
``Retry-After`` clamped to [backoff, backoff + cap] (never trust an unbounded server delay),
and a retry budget as a share of recent calls with a floor (Envoy/SRE: retries must not
multiply an overload). Breakers live with the rest of the shared routing state
(`dsollama._state.breakers`).
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable

__all__ = ["RetryBudget", "backoff_delay"]

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
