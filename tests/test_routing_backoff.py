"""Backoff, the retry budget and breakers, on a fake clock."""

from __future__ import annotations

import random

from dsollama._routing.backoff import RetryBudget, backoff_delay


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    rng = random.Random(42)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 4.0), (20, 4.0)]:
        delays = [backoff_delay(attempt, base=0.2, cap=4.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the top.
        assert min(delays) < ceiling * 0.2
        assert max(delays) > ceiling * 0.8


def test_retry_after_is_honoured_but_clamped() -> None:
    rng = random.Random(1)
    assert (
        backoff_delay(1, base=0.1, cap=1.0, retry_after=3.0, retry_after_cap=30.0, rng=rng) == 3.0
    )
    assert (
        backoff_delay(1, base=0.1, cap=1.0, retry_after=600.0, retry_after_cap=30.0, rng=rng)
        == 30.0
    )


def test_retry_budget_allows_a_floor_then_a_share_of_calls() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, floor=3, window=10.0, clock=clock)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]
    for _ in range(10):
        budget.record_call()
    # 3 + 0.2 × 10 = 5 retries in the window, 3 already spent.
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.now += 11.0  # the window slides: old calls and retries are forgotten
    assert budget.retries_in_window == 0
    assert budget.try_spend()
