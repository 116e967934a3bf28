"""A thousand requests through `dsollama serve` while both routes misbehave.

Requests go through a real serve (Ollama and OpenAI dialects, whole and streamed), a few
dozen at a time. For the first part of the run the hosted double answers 503 and 429,
stalls mid-answer and cuts its streams; the local daemon is killed part-way through,
with requests in flight. Then the hosted side is healthy again. What must hold:

- an answer is whole or is an error: 200 with the double's canonical text (a stream ends
  with ``done`` / ``[DONE]``), never a short answer that looks complete;
- a request goes unanswered only when its routes could not answer it: the daemon was
  dead and the hosted side faulted (or its breaker was open after real failures), or a
  stream broke with nowhere to continue;
- once the faults have stopped, every request is answered: no breaker escalated once per
  failure keeps the healed route closed (before: 1,000 of 1,000 refused for minutes);
- the hosted key appears in no response and no log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dsollama.testing import Fault
from dsollama.testing._text import answer_tokens

from .conftest import Stack
from .serve_harness import MODEL, Served, serving

pytestmark = pytest.mark.anyio

TOTAL = 1000
FAULTY = 600
"Requests in the first part of the run; the hosted faults are used up within it."
KILL_AFTER = 200
"The local daemon dies once this many requests have ended."
CONCURRENCY = 64
POOL = 4
"Connections per client pool (see `drive`)."
FAULTS_OF_EACH_KIND = 6
"Hosted faults of each kind at the start, and as many again when the daemon dies."
ANSWER_TOKENS = 6
"Short answers keep a thousand of them quick; each request has its own question."
BASE = 0.2
RUNAWAY = 30.0
# How long past the faulty phase more requests may go on meeting the faults left over.
TOP_UP_S = 15.0
"The cooldown cap: where a breaker escalated once per failure would end up."

SETTINGS: dict[str, Any] = {
    "breaker_cooldown": BASE,
    "breaker_cooldown_max": RUNAWAY,
    # A first-token budget that a loaded machine does not pass by itself: the faults
    # below act mid-answer, where the gap deadline catches them.
    "first_token_timeout": 2.0,
    "gap_timeout": 2.0,
    "connect_timeout": 5.0,
    "total_timeout": 30.0,
    # A stream that broke after its first chunk continues on another route.
    "on_broken_stream": "continue",
    "local_slots": 2,
}


def fault_kind(fault: Fault) -> tuple[str, int | None]:
    return fault.kind, fault.status


def hosted_faults(each: int) -> list[Fault]:
    """The hosted side's misbehaviour: ``each`` of every kind, in turn, each used once."""
    path = "/chat/completions"

    def one_round() -> list[Fault]:
        # Events count the opening role chunk and two of reasoning: 4 is mid-answer. The
        # 429 states DeepSeek's concurrency limit, which the route learns and keeps to.
        return [
            Fault("status", status=503, path=path),
            Fault("status", status=429, path=path),
            Fault("stall_after", after_chunks=4, seconds=4.0, path=path),
            Fault("drop", after_chunks=4, path=path),
        ]

    return [fault for _ in range(each) for fault in one_round()]


def question(index: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Why run DeepSeek locally? (question {index})"}]


def canonical(index: int) -> str:
    """The answer both doubles give to request ``index`` (a continued one included)."""
    return "".join(answer_tokens(question(index)[0]["content"], ANSWER_TOKENS))


@dataclass
class Outcome:
    index: int
    dialect: str
    stream: bool
    status: int
    raw: bytes
    headers: dict[str, str]
    ended_at: float
    text: str = ""
    complete: bool = False
    "The answer's terminator arrived: done:true / [DONE] / a whole JSON answer."
    error: dict[str, Any] | None = None
    "The error body (a failed status) or the in-band error event (a broken stream)."

    @property
    def answered(self) -> bool:
        return self.status == 200 and self.complete and self.error is None

    @property
    def attempts(self) -> list[dict[str, Any]]:
        extra = (self.error or {}).get("dsollama") or {}
        return list(extra.get("attempts") or [])


def parse(outcome: Outcome) -> None:
    """Fill in the text, completeness and error of a raw answer."""
    if outcome.status != 200:
        outcome.error = json.loads(outcome.raw)
        return
    if not outcome.stream:
        data = json.loads(outcome.raw)
        if outcome.dialect == "ollama":
            outcome.text = data["message"]["content"]
            outcome.complete = data.get("done") is True
        else:
            choice = data["choices"][0]
            outcome.text = choice["message"]["content"]
            outcome.complete = choice.get("finish_reason") == "stop"
        return
    parts: list[str] = []
    for line in outcome.raw.decode().splitlines():
        if outcome.dialect == "openai":
            if not line.startswith("data: "):
                continue
            line = line.removeprefix("data: ")
            if line == "[DONE]":
                outcome.complete = True
                break
        if not line.strip():
            continue
        event = json.loads(line)
        if "error" in event:
            outcome.error = event
            break
        if outcome.dialect == "ollama":
            parts.append(event.get("message", {}).get("content") or "")
            outcome.complete = event.get("done") is True
        else:
            parts.extend(c.get("delta", {}).get("content") or "" for c in event["choices"])
    outcome.text = "".join(parts)


async def one_request(http: httpx.AsyncClient, url: str, index: int) -> Outcome:
    """Request ``index``: even ones speak Ollama, odd ones OpenAI; every other pair streams."""
    dialect = "ollama" if index % 2 == 0 else "openai"
    stream = index % 4 >= 2
    path = "/api/chat" if dialect == "ollama" else "/v1/chat/completions"
    body = {"model": MODEL, "messages": question(index), "stream": stream}
    async with http.stream("POST", url + path, json=body) as response:
        raw = await response.aread()
    outcome = Outcome(
        index, dialect, stream, response.status_code, raw, dict(response.headers), time.monotonic()
    )
    parse(outcome)
    return outcome


async def drive(
    served: Served, indices: range, on_ended: Callable[[int], None] = lambda ended: None
) -> list[Outcome]:
    """Send the requests ``indices``, CONCURRENCY at a time; their outcomes, in order.

    Through several small connection pools: httpx scans its whole pool for every request,
    and one pool of CONCURRENCY connections made the test's own client its costliest part.
    """
    slots = asyncio.Semaphore(CONCURRENCY)
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    async with contextlib.AsyncExitStack() as stack:
        pools = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=60, limits=limits))
            for _ in range(CONCURRENCY // POOL)
        ]

        async def run(index: int) -> None:
            async with slots:
                outcomes.append(await one_request(pools[index % len(pools)], served.url, index))
            on_ended(len(outcomes))

        await asyncio.gather(*(run(i) for i in indices))
    return sorted(outcomes, key=lambda o: o.index)


def max_steps(elapsed: float) -> int:
    """The most cooldown steps a breaker can take in ``elapsed`` seconds, one per period:
    the k-th failed probe comes at least BASE·(2^k − 1) after the first opening."""
    return 1 + math.floor(math.log2(elapsed / BASE + 1))


def refused_by_breaker(attempt: dict[str, Any]) -> bool:
    detail = attempt.get("detail") or ""
    return attempt["outcome"] == "skipped" and ("breaker open" in detail or "probing" in detail)


def why_unanswered(outcome: Outcome, killed_at: float) -> str:
    """Why a request got no answer, when its routes could not give one; else 'unexplained'."""
    attempts = outcome.attempts
    message = json.dumps(outcome.error)
    if outcome.status == 200 and "broke after" in message:
        # Broken mid-answer with no route left to continue (never onto the route that
        # broke; the daemon dead): an error event, and no terminator.
        return "stream broke, nowhere to continue"
    # The daemon died with answers in flight: a call learns it from its own attempt
    # (refused, cut short) or from the breaker those failures opened (skipped, with the
    # reason); before the kill, none of this may happen (see `early` below).
    local_dead = outcome.ended_at > killed_at and any(
        a["kind"] == "local"
        and (
            a.get("error") in ("DaemonUnreachableError", "IncompleteResponseError")
            or "unreachable" in (a.get("detail") or "")
            or (refused_by_breaker(a) and "cut short" in (a.get("detail") or ""))
        )
        for a in attempts
    )
    hosted = [a for a in attempts if a["kind"] == "hosted"]
    if local_dead and hosted and all(a.get("error") or refused_by_breaker(a) for a in hosted):
        if any(a.get("error") for a in hosted):
            return "daemon dead, hosted faulted"
        # The hosted breaker is open, or half-open with another call's probe out, after
        # real failures: one probe at a time, and nowhere else to go.
        return "daemon dead, hosted breaker open"
    return "unexplained"


@pytest.mark.timeout(
    300
)  # a thousand requests, the cooldowns of a faulty phase, on a shared machine
async def test_a_thousand_requests_through_serve_with_faults_are_answered_whole(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="dsollama")
    api_key = "sk-" + secrets.token_hex(24)
    stack.deepseek.configure(api_keys=[api_key], answer_tokens=ANSWER_TOKENS, thinking_tokens=2)
    stack.ollama.configure(slots=2, answer_tokens=ANSWER_TOKENS, thinking_tokens=2)
    stack.deepseek.add_fault(*hosted_faults(FAULTS_OF_EACH_KIND))
    killed_at = math.inf

    def kill_daemon(ended: int) -> None:
        nonlocal killed_at
        if ended == KILL_AFTER:
            stack.ollama.refuse_connections()  # dies with requests in flight
            killed_at = time.monotonic()
            # ...while the hosted side is still faulty: some requests have no route left.
            stack.deepseek.add_fault(*hosted_faults(FAULTS_OF_EACH_KIND))

    started = time.monotonic()
    with serving(stack, **SETTINGS) as served:

        async def hosted_breakers() -> dict[str, Any]:
            router = served.state.ai.router  # once serve has started
            hosted = next(b.route for b in router.backends if b.kind == "hosted")
            keys = [k for k in router.status()["breakers"] if k.startswith(hosted)]
            return {k: await router.state.store.breaker_state(k) for k in keys}

        faulty = await drive(served, range(FAULTY), on_ended=kill_daemon)
        # On a loaded machine the faulty phase can drain while the hosted breaker is
        # open (the daemon dead, every call refused at once) before each injected fault
        # met a request: once its cooldown has passed, more requests of the faulty phase
        # (numbered past the healthy ones). Not until every fault is served: each probe
        # that meets one reopens the breaker for twice as long, so a dozen left over
        # would take minutes. Every kind of fault must have been served, though.
        extra = TOTAL
        give_up = time.monotonic() + TOP_UP_S
        while (
            stack.deepseek.faults.pending()
            and extra < TOTAL + FAULTY
            and time.monotonic() < give_up
        ):
            opened = (await hosted_breakers()).values()
            await asyncio.sleep(max((s.retry_in for s in opened), default=0.0))
            faulty += await drive(served, range(extra, extra + CONCURRENCY))
            extra += CONCURRENCY
        left = Counter(fault_kind(f) for f in stack.deepseek.faults.pending())
        stack.deepseek.faults.clear()  # the faults stop here
        injected = Counter(fault_kind(f) for f in 2 * hosted_faults(FAULTS_OF_EACH_KIND))
        assert all(left[kind] < count for kind, count in injected.items()), (left, injected)
        healed = time.monotonic()

        # No runaway: the hosted breakers took at most one cooldown step per open
        # period (one escalated per failure stays open for up to RUNAWAY).
        router = served.state.ai.router
        states = await hosted_breakers()
        keys = list(states)
        for name, state in states.items():
            assert state.steps <= max_steps(healed - started), (name, state)
        openings = sum(state.epoch for state in states.values())
        # The healed route is used again once that cooldown has passed: the first request
        # probes it, and from then on every request is answered.
        await asyncio.sleep(max(s.retry_in for s in states.values()))  # the cooldown itself
        healthy = await drive(served, range(FAULTY, FAULTY + 1))
        for name in keys:
            assert (await router.state.store.breaker_state(name)).state == "closed", name
        healthy += await drive(served, range(FAULTY + 1, TOTAL))
        ended = time.monotonic()

    outcomes = faulty + healthy
    # Whole or an error: never a short answer that looks complete.
    for o in outcomes:
        assert o.status in (200, 502, 503, 504), (o.status, o.raw[:300])
        if o.complete:
            assert o.text == canonical(o.index), o
        else:
            assert o.error is not None, o  # a stream that ends early says why
    # Unanswered only when the routes could not answer.
    why = {o.index: why_unanswered(o, killed_at) for o in outcomes if not o.answered}
    unexplained = [o for o in outcomes if why.get(o.index) == "unexplained"]
    assert unexplained == [], json.dumps([(o.status, o.attempts) for o in unexplained[:2]])
    # Before the daemon died it could answer everything.
    early = [o for o in faulty if o.ended_at < killed_at and not o.answered]
    assert early == [], early[:3]
    # Once the faults stopped, every request is answered, and none is refused by a breaker.
    late = [o for o in healthy if not o.answered]
    assert late == [], late[:3]
    refused = [o for o in late if any(refused_by_breaker(a) for a in o.attempts)]
    assert refused == [], refused[:3]

    # The key went to the hosted double, and nowhere else.
    assert any(
        r.headers.get("authorization") == f"Bearer {api_key}" for r in stack.deepseek.requests
    )
    for o in outcomes:
        assert api_key.encode() not in o.raw
        assert all(api_key not in v for v in o.headers.values())
    assert any(r.name.startswith("dsollama") for r in caplog.records)  # the calls' lines
    assert api_key not in caplog.text

    answered = [o for o in outcomes if o.answered]
    served_by = Counter(o.headers.get("x-dsollama-kind") for o in answered)
    recovered = sum("x-dsollama-fallback-reason" in o.headers for o in answered)
    print(  # the counts, for `pytest -s`
        f"\n{len(answered)}/{TOTAL} answered whole ({dict(served_by)}; {recovered} after a "
        f"failed or skipped attempt); unanswered: {dict(Counter(why.values()))}; "
        f"faulty part {healed - started:.1f}s (daemon killed at {killed_at - started:.1f}s), "
        f"healthy part {ended - healed:.1f}s, answered "
        f"{sum(o.answered for o in healthy)}/{len(healthy)}; "
        f"hosted breakers opened {openings} time(s)"
    )
