"""Choosing a store (`open_store`), the in-memory store's own promises, and the examples in
the state modules' docstrings."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

from dsollama._exceptions import ConfigError
from dsollama._state import BreakerConfig, Estimates
from dsollama._state.memory import MemoryStore
from dsollama._state.open import open_store

from .redis_server import FrozenClock

CONFIG = BreakerConfig(threshold=2, cooldown=1.0)


@pytest.mark.parametrize("url", [None, "memory", " memory "])
def test_no_url_or_memory_means_this_process_only(url: str | None) -> None:
    store = open_store(url, breaker=CONFIG)
    assert isinstance(store, MemoryStore)
    assert store.breaker_config is CONFIG
    health = store.health()
    assert (health.kind, health.url, health.ok, health.using_fallback) == (
        "memory",
        None,
        True,
        False,
    )


@pytest.mark.parametrize(
    "url", ["http://cache:6379", "redis", "127.0.0.1:6379", "memcached://x", "sqlite:///s.db"]
)
def test_an_unknown_store_is_a_config_error_naming_the_setting_and_the_forms(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        open_store(url, breaker=CONFIG)
    assert "state_url" in raised.value.message
    hint = raised.value.hint or ""
    for form in ("memory", "redis://", "rediss://", "unix://"):
        assert form in hint


def test_a_config_error_does_not_repeat_the_password() -> None:
    with pytest.raises(ConfigError) as raised:
        open_store("http://admin:hunter2-s3cret@cache:6379", breaker=CONFIG)
    assert "hunter2-s3cret" not in raised.value.one_line()


@pytest.mark.anyio
async def test_the_given_clock_is_the_memory_stores_clock() -> None:
    clock = FrozenClock(42.0)
    store = open_store(None, breaker=CONFIG, clock=clock)
    lease = (await store.admit("k", slots=1, priors=Estimates(0.1, 1.0, 1.0))).lease
    assert lease is not None
    assert lease.started == 42.0


@pytest.mark.anyio
async def test_a_shared_store_needs_a_local_store_of_another_kind() -> None:
    from dsollama._state.shared import SharedStore

    with pytest.raises(ValueError, match="another kind"):
        SharedStore(MemoryStore(), MemoryStore())


def test_the_state_package_imports_nothing_heavy() -> None:
    # The router imports it on every client; Redis stays off the path until it is used.
    code = (
        "import sys, dsollama._state, dsollama._state.memory, dsollama._state.redis_store, "
        "dsollama._state.shared; "
        "print(','.join(m for m in ('redis', 'httpx', 'ollama', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "name",
    [
        "dsollama._state",
        "dsollama._state.queue",
        "dsollama._state.breakers",
        "dsollama._state.redis_store",
    ],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


# -- bounded per-model state ------------------------------------------------------------


def test_make_room_forgets_the_oldest_entries_at_rest_only() -> None:
    from dsollama._bounded import make_room

    busy = {f"k{i}": i % 2 == 0 for i in range(8)}  # True: something in flight
    make_room(busy, at_rest=lambda in_flight: not in_flight, limit=8)
    # Down to 6 (three quarters): the two oldest at rest (k1, k3) went, every busy one stayed.
    assert list(busy) == ["k0", "k2", "k4", "k5", "k6", "k7"]
    below = {"a": 1}
    make_room(below, limit=8)
    assert below == {"a": 1}


@pytest.mark.anyio
async def test_a_flood_of_new_model_names_cannot_grow_the_memory_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dsollama import _bounded

    monkeypatch.setattr(_bounded, "KEYS_KEPT", 32)
    store = MemoryStore(breaker=CONFIG)
    priors = Estimates(0.1, 1.0, 1.0)
    held = (await store.admit("local|held", slots=4, priors=priors)).lease
    assert held is not None
    for _ in range(CONFIG.threshold):  # an open breaker is routing's memory of a failure
        await store.breaker_report("local|broken", "failure", epoch=0)
    assert (await store.breaker_state("local|broken")).state == "open"
    for i in range(500):
        key = f"local|nobody-has-{i}:1b"
        lease = (await store.admit(key, slots=1, priors=priors)).lease
        assert lease is not None
        await store.finish(lease, ok=False)
        await store.breaker_pass(key)
        await store.fact_set(f"fact|{i}", "x", ttl_s=60)
    assert len(store._loads) <= 32
    assert len(store._breakers) <= 32
    assert len(store._facts) <= 32
    # What routing still counts on was kept: the lease in flight and the open breaker.
    assert (await store.view("local|held", priors=priors)).in_flight == 1
    assert (await store.breaker_state("local|broken")).state == "open"
