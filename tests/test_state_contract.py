"""The `StateStore` contract, held against every store: in memory and on a real Redis.

Both stores get the same frozen clock (`FrozenClock`), so the numbers are exact: the
queue model (`dsollama._state.queue`), its learning, the breaker rules
with epochs, gates and facts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dsollama._state import BreakerConfig, Estimates, ServerQueue, StateStore, load_key
from dsollama._state.memory import MemoryStore

from .redis_server import FrozenClock, eventually

pytestmark = pytest.mark.anyio

CONFIG = BreakerConfig(threshold=3, cooldown=5.0, cooldown_max=300.0, probe_ttl=30.0)
PRIORS = Estimates(prompt_s=5.0, generation_s=5.0, load_s=7.0)
KEY = load_key("local:127.0.0.1:11434", "deepseek-r1:8b")
ROUTE = "local:127.0.0.1:11434"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(
    request: pytest.FixtureRequest, clock: FrozenClock, redis_namespace: str
) -> AsyncIterator[StateStore]:
    made: StateStore
    if request.param == "memory":
        made = MemoryStore(breaker=CONFIG, clock=clock)
    else:
        from dsollama._state.redis_store import RedisStore

        server = request.getfixturevalue("redis_server")
        made = RedisStore(
            server.url,
            namespace=redis_namespace,
            breaker=CONFIG,
            lease_ttl=600.0,
            op_timeout=5.0,
            clock=clock,
        )
    try:
        yield made
    finally:
        await made.aclose()


async def trained(
    store: StateStore, clock: FrozenClock, *, slots: int = 1, prompt: float = 0.1, gen: float = 0.9
) -> None:
    """Estimates learned from one answer: ``prompt`` to the first token, then ``gen``."""
    admission = await store.admit(KEY, slots=slots, priors=PRIORS)
    assert admission.lease is not None
    clock.advance(prompt)
    await store.first_token(admission.lease)
    clock.advance(gen)
    await store.finish(admission.lease, ok=True)


async def predict(store: StateStore, **kwargs: object) -> float:
    return await store.predict(KEY, slots=kwargs.pop("slots", 1), priors=PRIORS, **kwargs)  # type: ignore[arg-type]


# -- admission: the queue model ----------------------------------------------------------


async def test_an_idle_key_predicts_the_prompt_prior_and_takes_a_lease(
    store: StateStore, clock: FrozenClock
) -> None:
    admission = await store.admit(KEY, slots=1, priors=PRIORS)
    assert admission.predicted_s == pytest.approx(5.0)
    assert admission.in_flight == 0
    lease = admission.lease
    assert lease is not None
    assert (lease.key, lease.started, lease.queued_behind) == (KEY, clock.now, 0)
    assert lease.store == store.kind
    view = await store.view(KEY, priors=PRIORS)
    assert (view.in_flight, view.running, view.waiting) == (1, 0, 1)
    assert view.estimates == PRIORS


async def test_each_request_ahead_on_one_slot_adds_a_service_time(
    store: StateStore, clock: FrozenClock
) -> None:
    await trained(store, clock)
    assert await predict(store) == pytest.approx(0.1)
    running = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert running is not None
    clock.advance(0.1)
    await store.first_token(running)  # holds the slot, 0.9 s of generation left
    assert await predict(store) == pytest.approx(0.9 + 0.1)
    queued = await store.admit(KEY, slots=1, priors=PRIORS)
    assert queued.predicted_s == pytest.approx(0.9 + 0.1)
    assert queued.in_flight == 1
    # Behind it now: a full 1.0 s service for the queued one.
    assert await predict(store) == pytest.approx(0.9 + 1.0 + 0.1)
    clock.advance(0.5)
    assert await predict(store) == pytest.approx(0.4 + 1.0 + 0.1)


async def test_more_slots_mean_shorter_waits(store: StateStore, clock: FrozenClock) -> None:
    await trained(store, clock, slots=2)
    leases = [(await store.admit(KEY, slots=2, priors=PRIORS)).lease for _ in range(2)]
    clock.advance(0.1)
    for lease in leases:
        assert lease is not None
        await store.first_token(lease)
    assert await predict(store, slots=2) == pytest.approx(0.9 + 0.1)
    await store.admit(KEY, slots=2, priors=PRIORS)
    assert await predict(store, slots=2) == pytest.approx(0.9 + 0.1)


async def test_priors_until_answers_arrive(store: StateStore) -> None:
    priors = Estimates(prompt_s=0.5, generation_s=1.5, load_s=9.0)
    assert await store.predict(KEY, slots=1, priors=priors) == pytest.approx(0.5)
    await store.admit(KEY, slots=1, priors=priors)  # in prompt processing
    assert await store.predict(KEY, slots=1, priors=priors) == pytest.approx(0.5 + 1.5 + 0.5)


async def test_a_waiting_request_knows_its_place_and_a_running_one_waits_no_more(
    store: StateStore, clock: FrozenClock
) -> None:
    await trained(store, clock)
    running = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert running is not None
    clock.advance(0.1)
    await store.first_token(running)
    first = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    second = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert await predict(store, lease=first) == pytest.approx(0.9 + 0.1)
    assert await predict(store, lease=second) == pytest.approx(0.9 + 1.0 + 0.1)
    assert await predict(store, lease=running) == 0.0


async def test_a_prediction_past_the_limit_takes_no_lease(
    store: StateStore, clock: FrozenClock
) -> None:
    await trained(store, clock)
    assert (await store.admit(KEY, slots=1, priors=PRIORS, limit_s=0.5)).lease is not None
    refused = await store.admit(KEY, slots=1, priors=PRIORS, limit_s=0.5)
    assert refused.lease is None
    assert refused.predicted_s == pytest.approx(0.1 + 0.9 + 0.1)
    assert refused.in_flight == 1
    assert (await store.view(KEY, priors=PRIORS)).in_flight == 1


async def test_a_cold_model_adds_its_load_time(store: StateStore, clock: FrozenClock) -> None:
    await trained(store, clock)
    admission = await store.admit(KEY, slots=1, priors=PRIORS, cold_s=4.0)
    assert admission.predicted_s == pytest.approx(0.1 + 4.0)


async def test_the_servers_own_queue_counts_what_no_lease_accounts_for(
    store: StateStore, clock: FrozenClock
) -> None:
    await trained(store, clock, slots=2)  # prompt 0.1, generation 0.9
    # The server sees only our one request: nothing to add.
    ours = await store.admit(KEY, slots=2, priors=PRIORS)
    assert ours.lease is not None
    mine_only = ServerQueue(running=1, waiting=0)  # ours, in prompt processing
    assert await predict(store, slots=2, server=mine_only) == pytest.approx(0.1)
    # One more generating (halfway: 0.45 s left) fills the second slot; two more queue.
    busy = ServerQueue(running=2, waiting=2)
    # Slots free at 0.1+0.9=1.0 (ours) and 0.45; the two queued take 1.0 each:
    # 0.45 → 1.45, then 1.0 → 2.0; the new one waits for 1.45 and adds its prompt.
    assert await predict(store, slots=2, server=busy) == pytest.approx(1.45 + 0.1)


async def test_prompt_time_is_learned_only_from_requests_that_did_not_queue(
    store: StateStore, clock: FrozenClock
) -> None:
    first = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    second = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert first is not None
    assert second is not None
    assert second.queued_behind == 1
    clock.advance(0.2)
    await store.first_token(first)
    clock.advance(3.0)
    await store.first_token(second)  # waited behind `first`: not a prompt time
    view = await store.view(KEY, priors=PRIORS)
    assert view.estimates.prompt_s == pytest.approx(0.2)
    assert (view.running, view.waiting) == (2, 0)


async def test_generation_and_load_are_ewmas_and_a_finish_counts_once(
    store: StateStore, clock: FrozenClock
) -> None:
    await trained(store, clock, gen=1.0)
    lease = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert lease is not None
    await store.first_token(lease)
    clock.advance(2.0)
    await store.finish(lease, ok=True, load_s=3.0)
    await store.finish(lease, ok=True, load_s=30.0)  # idempotent: learns nothing twice
    estimates = (await store.view(KEY, priors=PRIORS)).estimates
    assert estimates.generation_s == pytest.approx(1.0 + 0.3 * (2.0 - 1.0))
    assert estimates.samples == 2
    assert estimates.load_s == pytest.approx(3.0)  # the first sample replaces the prior
    assert estimates.load_samples == 1
    await store.observe(KEY, load_s=0.04)  # no load: the model was in memory
    await store.observe(KEY, load_s=5.0)
    estimates = (await store.view(KEY, priors=PRIORS)).estimates
    assert estimates.load_s == pytest.approx(3.0 + 0.3 * (5.0 - 3.0))
    assert estimates.load_samples == 2


async def test_a_failed_request_frees_its_slot_but_teaches_no_generation_time(
    store: StateStore, clock: FrozenClock
) -> None:
    lease = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert lease is not None
    await store.first_token(lease)
    clock.advance(9.0)
    await store.finish(lease, ok=False)
    view = await store.view(KEY, priors=PRIORS)
    assert view.in_flight == 0
    assert view.estimates.samples == 0
    assert view.estimates.generation_s == PRIORS.generation_s


async def test_concurrent_admissions_never_over_admit(store: StateStore) -> None:
    # prompt 10 s, generation 10 s, one slot: the k-th waiting request predicts
    # 10 + 20k s, so a 55 s limit admits exactly three, whoever asks first.
    priors = Estimates(prompt_s=10.0, generation_s=10.0, load_s=1.0)
    results = await asyncio.gather(
        *(store.admit(KEY, slots=1, priors=priors, limit_s=55.0) for _ in range(50))
    )
    admitted = [r for r in results if r.lease is not None]
    assert len(admitted) == 3
    assert sorted(r.in_flight for r in admitted) == [0, 1, 2]
    assert all(r.in_flight == 3 for r in results if r.lease is None)


async def test_keys_are_independent_whatever_their_characters(store: StateStore) -> None:
    odd = ["a:b", "a%3Ab", "{x}|y", "sp ace/ü|🙂", "}{"]
    for index, key in enumerate(odd):
        for _ in range(index + 1):
            await store.admit(key, slots=1, priors=PRIORS)
    for index, key in enumerate(odd):
        assert (await store.view(key, priors=PRIORS)).in_flight == index + 1


# -- breakers ------------------------------------------------------------------------------


async def fail(store: StateStore, n: int, *, reason: str = "503") -> None:
    for _ in range(n):
        granted = await store.breaker_pass(ROUTE)
        await store.breaker_report(ROUTE, "failure", epoch=granted.epoch, reason=reason)


async def test_the_breaker_opens_at_the_threshold_for_the_base_cooldown(
    store: StateStore, clock: FrozenClock
) -> None:
    await fail(store, 2)
    state = await store.breaker_state(ROUTE)
    assert (state.state, state.failures) == ("closed", 2)
    await fail(store, 1)
    state = await store.breaker_state(ROUTE)
    assert (state.state, state.steps, state.epoch, state.reason) == ("open", 1, 1, "503")
    assert state.retry_in == pytest.approx(5.0)
    assert not (await store.breaker_pass(ROUTE)).allowed
    clock.advance(2.0)
    assert (await store.breaker_state(ROUTE)).retry_in == pytest.approx(3.0)


async def test_a_thousand_concurrent_failures_open_one_period_at_the_base_cooldown(
    store: StateStore, clock: FrozenClock
) -> None:
    # All let through before the breaker opened (one epoch), all failing at once.
    passes = [await store.breaker_pass(ROUTE) for _ in range(1000)]
    assert {p.epoch for p in passes} == {0}
    assert all(p.allowed for p in passes)
    await asyncio.gather(
        *(store.breaker_report(ROUTE, "failure", epoch=p.epoch, reason="503") for p in passes)
    )
    state = await store.breaker_state(ROUTE)
    assert (state.state, state.steps, state.epoch) == ("open", 1, 1)
    assert state.retry_in == pytest.approx(CONFIG.cooldown)
    # The route recovers: used again within one base cooldown.
    clock.advance(CONFIG.cooldown)
    probe = await store.breaker_pass(ROUTE)
    assert probe.allowed
    assert probe.probe
    await store.breaker_report(ROUTE, "success", epoch=probe.epoch, probe=True)
    healthy = await store.breaker_pass(ROUTE)
    assert healthy.allowed
    assert not healthy.probe
    assert healthy.state.state == "closed"
    assert healthy.state.steps == 0


async def test_half_open_lets_exactly_one_probe_through(
    store: StateStore, clock: FrozenClock
) -> None:
    await fail(store, 3)
    clock.advance(5.0)
    passes = await asyncio.gather(*(store.breaker_pass(ROUTE) for _ in range(20)))
    assert sum(p.probe for p in passes) == 1
    assert sum(p.allowed for p in passes) == 1
    assert {p.state.state for p in passes} == {"half-open"}


async def test_a_failed_probe_is_one_cooldown_step(store: StateStore, clock: FrozenClock) -> None:
    await fail(store, 3)
    for expected in (10.0, 20.0, 40.0):
        clock.advance(300.0)
        probe = await store.breaker_pass(ROUTE)
        assert probe.probe
        await store.breaker_report(ROUTE, "failure", epoch=probe.epoch, probe=True, reason="x")
        assert (await store.breaker_state(ROUTE)).retry_in == pytest.approx(expected)
    assert (await store.breaker_state(ROUTE)).steps == 4


async def test_reports_from_before_an_opening_change_nothing(
    store: StateStore, clock: FrozenClock
) -> None:
    stale = await store.breaker_pass(ROUTE)
    await fail(store, 3)
    before = await store.breaker_state(ROUTE)
    for outcome in ("failure", "open", "success", "neutral", "release"):
        await store.breaker_report(ROUTE, outcome, epoch=stale.epoch, probe=True)  # type: ignore[arg-type]
    assert await store.breaker_state(ROUTE) == before
    # Half-open, a stale release cannot free the probe for a second prober.
    clock.advance(5.0)
    assert (await store.breaker_pass(ROUTE)).probe
    await store.breaker_report(ROUTE, "release", epoch=stale.epoch, probe=True)
    assert not (await store.breaker_pass(ROUTE)).allowed


async def test_a_released_or_neutral_probe_lets_the_next_caller_probe(
    store: StateStore, clock: FrozenClock
) -> None:
    await fail(store, 3)
    clock.advance(5.0)
    for outcome in ("release", "neutral"):
        probe = await store.breaker_pass(ROUTE)
        assert probe.probe
        await store.breaker_report(ROUTE, outcome, epoch=probe.epoch, probe=True)  # type: ignore[arg-type]
    assert (await store.breaker_pass(ROUTE)).probe
    assert (await store.breaker_state(ROUTE)).steps == 1


async def test_a_probe_never_reported_is_given_up_after_its_ttl(
    store: StateStore, clock: FrozenClock
) -> None:
    await fail(store, 3)
    clock.advance(5.0)
    assert (await store.breaker_pass(ROUTE)).probe  # its process dies
    clock.advance(CONFIG.probe_ttl - 1.0)
    assert not (await store.breaker_pass(ROUTE)).allowed
    clock.advance(1.0)
    assert (await store.breaker_pass(ROUTE)).probe


async def test_open_opens_at_once_but_once_per_epoch(store: StateStore, clock: FrozenClock) -> None:
    passes = [await store.breaker_pass(ROUTE) for _ in range(5)]
    for granted in passes:  # a dead daemon: every call in flight sees connection refused
        await store.breaker_report(ROUTE, "open", epoch=granted.epoch, reason="refused")
    state = await store.breaker_state(ROUTE)
    assert (state.state, state.steps, state.epoch) == ("open", 1, 1)
    assert state.retry_in == pytest.approx(5.0)


async def test_success_closes_and_resets_the_cooldown(
    store: StateStore, clock: FrozenClock
) -> None:
    await fail(store, 2)
    granted = await store.breaker_pass(ROUTE)
    await store.breaker_report(ROUTE, "success", epoch=granted.epoch)
    assert (await store.breaker_state(ROUTE)).failures == 0
    await fail(store, 3)
    clock.advance(5.0)
    probe = await store.breaker_pass(ROUTE)
    await store.breaker_report(ROUTE, "failure", epoch=probe.epoch, probe=True)
    clock.advance(10.0)
    probe = await store.breaker_pass(ROUTE)
    await store.breaker_report(ROUTE, "success", epoch=probe.epoch, probe=True)
    await fail(store, 3)
    state = await store.breaker_state(ROUTE)
    assert (state.steps, state.retry_in) == (1, pytest.approx(5.0))


async def test_disable_holds_the_route_off_whatever_the_state(
    store: StateStore, clock: FrozenClock
) -> None:
    stale = await store.breaker_pass(ROUTE)
    await fail(store, 3)
    await store.breaker_report(ROUTE, "disable", epoch=stale.epoch, reason="401", disable_s=600)
    state = await store.breaker_state(ROUTE)
    assert (state.state, state.reason, state.steps) == ("open", "401", 1)
    assert state.retry_in == pytest.approx(600.0)
    await store.breaker_report(ROUTE, "disable", epoch=0, reason="402", disable_s=60)
    assert (await store.breaker_state(ROUTE)).retry_in == pytest.approx(600.0)  # never shorter
    clock.advance(600.0)
    assert (await store.breaker_pass(ROUTE)).probe


async def test_breakers_of_different_keys_are_independent(store: StateStore) -> None:
    await fail(store, 3)
    other = await store.breaker_pass(KEY)
    assert other.allowed
    assert other.state.state == "closed"


# -- gates and facts ------------------------------------------------------------------------


async def test_a_gate_never_holds_more_than_its_limit(store: StateStore) -> None:
    takers = await asyncio.gather(*(store.gate_take("hosted", limit=4) for _ in range(50)))
    held = [lease for lease in takers if lease is not None]
    assert len(held) == 4
    assert sorted(lease.queued_behind for lease in held) == [0, 1, 2, 3]
    assert await store.gate_count("hosted") == 4
    await store.gate_release(held[0])
    await store.gate_release(held[0])  # idempotent
    assert await store.gate_count("hosted") == 3
    assert await store.gate_take("hosted", limit=4) is not None
    assert await store.gate_take("hosted", limit=4) is None
    assert await store.gate_count("elsewhere") == 0


async def test_facts_expire_after_their_ttl(store: StateStore, clock: FrozenClock) -> None:
    assert await store.fact_get("limit") is None
    await store.fact_set("limit", "8", ttl_s=1.0)
    assert await store.fact_get("limit") == "8"
    await store.fact_set("limit", "6", ttl_s=1.0)
    assert await store.fact_get("limit") == "6"
    clock.advance(1.0)  # memory follows the store clock; Redis expires by itself

    async def gone() -> bool:
        return await store.fact_get("limit") is None

    assert await eventually(gone, timeout=10.0) is not None


async def test_a_fact_needs_a_positive_ttl(store: StateStore) -> None:
    with pytest.raises(ValueError, match="positive ttl_s"):
        await store.fact_set("limit", "8", ttl_s=0)


async def test_health_of_a_healthy_store(store: StateStore) -> None:
    await store.view(KEY, priors=PRIORS)
    health = store.health()
    assert (health.kind, health.ok, health.using_fallback) == (store.kind, True, False)
