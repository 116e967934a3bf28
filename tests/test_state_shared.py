"""`SharedStore`: Redis killed, stalled or full never fails an operation; one WARNING when
the process goes on its own view, one INFO when it rejoins."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from dsollama._state import BreakerConfig, Estimates, StateStore
from dsollama._state.memory import MemoryStore
from dsollama._state.open import open_store
from dsollama._state.redis_store import RedisStore
from dsollama._state.shared import SharedStore

from .redis_server import RedisServer, eventually

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PRIORS = Estimates(prompt_s=0.5, generation_s=1.0, load_s=5.0)
KEY = "local:127.0.0.1:11434|deepseek-r1:8b"
ROUTE = "local:127.0.0.1:11434"


def shared(url: str, namespace: str, *, op_timeout: float = 1.0) -> SharedStore:
    # Generous timeouts where the test is not about them: a loaded machine must not look
    # like a failing Redis.
    primary = RedisStore(url, namespace=namespace, op_timeout=op_timeout)
    return SharedStore(primary, op_timeout=op_timeout, retry_every=0.05)


@pytest.fixture
async def private_store(
    private_redis: RedisServer, redis_namespace: str
) -> AsyncIterator[SharedStore]:
    store = shared(private_redis.url, redis_namespace)
    try:
        yield store
    finally:
        await store.aclose()


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dsollama" and r.levelno == level]


async def one_call(store: StateStore, worker: int) -> None:
    """What the router does around one call: breaker, gate, lease, learning."""
    granted = await store.breaker_pass(ROUTE)
    gate = await store.gate_take("hosted", limit=1000)
    admission = await store.admit(KEY, slots=4, priors=PRIORS)
    assert admission.lease is not None
    await store.first_token(admission.lease)
    await store.predict(KEY, slots=4, priors=PRIORS, lease=admission.lease)
    await store.finish(admission.lease, ok=True, load_s=0.5)
    if gate is not None:
        await store.gate_release(gate)
    await store.breaker_report(ROUTE, "success", epoch=granted.epoch, probe=granted.probe)
    await store.view(KEY, priors=PRIORS)
    await store.fact_set(f"w{worker}", "1", ttl_s=30)
    await store.fact_get(f"w{worker}")


async def test_killing_redis_mid_burst_fails_no_operation_and_warns_once(
    private_redis: RedisServer, private_store: SharedStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dsollama")
    done = 0
    half_done = asyncio.Event()

    async def worker(n: int) -> None:
        nonlocal done
        for _ in range(30):
            await one_call(private_store, n)
            done += 1
            if done == 100:
                half_done.set()

    async def killer() -> None:
        await half_done.wait()
        await asyncio.to_thread(private_redis.kill)

    await asyncio.gather(*(worker(n) for n in range(8)), killer())
    assert done == 8 * 30
    health = private_store.health()
    assert (health.ok, health.using_fallback, health.fallbacks) == (False, True, 1)
    assert health.last_error
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert private_redis.url.rsplit("/", 1)[0] in warnings[0]
    assert "own view" in warnings[0]

    # Back: the next operations probe it (in the background) and rejoin once.
    await asyncio.to_thread(private_redis.start)

    async def rejoined() -> bool:
        await one_call(private_store, 0)
        return not private_store.health().using_fallback

    assert await eventually(rejoined, timeout=15.0) is not None
    infos = [m for m in messages(caplog, logging.INFO) if "is back" in m]
    assert len(infos) == 1, infos
    assert len(messages(caplog, logging.WARNING)) == 1
    health = private_store.health()
    assert (health.ok, health.using_fallback, health.fallbacks) == (True, False, 1)
    # Sharing again: a lease taken now is on Redis, where another process sees it.
    lease = (await private_store.admit(KEY, slots=4, priors=PRIORS)).lease
    assert lease is not None
    assert lease.store == "redis"
    other = RedisStore(private_redis.url, namespace=private_store.primary.namespace)  # type: ignore[attr-defined]
    try:
        assert (await other.view(KEY, priors=PRIORS)).in_flight == 1
    finally:
        await other.aclose()


async def test_a_stalled_redis_costs_one_short_timeout_then_nothing(
    private_redis: RedisServer, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    op_timeout = 0.1
    store = shared(private_redis.url, redis_namespace, op_timeout=op_timeout)
    try:
        await store.admit(KEY, slots=1, priors=PRIORS)  # connected, healthy
        assert store.health().ok
        admin = private_redis.client()
        # Writes (every script) wait: a stalled server. WRITE mode, so that this very
        # client can still unpause it.
        admin.client_pause(10_000, all=False)
        started = time.perf_counter()
        admission = await store.admit(KEY, slots=1, priors=PRIORS)
        first = time.perf_counter() - started
        started = time.perf_counter()
        await store.breaker_pass(ROUTE)
        second = time.perf_counter() - started
        admin.client_unpause()
        assert admission.lease is not None
        assert admission.lease.store == "memory"
        assert op_timeout * 0.9 <= first < op_timeout + 0.5
        assert second < op_timeout / 2  # on its own view now: no more waiting
        warnings = messages(caplog, logging.WARNING)
        assert len(warnings) == 1
        assert "no answer within 100 ms" in warnings[0]
    finally:
        await store.aclose()


async def test_a_full_redis_is_a_failing_redis(
    private_redis: RedisServer, private_store: SharedStore, caplog: pytest.LogCaptureFixture
) -> None:
    await private_store.view(KEY, priors=PRIORS)
    private_redis.client().config_set("maxmemory", "1")  # noeviction: every write refused
    admission = await private_store.admit(KEY, slots=1, priors=PRIORS)
    assert admission.lease is not None
    assert admission.lease.store == "memory"
    health = private_store.health()
    assert health.using_fallback
    assert "maxmemory" in (health.last_error or "")
    assert len(messages(caplog, logging.WARNING)) == 1


async def test_on_its_own_view_a_process_still_counts_what_it_had_in_flight(
    private_redis: RedisServer, private_store: SharedStore
) -> None:
    # Two requests in flight while Redis is healthy; then Redis dies.
    priors = Estimates(prompt_s=1.0, generation_s=1.0, load_s=1.0)
    held = [await private_store.admit(KEY, slots=1, priors=priors) for _ in range(2)]
    assert all(a.lease is not None and a.lease.store == "redis" for a in held)
    await asyncio.to_thread(private_redis.kill)
    # A third would queue behind both (≈ 1 + 2 + 1 s): past a 2.5 s limit, refused —
    # the local view knows about the two, it does not start from an idle route.
    third = await private_store.admit(KEY, slots=1, priors=priors, limit_s=2.5)
    assert private_store.health().using_fallback
    assert third.lease is None
    assert third.in_flight == 2
    # Shared leases finish against the local mirror at once (and on Redis in the background).
    for admission in held:
        assert admission.lease is not None
        await private_store.finish(admission.lease, ok=False)
    assert (await private_store.view(KEY, priors=priors)).in_flight == 0
    assert (await private_store.admit(KEY, slots=1, priors=priors, limit_s=2.5)).lease


async def test_leases_go_back_to_the_store_that_issued_them(
    private_redis: RedisServer, private_store: SharedStore
) -> None:
    shared_lease = (await private_store.admit(KEY, slots=4, priors=PRIORS)).lease
    shared_gate = await private_store.gate_take("hosted", limit=4)
    await asyncio.to_thread(private_redis.kill)
    local_lease = (await private_store.admit(KEY, slots=4, priors=PRIORS)).lease
    local_gate = await private_store.gate_take("hosted", limit=4)
    assert shared_lease is not None
    assert shared_gate is not None
    assert local_lease is not None
    assert local_gate is not None
    assert (local_lease.store, local_gate.store) == ("memory", "memory")
    local = private_store.local
    assert (await local.view(KEY, priors=PRIORS)).in_flight == 2  # the mirror and the local one
    assert await local.gate_count("hosted") == 2
    await asyncio.to_thread(private_redis.start)  # empty again: the old leases died with it
    for lease in (shared_lease, local_lease):
        await private_store.finish(lease, ok=True)
    for gate in (shared_gate, local_gate):
        await private_store.gate_release(gate)
    assert (await local.view(KEY, priors=PRIORS)).in_flight == 0
    assert await local.gate_count("hosted") == 0


async def test_health_reports_latency_and_a_url_without_credentials(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    store = shared(redis_server.url, redis_namespace)
    try:
        for n in range(20):
            await one_call(store, n)
        health = store.health()
        assert (health.kind, health.ok, health.using_fallback, health.fallbacks) == (
            "redis",
            True,
            False,
            0,
        )
        assert health.url == redis_server.url
        assert health.latency_p50_s is not None
        assert health.latency_p99_s is not None
        assert 0 < health.latency_p50_s <= health.latency_p99_s < 1.0
    finally:
        await store.aclose()


async def test_open_store_shares_through_redis(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    config = BreakerConfig(threshold=1)
    one = open_store(redis_server.url, breaker=config, namespace=redis_namespace, op_timeout=1.0)
    two = open_store(redis_server.url, breaker=config, namespace=redis_namespace, op_timeout=1.0)
    try:
        assert isinstance(one, SharedStore)
        assert isinstance(one.local, MemoryStore)
        await one.admit(KEY, slots=1, priors=PRIORS)
        assert (await two.view(KEY, priors=PRIORS)).in_flight == 1
        granted = await one.breaker_pass(ROUTE)
        await one.breaker_report(ROUTE, "failure", epoch=granted.epoch)
        assert (await two.breaker_state(ROUTE)).state == "open"
    finally:
        await one.aclose()
        await two.aclose()
