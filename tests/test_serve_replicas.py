"""`dsollama serve` replicas sharing routing state through Redis behave like one serve.

Two apps (each its own process's worth: its own client, store connection and event
loop) front one daemon with a single slot. What one replica has in flight there, the
other sees; the store's health is in /readyz and /metrics, and a store that dies fails
no call and leaves the server ready.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from .conftest import Stack
from .redis_server import RedisServer
from .serve_harness import MODEL, USER, Served, http, serving
from .test_serve_ops import metric, parse_metrics

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture(autouse=True)
def patient_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Store operations with seconds, not the default tens of milliseconds, to answer.

    A test machine under load can take longer than that with Redis up, and the replica
    would then rightly route on its own view; these tests are about sharing, and about a
    Redis that is gone (a refused connection, whatever the deadline).
    """
    monkeypatch.setenv("DSOLLAMA_STATE_OP_TIMEOUT", "2.0")


CHAT = {"model": MODEL, "messages": USER, "think": False}


def _one_slot(stack: Stack, **extra: Any) -> dict[str, Any]:
    # One slot, ~1 s answers: a request queued behind another would wait out the whole
    # 0.6 s first-token budget before going elsewhere.
    stack.ollama.configure(tokens_per_second=30, answer_tokens=30)
    return {"first_token_timeout": 0.6, "local_slots": 1, **extra}


@contextlib.asynccontextmanager
async def holding_the_slot(served: Served) -> AsyncIterator[None]:
    """A streamed answer on ``served`` that has its first token, so it holds the slot."""
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", f"{served.url}/api/chat", json={**CHAT, "stream": True}) as held,
    ):
        lines = held.aiter_lines()
        first = json.loads(await anext(lines))
        assert first["done"] is False
        yield
        rest = [json.loads(line) async for line in lines if line]
    assert rest[-1]["served_by"]["kind"] == "local"


async def _ask_b_while_a_holds_the_slot(
    stack: Stack, **settings: Any
) -> tuple[dict[str, Any], httpx.Response]:
    with serving(stack, **settings) as a, serving(stack, **settings) as b:
        learned = await http("POST", f"{b.url}/api/chat", json={**CHAT, "stream": False})
        assert learned.json()["served_by"]["kind"] == "local"  # B knows how long one takes
        async with holding_the_slot(a):
            answer = await http("POST", f"{b.url}/api/chat", json={**CHAT, "stream": False})
    return answer.json(), answer


async def test_a_replica_sees_the_other_replicas_request_and_goes_hosted_at_once(
    stack: Stack, redis_server: RedisServer, redis_namespace: str
) -> None:
    shared = {"state_url": redis_server.url, "state_namespace": redis_namespace}
    body, answer = await _ask_b_while_a_holds_the_slot(stack, **_one_slot(stack, **shared))
    assert body["served_by"]["kind"] == "hosted"
    # Skipped before any request reached the daemon, not queued and timed out there.
    first = body["attempts"][0]
    assert (first["kind"], first["outcome"]) == ("local", "skipped")
    assert "1 in flight" in first["detail"]
    assert "in flight" in answer.headers["x-dsollama-fallback-reason"]


async def test_without_a_shared_store_a_replica_queues_behind_the_other(stack: Stack) -> None:
    body, _ = await _ask_b_while_a_holds_the_slot(stack, **_one_slot(stack))
    # The baseline the shared store removes: B queued at the daemon, then gave up.
    assert body["served_by"]["kind"] == "hosted"
    assert body["attempts"][0]["outcome"] == "fallback"
    assert "no first token within" in body["fallback_reason"]


async def test_readyz_and_metrics_report_the_store_and_a_dead_store_fails_nothing(
    stack: Stack, private_redis: RedisServer, redis_namespace: str
) -> None:
    password = "s3cret-redis-password"
    private_redis.client().config_set("requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{private_redis.port}/0"
    with serving(stack, state_url=url, state_namespace=redis_namespace) as served:
        chat = await http("POST", f"{served.url}/api/chat", json={**CHAT, "stream": False})
        assert chat.status_code == 200
        ready = await http("GET", f"{served.url}/readyz")
        healthy = parse_metrics((await http("GET", f"{served.url}/metrics")).text)
        private_redis.kill()
        down = await http("GET", f"{served.url}/readyz")
        after = await http("POST", f"{served.url}/api/chat", json={**CHAT, "stream": False})
        failed = parse_metrics((await http("GET", f"{served.url}/metrics")).text)

    store = ready.json()["store"]
    assert store["kind"] == "redis"
    assert store["url"] == f"redis://127.0.0.1:{private_redis.port}/0"  # no password
    assert (store["ok"], store["using_fallback"], store["fallbacks"]) == (True, False, 0)
    assert store["latency_p50_s"] > 0
    assert store["latency_p99_s"] >= store["latency_p50_s"]
    assert "note" not in store
    assert metric(healthy, "dsollama_state_store_up", kind="redis") == 1
    assert metric(healthy, "dsollama_state_store_fallbacks_total", kind="redis") == 0
    assert metric(healthy, "dsollama_state_store_latency_seconds", quantile="0.5") > 0
    assert metric(healthy, "dsollama_state_store_latency_seconds", quantile="0.99") > 0

    # The store is gone: still ready (the routes can answer), and the body says why.
    assert down.status_code == 200
    gone = down.json()["store"]
    assert down.json()["ready"] is True
    assert (gone["ok"], gone["using_fallback"], gone["fallbacks"]) == (False, True, 1)
    assert gone["last_error"]
    assert "no call fails" in gone["note"]
    assert after.status_code == 200
    assert after.json()["served_by"]["kind"] == "local"
    assert metric(failed, "dsollama_state_store_up", kind="redis") == 0
    assert metric(failed, "dsollama_state_store_fallbacks_total", kind="redis") == 1
    for text in (ready.text, down.text):
        assert password not in text


async def test_readyz_shows_a_breaker_another_replica_opened(
    stack: Stack, redis_server: RedisServer, redis_namespace: str
) -> None:
    shared = {"state_url": redis_server.url, "state_namespace": redis_namespace}
    with serving(stack, **shared) as a, serving(stack, **shared) as b:
        stack.ollama.refuse_connections()
        answer = await http("POST", f"{a.url}/api/chat", json={**CHAT, "stream": False})
        assert answer.json()["fallback_reason"] == "local daemon unreachable"
        ready = (await http("GET", f"{b.url}/readyz")).json()
    local = next(r for r in ready["routes"] if r["kind"] == "local")
    assert local["breaker"] == "open"  # B made no call: it read A's verdict from the store
