"""What only the Redis store does: server time, leases that expire, renewal, processes
that die, admission that stays atomic across processes, URLs and credentials."""

from __future__ import annotations

import asyncio
import logging
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator

import pytest

from dsollama._exceptions import ConfigError
from dsollama._state import Estimates, StoreError
from dsollama._state.redis_store import RedisStore

from .redis_server import FrozenClock, RedisServer, eventually

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PRIORS = Estimates(prompt_s=0.5, generation_s=1.0, load_s=5.0)
KEY = "local:127.0.0.1:11434|deepseek-r1:8b"


@pytest.fixture
async def store(redis_server: RedisServer, redis_namespace: str) -> AsyncIterator[RedisStore]:
    made = RedisStore(redis_server.url, namespace=redis_namespace, op_timeout=5.0)
    try:
        yield made
    finally:
        await made.aclose()


async def python(code: str, *args: str) -> asyncio.subprocess.Process:
    """Another process running ``code`` (dsollama importable), talked to over pipes."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdin=PIPE, stdout=PIPE
    )


async def line_from(child: asyncio.subprocess.Process) -> str:
    assert child.stdout is not None
    return (await asyncio.wait_for(child.stdout.readline(), timeout=60)).decode().strip()


async def reap(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.kill()
        await child.wait()


async def in_flight(store: RedisStore) -> int:
    return (await store.view(KEY, priors=PRIORS)).in_flight


async def test_leases_are_stamped_with_the_servers_clock(store: RedisStore) -> None:
    before = await store.server_time()
    lease = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    gate = await store.gate_take("hosted", limit=2)
    after = await store.server_time()
    assert lease is not None
    assert gate is not None
    assert before <= lease.started <= gate.started <= after
    assert lease.store == gate.store == "redis"


async def test_a_lease_not_renewed_expires_after_the_lease_time(
    redis_server: RedisServer, redis_namespace: str
) -> None:
    clock = FrozenClock()
    store = RedisStore(
        redis_server.url, namespace=redis_namespace, lease_ttl=600.0, op_timeout=5.0, clock=clock
    )
    try:
        lease = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
        gate = await store.gate_take("hosted", limit=1)
        assert lease is not None
        assert gate is not None
        await store.first_token(lease)
        clock.advance(599.9)
        assert await in_flight(store) == 1
        assert await store.gate_count("hosted") == 1
        clock.advance(0.2)
        assert await in_flight(store) == 0
        assert await store.gate_count("hosted") == 0
        assert await store.gate_take("hosted", limit=1) is not None
        await store.finish(lease, ok=True)  # too late: nothing to free, nothing learned
        assert (await store.view(KEY, priors=PRIORS)).estimates.samples == 0
    finally:
        await store.aclose()


_HOLD_TWO = """
import asyncio, sys
from dsollama._state import Estimates
from dsollama._state.redis_store import RedisStore

async def main():
    url, namespace, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = RedisStore(url, namespace=namespace, lease_ttl=ttl, op_timeout=5.0)
    for _ in range(2):
        await store.admit(sys.argv[4], slots=4, priors=Estimates(0.5, 1.0, 5.0))
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_process_killed_while_holding_two_leases_frees_them_within_the_lease_time(
    redis_server: RedisServer, redis_namespace: str, store: RedisStore
) -> None:
    lease_ttl = 1.0
    child = await python(_HOLD_TWO, redis_server.url, redis_namespace, str(lease_ttl), KEY)
    try:
        assert await line_from(child) == "held"
        assert await in_flight(store) == 2
        # The child renews: its leases outlive their first expiry.
        exp_key = store._load_keys(KEY)[1]
        admin = redis_server.client()
        first_expiry = max(score for _, score in admin.zrange(exp_key, 0, -1, withscores=True))

        async def past_first_expiry() -> bool:
            return await store.server_time() > first_expiry + 0.1

        assert await eventually(past_first_expiry, timeout=10.0) is not None
        assert await in_flight(store) == 2
        child.kill()  # SIGKILL: no finally, no atexit, no goodbye
        await child.wait()

        async def freed() -> bool:
            return await in_flight(store) == 0

        took = await eventually(freed, timeout=10.0)
        assert took is not None, "the dead process's leases were never freed"
        assert took <= lease_ttl + 0.3, f"freed after {took:.2f}s, lease time {lease_ttl}s"
    finally:
        await reap(child)


_ADMIT_BURST = """
import asyncio, sys
from dsollama._state import Estimates
from dsollama._state.redis_store import RedisStore

async def main():
    store = RedisStore(sys.argv[1], namespace=sys.argv[2], lease_ttl=60.0, op_timeout=10.0)
    priors = Estimates(10.0, 10.0, 1.0)
    await store.admit("warm-up", slots=1, priors=priors)  # connected, script loaded
    print("ready", flush=True)
    sys.stdin.readline()
    results = await asyncio.gather(
        *(store.admit(sys.argv[3], slots=1, priors=priors, limit_s=55.0) for _ in range(40))
    )
    print(sum(r.lease is not None for r in results), flush=True)
    await store.aclose()

asyncio.run(main())
"""


async def test_admission_is_atomic_across_processes(
    redis_server: RedisServer, redis_namespace: str, store: RedisStore
) -> None:
    # One slot, 10 s prompt and 10 s generation: the k-th waiting request predicts
    # 10 + 20k s, so a 55 s limit admits exactly three among everyone asking at once.
    priors = Estimates(10.0, 10.0, 1.0)
    await store.admit("warm-up", slots=1, priors=priors)
    children = [
        await python(_ADMIT_BURST, redis_server.url, redis_namespace, KEY) for _ in range(3)
    ]
    try:
        for child in children:
            assert await line_from(child) == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        mine = await asyncio.gather(
            *(store.admit(KEY, slots=1, priors=priors, limit_s=55.0) for _ in range(40))
        )
        counts = [sum(a.lease is not None for a in mine)]
        for child in children:
            counts.append(int(await line_from(child)))
            assert await child.wait() == 0
        assert sum(counts) == 3, counts
        assert await store.predict(KEY, slots=1, priors=priors) > 55.0
        assert (await store.view(KEY, priors=priors)).in_flight == 3
    finally:
        for child in children:
            await reap(child)


async def test_stores_in_other_namespaces_do_not_see_each_other(
    redis_server: RedisServer, redis_namespace: str, store: RedisStore
) -> None:
    await store.admit(KEY, slots=1, priors=PRIORS)
    other = RedisStore(redis_server.url, namespace=redis_namespace + "x", op_timeout=5.0)
    try:
        assert (await other.view(KEY, priors=PRIORS)).in_flight == 0
    finally:
        await other.aclose()


async def test_a_unix_socket_url_works(redis_server: RedisServer, redis_namespace: str) -> None:
    if not redis_server.unix_socket.exists():
        pytest.skip("the temporary folder's path is too long for a unix socket")
    store = RedisStore(
        f"unix://{redis_server.unix_socket}?db=0", namespace=redis_namespace, op_timeout=5.0
    )
    try:
        assert (await store.admit(KEY, slots=1, priors=PRIORS)).lease is not None
        assert store.health().url == f"unix://{redis_server.unix_socket}?db=0"
    finally:
        await store.aclose()


async def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    from dsollama.testing.redis_server import free_port

    secret = "hunter2-s3cret"
    url = f"redis://:{secret}@127.0.0.1:{free_port()}/3"
    store = RedisStore(url, op_timeout=0.5)
    try:
        with caplog.at_level(logging.DEBUG, logger="dsollama"):
            with pytest.raises(StoreError) as raised:
                await store.admit(KEY, slots=1, priors=PRIORS)
        health = store.health()
        assert health.url == f"redis://127.0.0.1:{url.rsplit(':', 1)[1]}"
        assert health.ok is False
        assert health.last_error
        for text in (str(raised.value), repr(store), str(health), caplog.text):
            assert secret not in text
    finally:
        await store.aclose()


def test_a_wrong_url_or_namespace_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Redis URL") as raised:
        RedisStore("http://:pw@cache:6379")
    assert "pw" not in str(raised.value)
    assert "redis://" in (raised.value.hint or "")
    with pytest.raises(ConfigError, match="namespace"):
        RedisStore("redis://127.0.0.1:6379", namespace="a{b}")


def test_without_redis_installed_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis → ImportError
    with pytest.raises(ConfigError) as raised:
        RedisStore("redis://127.0.0.1:6379/0")
    assert "pip install 'dsollama[redis]'" in (raised.value.hint or "")


async def test_a_burst_shares_round_trips_and_survives_a_script_flush(
    redis_server: RedisServer, store: RedisStore
) -> None:
    await store.admit("warm-up", slots=1, priors=PRIORS)
    redis_server.client().script_flush()  # as after a Redis restart: every script unknown
    admissions = await asyncio.gather(
        *(store.admit(KEY, slots=1_000_000, priors=PRIORS) for _ in range(200))
    )
    assert all(a.lease is not None for a in admissions)
    assert sorted(a.in_flight for a in admissions) == list(range(200))
    assert len({a.lease.id for a in admissions if a.lease}) == 200
    await asyncio.gather(*(store.finish(a.lease, ok=True) for a in admissions if a.lease))
    assert await in_flight(store) == 0


async def test_a_key_that_learned_nothing_is_not_kept_for_the_idle_time(
    store: RedisStore,
) -> None:
    # A caller naming a new model in every request: the id counter of a key that never
    # learned anything goes with its leases, not a day later (idle_ttl).
    unknown = "local:127.0.0.1:11434|nobody-has-1:1b"
    lease = (await store.admit(unknown, slots=1, priors=PRIORS)).lease
    assert lease is not None
    await store.finish(lease, ok=False)
    lease_key_ms = store.lease_ttl * 1000 + 1000
    est = store._load_keys(unknown)[2]
    assert 0 < await store._redis.pttl(est) <= lease_key_ms
    # One that learned keeps its estimates for the idle time.
    learned = (await store.admit(KEY, slots=1, priors=PRIORS)).lease
    assert learned is not None
    await store.first_token(learned)
    await store.finish(learned, ok=True)
    assert await store._redis.pttl(store._load_keys(KEY)[2]) > lease_key_ms


async def test_ids_stay_unique_and_in_order_when_the_counter_key_expired(
    store: RedisStore,
) -> None:
    first = (await store.admit(KEY, slots=4, priors=PRIORS)).lease
    second = (await store.admit(KEY, slots=4, priors=PRIORS)).lease
    assert first is not None
    assert second is not None
    await store._redis.delete(store._load_keys(KEY)[2])  # as if it had expired meanwhile
    third = (await store.admit(KEY, slots=4, priors=PRIORS)).lease
    assert third is not None
    assert int(third.id) > int(second.id) > int(first.id)
    assert await in_flight(store) == 3
