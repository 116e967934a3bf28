"""Backoff, the retry budget and breakers, on a fake clock."""

from __future__ import annotations

import random

import pytest

from dsollama._routing.backoff import Breaker, RetryBudget, backoff_delay


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


def test_breaker_opens_after_threshold_and_probes_once_half_open() -> None:
    clock = FakeClock()
    breaker = Breaker(threshold=3, cooldown=5.0, cooldown_max=60.0, clock=clock)
    for _ in range(2):
        breaker.record_failure("500")
        assert breaker.allow()
    breaker.record_failure("500")
    assert not breaker.allow()
    assert breaker.snapshot().state == "open"
    clock.now += 5.0
    assert breaker.snapshot().state == "half-open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one probe at a time
    breaker.record_success()
    assert breaker.snapshot().state == "closed"
    assert breaker.allow()


def test_a_failed_probe_reopens_with_a_longer_cooldown() -> None:
    clock = FakeClock()
    breaker = Breaker(threshold=1, cooldown=5.0, cooldown_max=12.0, clock=clock)
    breaker.record_failure("refused", open_now=True)
    assert breaker.snapshot().retry_in == pytest.approx(5.0)
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_failure("refused")
    assert breaker.snapshot().retry_in == pytest.approx(10.0)
    clock.now += 10.0
    assert breaker.allow()
    breaker.record_failure("refused")
    assert breaker.snapshot().retry_in == pytest.approx(12.0)  # capped


def test_disable_keeps_the_route_off_for_the_given_time() -> None:
    clock = FakeClock()
    breaker = Breaker(threshold=3, cooldown=5.0, cooldown_max=60.0, clock=clock)
    breaker.disable("hosted key refused (401)", 3600.0)
    clock.now += 3599.0
    assert not breaker.allow()
    assert breaker.snapshot().reason == "hosted key refused (401)"


def test_a_released_probe_lets_the_next_request_probe() -> None:
    clock = FakeClock()
    breaker = Breaker(threshold=1, cooldown=1.0, cooldown_max=1.0, clock=clock)
    breaker.record_failure("x")
    clock.now += 1.0
    assert breaker.allow()
    breaker.release_probe()
    assert breaker.allow()
