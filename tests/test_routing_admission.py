"""Predicting a request's first token from what is in flight (the store's queue model),
and the gate of a route that refuses work above its limit."""

from __future__ import annotations

import asyncio

import pytest

from dsollama._state import Estimates, Lease
from dsollama._state.memory import MemoryStore

pytestmark = pytest.mark.anyio

KEY = "local:127.0.0.1:11434|deepseek-r1:8b"
PRIORS = Estimates(prompt_s=5.0, generation_s=5.0, load_s=5.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Queue:
    """One key of a MemoryStore, trained from one observed answer (0.1 s + 0.9 s)."""

    def __init__(self, clock: FakeClock, *, slots: int = 1, priors: Estimates = PRIORS) -> None:
        self.clock = clock
        self.store = MemoryStore(clock=clock)
        self.slots = slots
        self.priors = priors

    async def train(self, prompt: float = 0.1, generation: float = 0.9) -> None:
        lease = await self.start()
        self.clock.now += prompt
        await self.store.first_token(lease)
        self.clock.now += generation
        await self.store.finish(lease, ok=True)

    async def start(self) -> Lease:
        admission = await self.store.admit(KEY, slots=self.slots, priors=self.priors)
        assert admission.lease is not None
        return admission.lease

    async def predict(self, lease: Lease | None = None, cold_s: float = 0.0) -> float:
        return await self.store.predict(
            KEY, slots=self.slots, priors=self.priors, lease=lease, cold_s=cold_s
        )


async def trained(clock: FakeClock, **kwargs: int) -> Queue:
    queue = Queue(clock, **kwargs)
    await queue.train()
    return queue


async def test_an_idle_model_answers_after_prompt_time() -> None:
    queue = await trained(FakeClock())
    assert await queue.predict() == pytest.approx(0.1)


async def test_each_request_ahead_on_one_slot_adds_a_service_time() -> None:
    clock = FakeClock()
    queue = await trained(clock)
    running = await queue.start()
    clock.now += 0.1
    await queue.store.first_token(running)  # holds the slot, 0.9 s of generation left
    assert await queue.predict() == pytest.approx(0.9 + 0.1)
    await queue.start()  # queued behind it: will take a full 1.0 s service
    assert await queue.predict() == pytest.approx(0.9 + 1.0 + 0.1)
    clock.now += 0.5  # time passes: the running one is closer to done
    assert await queue.predict() == pytest.approx(0.4 + 1.0 + 0.1)


async def test_more_slots_mean_shorter_waits() -> None:
    clock = FakeClock()
    queue = await trained(clock, slots=2)
    leases = [await queue.start(), await queue.start()]
    clock.now += 0.1
    for lease in leases:
        await queue.store.first_token(lease)
    # Two slots busy for 0.9 s each; the third request waits for the first to free.
    assert await queue.predict() == pytest.approx(0.9 + 0.1)
    await queue.start()
    assert await queue.predict() == pytest.approx(0.9 + 0.1)  # the other slot frees too


async def test_finished_requests_free_their_slot_and_teach_the_estimate() -> None:
    clock = FakeClock()
    queue = await trained(clock)
    lease = await queue.start()
    clock.now += 0.1
    await queue.store.first_token(lease)
    clock.now += 2.9  # this answer took longer
    await queue.store.finish(lease, ok=True)
    view = await queue.store.view(KEY, priors=PRIORS)
    assert view.in_flight == 0
    assert view.estimates.generation_s > 0.9
    assert await queue.predict() == pytest.approx(view.estimates.prompt_s)


async def test_priors_are_used_before_any_answer() -> None:
    queue = Queue(FakeClock(), priors=Estimates(prompt_s=0.5, generation_s=1.5, load_s=5.0))
    assert await queue.predict() == pytest.approx(0.5)
    await queue.start()  # in prompt processing
    assert await queue.predict() == pytest.approx(0.5 + 1.5 + 0.5)


async def test_a_cold_models_measured_load_time_is_added() -> None:
    queue = await trained(FakeClock())
    # The router passes a cold model's load time only once one was measured.
    assert await queue.predict(cold_s=2.5) == pytest.approx(0.1 + 2.5)
    await queue.store.observe(KEY, load_s=2.5)
    view = await queue.store.view(KEY, priors=PRIORS)
    assert view.estimates.load_samples == 1
    assert view.estimates.load_s == pytest.approx(2.5)


async def test_a_waiting_request_knows_its_place_in_the_queue() -> None:
    clock = FakeClock()
    queue = await trained(clock)  # 0.1 s to first token, 0.9 s of generation
    running = await queue.start()
    clock.now += 0.1
    await queue.store.first_token(running)
    first, second = await queue.start(), await queue.start()
    assert await queue.predict(first) == pytest.approx(0.9 + 0.1)
    assert await queue.predict(second) == pytest.approx(0.9 + 1.0 + 0.1)


async def test_admission_refuses_past_the_limit_and_takes_no_place() -> None:
    clock = FakeClock()
    queue = await trained(clock)
    running = await queue.start()
    clock.now += 0.1
    await queue.store.first_token(running)
    refused = await queue.store.admit(KEY, slots=1, priors=PRIORS, limit_s=0.5)
    assert refused.lease is None
    assert refused.predicted_s == pytest.approx(0.9 + 0.1)
    assert (await queue.store.view(KEY, priors=PRIORS)).in_flight == 1


async def test_the_gate_admits_in_order_up_to_the_limit() -> None:
    from dsollama._config import load_settings
    from dsollama._routing.state import RoutingState

    state = RoutingState(MemoryStore(), load_settings(), {})
    await state.learn_limit("hosted:api.example", 2)
    held = [await state.gate_acquire("hosted:api.example") for _ in range(2)]
    assert await state.gate_count("hosted:api.example") == 2
    order: list[str] = []

    async def wait(name: str) -> Lease:
        lease = await state.gate_acquire("hosted:api.example")
        order.append(name)
        return lease

    third = asyncio.ensure_future(wait("third"))
    fourth = asyncio.ensure_future(wait("fourth"))
    await asyncio.sleep(0.01)
    assert order == []
    await state.gate_release("hosted:api.example", held[0])
    third_lease = await third
    assert order == ["third"]
    assert await state.gate_count("hosted:api.example") == 2  # never above the limit
    await state.gate_release("hosted:api.example", third_lease)
    await fourth
    assert order == ["third", "fourth"]


async def test_a_waiter_that_gives_up_leaves_its_place() -> None:
    from dsollama._config import load_settings
    from dsollama._routing.state import RoutingState

    state = RoutingState(MemoryStore(), load_settings(), {})
    await state.learn_limit("hosted:api.example", 1)
    held = await state.gate_acquire("hosted:api.example")
    waiting = asyncio.ensure_future(state.gate_acquire("hosted:api.example"))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await state.gate_release("hosted:api.example", held)
    assert await state.gate_count("hosted:api.example") == 0
    await state.gate_acquire("hosted:api.example")  # free at once
    assert await state.gate_count("hosted:api.example") == 1
