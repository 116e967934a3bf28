"""Predicting a local request's first token from what is in flight."""

from __future__ import annotations

import pytest

from dsollama._routing.admission import LocalLoad


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trained_load(
    clock: FakeClock, *, slots: int = 1, prompt: float = 0.1, generation: float = 0.9
) -> LocalLoad:
    """A load whose estimates have been learned from one observed answer."""
    load = LocalLoad(slots=slots, prompt_prior=5.0, generation_prior=5.0, clock=clock)
    ticket = load.start()
    clock.now += prompt
    load.first_token(ticket)
    clock.now += generation
    load.finish(ticket, ok=True)
    return load


def test_an_idle_model_answers_after_prompt_time() -> None:
    clock = FakeClock()
    load = trained_load(clock)
    assert load.predict_first_token() == pytest.approx(0.1)


def test_each_request_ahead_on_one_slot_adds_a_service_time() -> None:
    clock = FakeClock()
    load = trained_load(clock)
    running = load.start()
    clock.now += 0.1
    load.first_token(running)  # holds the slot, 0.9 s of generation left
    assert load.predict_first_token() == pytest.approx(0.9 + 0.1)
    load.start()  # queued behind it: will take a full 1.0 s service
    assert load.predict_first_token() == pytest.approx(0.9 + 1.0 + 0.1)
    clock.now += 0.5  # time passes: the running one is closer to done
    assert load.predict_first_token() == pytest.approx(0.4 + 1.0 + 0.1)


def test_more_slots_mean_shorter_waits() -> None:
    clock = FakeClock()
    load = trained_load(clock, slots=2)
    tickets = [load.start(), load.start()]
    clock.now += 0.1
    for ticket in tickets:
        load.first_token(ticket)
    # Two slots busy for 0.9 s each; the third request waits for the first to free.
    assert load.predict_first_token() == pytest.approx(0.9 + 0.1)
    load.start()
    assert load.predict_first_token() == pytest.approx(0.9 + 0.1)  # the other slot frees too


def test_finished_requests_free_their_slot_and_teach_the_estimate() -> None:
    clock = FakeClock()
    load = trained_load(clock)
    ticket = load.start()
    clock.now += 0.1
    load.first_token(ticket)
    clock.now += 2.9  # this answer took longer
    load.finish(ticket, ok=True)
    assert load.in_flight == 0
    assert load.snapshot().generation_s > 0.9
    assert load.predict_first_token() == pytest.approx(load.snapshot().prompt_s)


def test_priors_are_used_before_any_answer() -> None:
    clock = FakeClock()
    load = LocalLoad(slots=1, prompt_prior=0.5, generation_prior=1.5, clock=clock)
    assert load.predict_first_token() == pytest.approx(0.5)
    load.start()  # in prompt processing
    assert load.predict_first_token() == pytest.approx(0.5 + 1.5 + 0.5)


def test_a_cold_model_adds_its_load_time() -> None:
    clock = FakeClock()
    load = trained_load(clock)
    load.cold = True
    assert load.predict_first_token() == pytest.approx(0.1 + load.load.value)
    ticket = load.start()
    load.first_token(ticket)
    assert load.cold is False
