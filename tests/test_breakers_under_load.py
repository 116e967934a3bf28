"""Breakers under concurrency: a burst of failures opens a breaker once, not once per call.

The situation of the issue: many calls are already in flight on a route when it breaks,
and their failures come back together. Counting each would double the cooldown once per
call (12 concurrent 503s: 300 s instead of 5 s), and the healed route would stay unused
for minutes. Here calls are held in flight until every one has passed the breakers
(`HeldTransport`), then fail together; afterwards the breaker must sit at its base
cooldown, a half-open probe must be one step, a retry must ask the breaker again, and a
healed route must be used again within one base cooldown.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import httpx
import pytest

from dsollama import DsollamaError
from dsollama._backends import http_limits
from dsollama._catalogue import normalise_model_name
from dsollama._state import BreakerState, load_key
from dsollama.testing import Fault, FaultPlan

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio

MODEL = "deepseek-r1:8b"
BASE = 0.2
"The base cooldown: a breaker that opened once is open this long."
RUNAWAY = 60.0
"The cooldown cap: what a breaker escalated once per failure would show."
SLACK = 2.0
"Seconds of slack over a cooldown for a 2-core machine running other tests."

# Deadlines long enough that no held call gives up while the others are being started:
# what ends each call here is the fault, never the clock.
LOAD_SETTINGS: dict[str, Any] = {
    "policy": "hosted-first",
    "breaker_cooldown": BASE,
    "breaker_cooldown_max": RUNAWAY,
    "first_token_timeout": 20.0,
    "connect_timeout": 20.0,
    "total_timeout": 40.0,
}


class HeldTransport(httpx.AsyncHTTPTransport):
    """The hosted route's transport, holding chat requests before they leave until let go.

    A held call has taken its breaker passes and is in flight: letting a burst go makes
    every failure come back from calls let through before the breaker opened. The holds
    are the doubles' releasable stalls (`FaultPlan`: thread-safe, any event loop).
    """

    def __init__(self) -> None:
        super().__init__(limits=http_limits())  # a transport of our own brings its own pool
        self._stalls = FaultPlan()
        self.holding = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.holding and request.url.path.endswith("/chat/completions"):
            await self._stalls.stall(0)
        return await super().handle_async_request(request)

    def held(self) -> int:
        return self._stalls.stalled()

    async def wait_for_held(self, count: int, timeout: float = 60.0) -> bool:
        """Wait until exactly ``count`` requests are held; False on timeout."""
        return await asyncio.to_thread(self._stalls.wait_for_stalled, count, timeout)

    def let_go(self) -> None:
        """Stop holding, and let every held request go at once."""
        self.holding = False
        self._stalls.release()


def hosted_route(client: Any) -> str:
    return next(b.route for b in client.router.backends if b.kind == "hosted")


def local_route(client: Any) -> str:
    return next(b.route for b in client.router.backends if b.kind == "local")


def hosted_model_key(attempts: list[Any]) -> str:
    """The key of the hosted (route, model) breaker, from a call's hosted attempt."""
    hosted = next(a for a in attempts if a.kind == "hosted")
    return load_key(hosted.route, normalise_model_name(hosted.model))


def attempts_of(outcome: Any) -> list[Any]:
    return list(getattr(outcome, "attempts", None) or [])


async def breaker(client: Any, key: str) -> BreakerState:
    state = await client.router.state.breaker_state(key)
    assert isinstance(state, BreakerState)
    return state


def max_steps(elapsed: float) -> int:
    """The most cooldown steps a breaker can take in ``elapsed`` seconds, one per period.

    The k-th failed probe comes at least BASE·(2^k − 1) after the opening.
    """
    return 1 + math.floor(math.log2(elapsed / BASE + 1))


class Burst:
    """``count`` concurrent chats: tasks on the test's loop (async) or one thread per call
    (sync; a thread pool would queue them, and a queued call is not in flight)."""

    def __init__(self, kind: str, client: Any, count: int) -> None:
        self.results: list[Any] = [None] * count
        self._finished = 0
        self._changed = threading.Condition()
        self._tasks: list[asyncio.Task[Any]] = []  # a task needs a reference to live
        if kind == "async":
            for index in range(count):
                task = asyncio.ensure_future(client.chat(MODEL, USER, think=False))
                task.add_done_callback(lambda t, i=index: self._done(i, t))
                self._tasks.append(task)
            return
        for index in range(count):
            threading.Thread(target=self._run, args=(client, index), daemon=True).start()

    def _run(self, client: Any, index: int) -> None:
        try:
            self._finish(index, client.chat(MODEL, USER, think=False))
        except Exception as exc:  # the outcome under test
            self._finish(index, exc)

    def _done(self, index: int, task: asyncio.Task[Any]) -> None:
        self._finish(index, task.exception() or task.result())

    def _finish(self, index: int, outcome: Any) -> None:
        with self._changed:
            self.results[index] = outcome
            self._finished += 1
            self._changed.notify_all()

    def wait_finished(self, count: int, timeout: float = 60.0) -> bool:
        """Block until ``count`` calls have ended; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._finished >= count, timeout)

    async def outcomes(self) -> list[Any]:
        """Every call's response or exception, once all have ended."""
        assert await asyncio.to_thread(self.wait_finished, len(self.results)), "calls hung"
        return self.results


async def held_burst(kind: str, client: Any, held: HeldTransport, count: int) -> list[Any]:
    """``count`` calls in flight on the hosted route at once, then let go together."""
    burst = Burst(kind, client, count)
    assert await held.wait_for_held(count), (
        f"only {held.held()} of {count} calls reached the hosted route"
    )
    held.let_go()
    return await burst.outcomes()


# -- a burst opens each breaker once, and the healed route is back within one cooldown -------


@pytest.mark.parametrize(
    ("kind", "failure", "count", "fallback"),
    [
        # The hosted route alone (no fallback): a thousand calls cost what the hosted
        # route costs, nothing else; the local route's breaker is exercised below.
        ("async", "busy-503", 1000, False),
        ("async", "unreachable", 300, True),
        ("sync", "busy-503", 100, True),
        ("sync", "unreachable", 100, True),
    ],
    ids=[
        "async-503-1000-hosted-only",
        "async-unreachable-300-local-down",
        "sync-503-100-local-down",
        "sync-unreachable-100-local-down",
    ],
)
async def test_a_burst_of_concurrent_failures_opens_the_breaker_once_and_the_healed_route_is_back_within_one_cooldown(
    stack: Stack, kind: str, failure: str, count: int, fallback: bool
) -> None:
    held = HeldTransport()
    # One attempt per route: nothing but the burst itself reports to the hosted breakers.
    client = stack.client(
        kind, **LOAD_SETTINGS, max_attempts=1, fallback=fallback, hosted_transport=held
    )
    stack.ollama.refuse_connections()  # the other route is down too: every call fails
    if failure == "busy-503":
        stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    else:
        stack.deepseek.refuse_connections()
    started = time.monotonic()
    outcomes = await held_burst(kind, client, held, count)

    assert all(isinstance(o, DsollamaError) for o in outcomes), {type(o) for o in outcomes}
    first_attempts = [attempts_of(o)[0] for o in outcomes]
    assert {(a.kind, a.outcome) for a in first_attempts} == {("hosted", "fallback")}
    route_key = hosted_route(client)
    model_key = hosted_model_key(attempts_of(outcomes[0]))
    # A 503 is the model's failure on the route; a refused connection is the route's.
    broken_key, other_key = (
        (model_key, route_key) if failure == "busy-503" else (route_key, model_key)
    )
    broken = await breaker(client, broken_key)
    assert (broken.steps, broken.epoch) == (1, 1), broken  # one open period, not one per call
    assert broken.state in ("open", "half-open")
    assert broken.retry_in <= BASE  # the base cooldown, not RUNAWAY
    other = await breaker(client, other_key)
    assert (other.state, other.steps) == ("closed", 0), other
    if failure == "busy-503":
        assert len(stack.deepseek.recorded("/chat/completions")) == count  # one try each
    local = await breaker(client, local_route(client))
    if fallback:
        # The local daemon was found dead by calls in flight too: one step per period.
        assert 1 <= local.steps <= max_steps(time.monotonic() - started), local
    else:
        assert local.steps == 0  # never tried

    # The hosted side heals; the route is used again once the base cooldown has passed.
    stack.deepseek.faults.clear()
    stack.deepseek.accept_connections()
    healed = time.monotonic()
    await asyncio.sleep((await breaker(client, broken_key)).retry_in)  # the cooldown itself
    [probe] = await Burst(kind, client, 1).outcomes()  # the half-open probe
    assert not isinstance(probe, BaseException), probe
    assert [(a.kind, a.outcome) for a in probe.attempts] == [("hosted", "ok")]
    assert time.monotonic() - healed <= BASE + SLACK
    assert (await breaker(client, broken_key)).state == "closed"
    answers = await Burst(kind, client, 20).outcomes()
    assert all(not isinstance(a, BaseException) for a in answers), answers
    assert {a.served_by.kind for a in answers} == {"hosted"}


# -- a failed half-open probe is one step ---------------------------------------------------


async def open_once(stack: Stack, client: Any, held: HeldTransport, kind: str) -> str:
    """Open the hosted model breaker with one burst of three 503s; its key."""
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    held.holding = True
    outcomes = await held_burst(kind, client, held, 3)
    key = hosted_model_key(attempts_of(outcomes[0]))
    state = await breaker(client, key)
    assert (state.state, state.steps) == ("open", 1), state
    return key


async def test_of_many_calls_at_half_open_one_probes_and_its_failure_is_one_step(
    stack: Stack, kind: str
) -> None:
    held = HeldTransport()
    client = stack.client(kind, **LOAD_SETTINGS, hosted_transport=held)
    stack.ollama.refuse_connections()
    key = await open_once(stack, client, held, kind)
    await asyncio.sleep((await breaker(client, key)).retry_in)  # the cooldown itself

    before = len(stack.deepseek.recorded("/chat/completions"))
    held.holding = True
    burst = Burst(kind, client, 50)
    # One call is let through as the probe (held in flight); the other 49 are turned
    # away at the breaker while it is out, and end before the probe is let go.
    assert await held.wait_for_held(1)
    assert await asyncio.to_thread(burst.wait_finished, 49)
    assert held.held() == 1
    held.let_go()
    results = await burst.outcomes()
    assert all(isinstance(r, DsollamaError) for r in results)
    hosted_attempts = [[a for a in attempts_of(r) if a.kind == "hosted"] for r in results]
    probes = [a for a in hosted_attempts if a[0].outcome != "skipped"]
    assert len(probes) == 1
    # The probe's failure opened the breaker again (its retry was turned away with the rest).
    assert [a.outcome for a in probes[0]] == ["retry", "skipped"]
    turned_away = [a[0].detail or "" for a in hosted_attempts if a[0].outcome == "skipped"]
    assert len(turned_away) == 49
    assert all("another call is probing" in d for d in turned_away), turned_away
    assert len(stack.deepseek.recorded("/chat/completions")) == before + 1

    state = await breaker(client, key)
    assert (state.state, state.steps, state.epoch) == ("open", 2, 2), state
    assert state.retry_in <= 2 * BASE  # doubled once: 2·BASE, not more


# -- a retry asks the breaker again ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count"), [("async", 200), ("sync", 40)], ids=["async-200", "sync-40"]
)
async def test_a_retry_does_not_go_to_a_route_whose_breaker_opened_after_its_first_try(
    stack: Stack, kind: str, count: int
) -> None:
    held = HeldTransport()
    # One failure opens the breaker, and a long cooldown keeps it open for the whole test:
    # every retry comes after at least one failure, so none may reach the route.
    client = stack.client(
        kind,
        **{**LOAD_SETTINGS, "breaker_cooldown": 30.0},
        breaker_threshold=1,
        max_attempts=3,
        fallback=False,  # the hosted route alone: its attempts are the whole story
        hosted_transport=held,
    )
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    outcomes = await held_burst(kind, client, held, count)

    assert all(isinstance(o, DsollamaError) for o in outcomes)
    assert len(stack.deepseek.recorded("/chat/completions")) == count  # no retry went out
    for outcome in outcomes:
        hosted = [a for a in attempts_of(outcome) if a.kind == "hosted"]
        assert [(a.outcome, a.status_code) for a in hosted] == [("retry", 503), ("skipped", None)]
        assert "breaker open" in (hosted[1].detail or "")


# -- a slow route is not abandoned for one that cannot take the call ------------------------


async def test_a_slow_route_is_not_abandoned_for_a_route_that_cannot_take_the_call(
    stack: Stack,
) -> None:
    client = stack.client("async", breaker_cooldown=BASE)
    # Open the hosted model breaker: three 503s (the calls themselves are answered locally).
    stack.deepseek.add_fault(Fault("status", status=503, times=3, path="/chat/completions"))
    for _ in range(2):
        opener = await client.chat(MODEL, USER, policy="hosted-first")
        assert opener.served_by.kind == "local"
    key = hosted_model_key(opener.attempts)
    await asyncio.sleep((await breaker(client, key)).retry_in)  # the cooldown itself
    # Another call takes the half-open probe, and is held at the hosted double.
    stack.deepseek.add_fault(Fault("stall_before", seconds=0, path="/chat/completions"))
    probe = asyncio.ensure_future(
        client.chat(MODEL, USER, policy="hosted-first", first_token_timeout=30.0)
    )
    assert await asyncio.to_thread(stack.deepseek.faults.wait_for_stalled, 1)
    # The local daemon is slower than the 0.4 s first-token budget, but answers.
    stack.ollama.add_fault(Fault("slow_first_token", seconds=1.0, path="/api/chat"))
    try:
        # Before: "no route could answer (tried: local → fallback (BackendTimeoutError);
        # hosted → skipped (another call is probing the route))" after 0.4 s.
        result = await client.chat(MODEL, USER)
    finally:
        stack.deepseek.release()
        await probe
    assert result.served_by.kind == "local"
