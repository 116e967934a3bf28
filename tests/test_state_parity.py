"""One algorithm, two implementations: `MemoryStore` and the Redis store's Lua. Random
sequences of operations, under one frozen clock, must get the same answers from both."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import astuple
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsollama._state import BreakerConfig, Estimates, Lease, ServerQueue, StateStore
from dsollama._state.memory import MemoryStore

from .redis_server import FrozenClock, RedisServer

KEY = "local:127.0.0.1:11434|deepseek-r1:8b"
ROUTE = "local:127.0.0.1:11434"
CONFIG = BreakerConfig(threshold=2, cooldown=1.0, cooldown_max=8.0, probe_ttl=4.0)

seconds = st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False)
small = st.integers(min_value=0, max_value=30)
slots = st.integers(min_value=1, max_value=3)
servers = st.none() | st.builds(ServerQueue, running=st.integers(0, 4), waiting=st.integers(0, 4))
priors = st.builds(
    Estimates,
    prompt_s=st.floats(0.01, 2.0),
    generation_s=st.floats(0.01, 5.0),
    load_s=st.floats(0.01, 5.0),
)


def pick(items: list[Any], index: int) -> Any:
    """Counting from the newest: small indexes (which Hypothesis favours) hit the requests
    that queued behind the others."""
    return items[-1 - index % len(items)]


# -- the Redis store against the memory store ---------------------------------------------


def flat(view: Any) -> tuple[float, ...]:
    return (view.in_flight, view.running, view.waiting, *astuple(view.estimates))


admit = st.tuples(
    st.just("admit"),
    st.none() | st.none() | st.floats(0.0, 15.0),
    st.just(0.0) | seconds,
    servers,
)
first_token = st.tuples(st.just("first_token"), small)
# Weighted towards queues that build up: admissions and first tokens come twice as often.
admission_ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), seconds),
        admit,
        admit,
        first_token,
        first_token,
        st.tuples(st.just("finish"), small, st.booleans(), st.none() | seconds),
        st.tuples(st.just("observe"), seconds),
        st.tuples(st.just("predict"), st.none() | small, st.just(0.0) | seconds, servers),
    ),
    min_size=4,
    max_size=40,
)
report = st.tuples(
    st.just("report"),
    st.sampled_from(["success", "failure", "failure", "open", "neutral", "release", "disable"]),
    st.none() | small,
    st.booleans(),
    st.none() | st.floats(0.0, 20.0),
)
breaker_and_gate_ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), seconds),
        st.tuples(st.just("pass")),
        report,
        report,
        st.tuples(st.just("gate_take"), st.integers(1, 3)),
        st.tuples(st.just("gate_release"), small),
    ),
    min_size=4,
    max_size=40,
)
SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.redis
@settings(SETTINGS, max_examples=150)
@given(ops=admission_ops, slots=slots, priors=priors)
def test_the_redis_store_admits_and_learns_exactly_as_the_memory_store(
    redis_server: RedisServer, ops: list[tuple[Any, ...]], slots: int, priors: Estimates
) -> None:
    asyncio.run(_against_memory(redis_server.url, ops, priors, slots))


@pytest.mark.redis
@settings(SETTINGS, max_examples=150)
@given(ops=breaker_and_gate_ops)
def test_the_redis_stores_breakers_and_gates_follow_the_memory_store(
    redis_server: RedisServer, ops: list[tuple[Any, ...]]
) -> None:
    asyncio.run(_against_memory(redis_server.url, ops, Estimates(0.5, 1.0, 2.0), 1))


async def _against_memory(url: str, ops: list[tuple[Any, ...]], priors: Estimates, n: int) -> None:
    """Run ``ops`` on both stores (``n`` slots), comparing every answer and, after each
    step, the whole visible state."""
    from dsollama._state.redis_store import RedisStore

    clock = FrozenClock()
    memory = MemoryStore(breaker=CONFIG, clock=clock)
    redis = RedisStore(
        url,
        namespace=f"p{uuid.uuid4().hex[:12]}",
        breaker=CONFIG,
        lease_ttl=3600.0,
        op_timeout=10.0,
        clock=clock,
    )
    stores: tuple[StateStore, StateStore] = (memory, redis)
    leases: list[tuple[Lease, Lease]] = []
    gates: list[tuple[Lease, Lease]] = []
    passes: list[Any] = []
    try:
        for op, *args in ops:
            if op == "advance":
                clock.advance(args[0])
            elif op == "admit":
                limit, cold, server = args
                a, b = [
                    await s.admit(
                        KEY, slots=n, priors=priors, limit_s=limit, cold_s=cold, server=server
                    )
                    for s in stores
                ]
                assert b.predicted_s == pytest.approx(a.predicted_s, rel=1e-12, abs=1e-12)
                assert (a.in_flight, a.lease is None) == (b.in_flight, b.lease is None)
                if a.lease is not None and b.lease is not None:
                    assert (a.lease.started, a.lease.queued_behind) == (
                        b.lease.started,
                        b.lease.queued_behind,
                    )
                    leases.append((a.lease, b.lease))
            elif leases and op == "first_token":
                for store, lease in zip(stores, pick(leases, args[0]), strict=True):
                    await store.first_token(lease)
            elif leases and op == "finish":
                for store, lease in zip(stores, pick(leases, args[0]), strict=True):
                    await store.finish(lease, ok=args[1], load_s=args[2])
            elif op == "observe":
                for store in stores:
                    await store.observe(KEY, load_s=args[0])
            elif op == "predict":
                index, cold, server = args
                pair = pick(leases, index) if leases and index is not None else (None, None)
                a_s, b_s = [
                    await s.predict(
                        KEY, slots=n, priors=priors, lease=lease, cold_s=cold, server=server
                    )
                    for s, lease in zip(stores, pair, strict=True)
                ]
                assert b_s == pytest.approx(a_s, rel=1e-12, abs=1e-12)
            elif op == "pass":
                a_p, b_p = [await s.breaker_pass(ROUTE) for s in stores]
                assert (a_p.allowed, a_p.probe, a_p.epoch) == (b_p.allowed, b_p.probe, b_p.epoch)
                passes.append(a_p)
            elif op == "report":
                outcome, index, probe, disable_s = args
                granted = pick(passes, index) if passes and index is not None else None
                epoch = (
                    granted.epoch
                    if granted is not None
                    else (await memory.breaker_state(ROUTE)).epoch
                )
                for store in stores:
                    await store.breaker_report(
                        ROUTE,
                        outcome,
                        epoch=epoch,
                        reason=outcome,
                        probe=granted.probe if granted is not None else probe,
                        disable_s=disable_s,
                    )
            elif op == "gate_take":
                a_g, b_g = [await s.gate_take(ROUTE, limit=args[0]) for s in stores]
                assert (a_g is None) == (b_g is None)
                if a_g is not None and b_g is not None:
                    assert a_g.queued_behind == b_g.queued_behind
                    gates.append((a_g, b_g))
            elif gates and op == "gate_release":
                for store, gate in zip(stores, pick(gates, args[0]), strict=True):
                    await store.gate_release(gate)
            # After every step: the same view, breaker and gate, to the last bit.
            a_v, b_v = [await s.view(KEY, priors=priors) for s in stores]
            assert flat(b_v) == pytest.approx(flat(a_v), rel=1e-12, abs=1e-12)
            a_b, b_b = [await s.breaker_state(ROUTE) for s in stores]
            assert (a_b.state, a_b.failures, a_b.steps, a_b.reason, a_b.epoch) == (
                b_b.state,
                b_b.failures,
                b_b.steps,
                b_b.reason,
                b_b.epoch,
            )
            assert b_b.retry_in == pytest.approx(a_b.retry_in, rel=1e-12, abs=1e-12)
            assert await memory.gate_count(ROUTE) == await redis.gate_count(ROUTE)
    finally:
        await redis.aclose()
