"""Predicting a local request's first token from what is in flight."""

from __future__ import annotations

import asyncio

import pytest

from dsollama._routing.admission import HostedLoad, RouteLoad


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def trained_load(
    clock: FakeClock, *, slots: int = 1, prompt: float = 0.1, generation: float = 0.9
) -> RouteLoad:
    """A load whose estimates have been learned from one observed answer."""
    load = RouteLoad(slots=slots, prompt_prior=5.0, generation_prior=5.0, clock=clock)
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
    load = RouteLoad(slots=1, prompt_prior=0.5, generation_prior=1.5, clock=clock)
    assert load.predict_first_token() == pytest.approx(0.5)
    load.start()  # in prompt processing
    assert load.predict_first_token() == pytest.approx(0.5 + 1.5 + 0.5)


def test_a_cold_model_adds_its_load_time_once_a_load_was_measured() -> None:
    clock = FakeClock()
    load = trained_load(clock)
    load.cold = True
    # A guessed load time (the prior) never keeps a call away.
    assert load.predict_first_token() == pytest.approx(0.1)
    load.warmed(2.5)  # a real load, as the daemon reported it
    load.cold = True  # unloaded again later
    assert load.predict_first_token() == pytest.approx(0.1 + 2.5)
    ticket = load.start()
    load.first_token(ticket)
    assert load.cold is False


def test_a_waiting_request_knows_its_place_in_the_queue() -> None:
    clock = FakeClock()
    load = trained_load(clock)  # 0.1 s to first token, 0.9 s of generation
    running = load.start()
    clock.now += 0.1
    load.first_token(running)
    first, second = load.start(), load.start()
    assert load.predict_first_token(first) == pytest.approx(0.9 + 0.1)
    assert load.predict_first_token(second) == pytest.approx(0.9 + 1.0 + 0.1)


def test_an_unbounded_hosted_route_never_queues() -> None:
    clock = FakeClock()
    hosted = HostedLoad(clock=clock)
    for _ in range(50):
        hosted.start()
    assert hosted.predict_first_token() == pytest.approx(hosted.prompt.value)
    assert not hosted.at_capacity()


def test_a_learned_limit_turns_the_hosted_route_into_a_queue() -> None:
    clock = FakeClock()
    hosted = HostedLoad(clock=clock)
    tickets = [hosted.start() for _ in range(3)]
    hosted.learn_limit(2)
    assert hosted.limit == 2
    assert hosted.predict_first_token(tickets[2]) > hosted.predict_first_token(tickets[0])


@pytest.mark.anyio
async def test_the_gate_admits_in_order_up_to_the_limit() -> None:
    gate = HostedLoad(limit=2)
    await gate.acquire()
    await gate.acquire()
    assert gate.at_capacity()
    order: list[str] = []

    async def wait(name: str) -> None:
        await gate.acquire()
        order.append(name)

    third = asyncio.ensure_future(wait("third"))
    fourth = asyncio.ensure_future(wait("fourth"))
    await asyncio.sleep(0)
    assert order == []
    gate.release()
    await third
    assert order == ["third"]
    assert gate.sent == 2  # the slot went to the waiter, nobody else could take it
    gate.release()
    await fourth
    assert order == ["third", "fourth"]


@pytest.mark.anyio
async def test_a_waiter_that_gives_up_leaves_its_place() -> None:
    gate = HostedLoad(limit=1)
    await gate.acquire()
    waiting = asyncio.ensure_future(gate.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.release()
    assert gate.sent == 0
    await gate.acquire()  # free at once
    assert gate.sent == 1
