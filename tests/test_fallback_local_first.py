"""Local first: every way the local daemon fails or is busy, and what dsollama does.

Each scenario runs through the sync and the async client, streaming and not: the same
assertions must hold for all four (the parity guarantee).
"""

from __future__ import annotations

import asyncio

import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio

# Generous slack over a deadline: what is asserted is that the deadline is honoured, on a
# 2-core machine running other tests at the same time.
SLACK = 1.5


async def test_a_dead_daemon_falls_back_at_once_and_is_not_retried(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.final.served_by.kind == "hosted"
    assert result.final.served_by.model == "deepseek-flash"
    assert result.outcomes == [("local", "fallback"), ("hosted", "ok")]
    assert result.final.attempts[0].error == "DaemonUnreachableError"
    assert result.final.fallback_reason == "local daemon unreachable"
    assert result.elapsed < 1.0 + SLACK  # no backoff, no retry: straight to hosted


async def test_an_open_breaker_skips_a_dead_daemon_and_a_probe_finds_it_again(
    stack: Stack, kind: str
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind, breaker_cooldown=0.3)
    await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    stack.ollama.clear_requests()
    second = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert second.outcomes == [("local", "skipped"), ("hosted", "ok")]
    assert "breaker open" in (second.final.attempts[0].detail or "")
    assert stack.ollama.requests == []  # not even a probe of /api/ps
    stack.ollama.accept_connections()
    await asyncio.sleep(0.35)  # the breaker's cooldown is the thing under test here
    third = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert third.outcomes == [("local", "ok")]  # the half-open probe succeeded
    fourth = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert fourth.outcomes == [("local", "ok")]


async def test_a_busy_daemon_is_retried_with_backoff(stack: Stack, kind: str, stream: bool) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=1, path="/api/chat"))
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.outcomes == [("local", "retry"), ("local", "ok")]
    assert result.final.attempts[0].status_code == 503
    assert stack.deepseek.requests == []


async def test_persistent_server_errors_are_retried_then_fall_back(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.add_fault(Fault("status", status=500, times=None, path="/api/chat"))
    client = stack.client(kind, max_attempts=3)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.outcomes == [
        ("local", "retry"),
        ("local", "retry"),
        ("local", "fallback"),
        ("hosted", "ok"),
    ]
    assert len(stack.ollama.recorded("/api/chat")) == 3


async def test_a_bad_request_is_raised_and_never_retried(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.add_fault(
        Fault("status", status=400, message="invalid character 'x'", path="/api/chat")
    )
    client = stack.client(kind)
    with pytest.raises(dsollama.BadRequestError):
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert len(stack.ollama.recorded("/api/chat")) == 1
    assert stack.deepseek.requests == []


async def test_a_missing_model_falls_back_with_a_hint_to_pull(stack: Stack, kind: str) -> None:
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:14b", USER)
    assert result.outcomes == [("local", "skipped"), ("hosted", "ok")]
    assert "run `dsollama pull deepseek-r1:14b`" in (result.final.fallback_reason or "")
    assert stack.ollama.recorded("/api/chat") == []  # known from /api/tags: no doomed request
    stack.ollama.refuse_connections()
    client_local_only = stack.client(kind, breaker_cooldown=0.0)
    stack.ollama.accept_connections()
    # One reason for the whole call: its own class, so `except ModelNotFoundError` works.
    with pytest.raises(dsollama.ModelNotFoundError) as caught:
        await stack.call(kind, client_local_only, "chat", "deepseek-r1:14b", USER, local_only=True)
    assert caught.value.hint == "run `dsollama pull deepseek-r1:14b`"


async def test_a_slow_first_token_moves_to_hosted_at_the_budget(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.add_fault(Fault("slow_first_token", seconds=5.0, path="/api/chat"))
    client = stack.client(kind, first_token_timeout=0.3)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.final.served_by.kind == "hosted"
    assert result.final.attempts[0].error == "BackendTimeoutError"
    assert "first token within 0.3s" in (result.final.fallback_reason or "")
    assert result.elapsed < 0.3 + SLACK
    await _until(
        lambda: stack.ollama.in_flight("deepseek-r1:8b") == 0
    )  # the local request was cancelled


async def test_hedging_races_both_and_keeps_the_first_token(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("slow_first_token", seconds=5.0, path="/api/chat"))
    client = stack.client(kind, first_token_timeout=0.2, hedge=True)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True)
    assert result.final.served_by.kind == "hosted"
    assert sorted(result.outcomes) == [("hosted", "ok"), ("local", "lost-race")]
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 0)


async def test_hedging_keeps_local_when_it_answers_first(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("slow_first_token", seconds=0.35, path="/api/chat"))
    stack.deepseek.add_fault(Fault("keepalive", seconds=5.0))
    client = stack.client(kind, first_token_timeout=0.2, hedge=True)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.final.served_by.kind == "local"
    assert sorted(result.outcomes) == [("hosted", "lost-race"), ("local", "ok")]
    await _until(lambda: stack.deepseek.in_flight() == 0)


async def test_silent_queueing_is_predicted_and_skipped_without_waiting(
    stack: Stack, kind: str
) -> None:
    # One slot, answers that take ~0.5 s: while one is running, the next cannot get its
    # first token within a 0.3 s budget — so it goes hosted at once instead of waiting.
    stack.ollama.configure(tokens_per_second=40, answer_tokens=16, thinking_tokens=0)
    client = stack.client(kind, first_token_timeout=0.3)
    warm = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert warm.final.served_by.kind == "local"  # teaches the estimate how long answers take

    async def occupy() -> None:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False, stream=True)

    running = asyncio.ensure_future(occupy())
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 1)
    await asyncio.sleep(0.05)  # let the first token of the running answer arrive
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await running
    assert result.outcomes == [("local", "skipped"), ("hosted", "ok")]
    assert (result.final.fallback_reason or "").startswith("local busy")
    assert result.final.attempts[-1].ttft_s is not None
    assert result.elapsed < 0.3 + SLACK
    assert len(stack.ollama.recorded("/api/chat")) == 2  # the skipped call never reached it


async def test_a_prompt_larger_than_the_local_context_goes_hosted(stack: Stack, kind: str) -> None:
    client = stack.client(kind)
    long_prompt = [{"role": "user", "content": "word " * 30_000}]
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", long_prompt)
    assert result.outcomes == [("local", "skipped"), ("hosted", "ok")]
    assert "local context" in (result.final.fallback_reason or "")
    assert stack.ollama.recorded("/api/chat") == []


async def test_local_only_never_reaches_the_hosted_route(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    with pytest.raises(dsollama.DaemonUnreachableError) as caught:
        await stack.call(
            kind, client, "chat", "deepseek-r1:8b", USER, stream=stream, local_only=True
        )
    assert [a.kind for a in caught.value.attempts] == ["local"]
    assert stack.deepseek.requests == []


async def test_the_local_only_policy_fails_closed(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=None, path="/api/chat"))
    client = stack.client(kind, policy="local-only")
    with pytest.raises(dsollama.BusyError):
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert stack.deepseek.requests == []


async def test_without_a_key_nothing_leaves_the_machine(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind, hosted_api_key=None)
    with pytest.raises(dsollama.DaemonUnreachableError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert stack.deepseek.requests == []
    assert "DEEPSEEK_API_KEY" in str(caught.value.hint) or "ollama serve" in str(caught.value.hint)


async def test_with_fallback_off_nothing_leaves_the_machine(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind, fallback=False)
    with pytest.raises(dsollama.DaemonUnreachableError):
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert stack.deepseek.requests == []


async def test_the_total_deadline_bounds_the_whole_call(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("stall_before", seconds=0, path="/api/chat"))
    client = stack.client(kind, total_timeout=0.5, hosted_api_key=None)
    with pytest.raises(dsollama.BackendTimeoutError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert "deadline" in str(caught.value)
    assert caught.value.attempts[-1].error == "BackendTimeoutError"


async def test_several_hosts_share_load_and_a_dead_one_is_skipped(stack: Stack, kind: str) -> None:
    from dsollama.testing import FakeOllama

    with FakeOllama(models=["deepseek-r1:8b"]) as second:
        second.preload("deepseek-r1:8b")
        stack.ollama.refuse_connections()
        # A cooldown no loaded machine outlasts between the two calls.
        client = stack.client(
            kind, ollama_hosts=[stack.ollama.url, second.url], breaker_cooldown=60.0
        )
        result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        assert result.final.served_by.endpoint == second.url
        assert result.outcomes == [("local", "fallback"), ("local", "ok")]
        again = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        assert again.final.served_by.endpoint == second.url
        assert again.final.attempts[0].outcome in {"skipped", "ok"}  # never a new try
        assert stack.deepseek.requests == []


async def test_retries_stop_when_the_process_wide_budget_is_spent(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=None, path="/api/chat"))
    # A budget of its own (ratio ~0, floor 1): one retry in the whole process, then none.
    # The budget is shared by every client with the same settings, so each run gets a
    # ratio no other test uses.
    ratio = 1e-9 if kind == "sync" else 2e-9
    client = stack.client(kind, retry_budget_ratio=ratio, retry_budget_floor=1, max_attempts=5)
    first = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert [o for k, o in first.outcomes if k == "local"] == ["retry", "fallback"]
    second = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert [o for k, o in second.outcomes if k == "local"] == ["fallback"]
    assert "retry budget" in (second.final.fallback_reason or "")


async def _until(condition: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


async def test_a_cold_model_is_tried_under_the_budget_and_warmed_for_the_next_call(
    stack: Stack, kind: str
) -> None:
    from dsollama.testing import FakeOllama

    # Installed but not loaded, and loading takes longer than the first-token budget.
    with FakeOllama(models=["deepseek-r1:8b"], load_seconds=1.0) as cold:
        client = stack.client(kind, ollama_hosts=[cold.url], first_token_timeout=0.5)
        first = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        # No load was ever measured: a guess does not keep the call away; the budget
        # moves it on in time.
        assert first.outcomes == [("local", "fallback"), ("hosted", "ok")]
        assert "no first token within" in (first.final.fallback_reason or "")
        assert first.elapsed < 0.5 + SLACK
        # Warmed in the background: wait until the client knows (its load request returned).
        await _until(
            lambda: not any(v["cold"] or v["warming"] for v in client.routes()["local"].values())
        )
        assert "deepseek-r1:8b" in cold.loaded_models()
        second = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        assert second.outcomes == [("local", "ok")]
        # Unloaded again: now the load time is measured (~1 s > 0.5 s), so the call goes
        # hosted at once, without queueing behind the load.
        cold.unload("deepseek-r1:8b")
        for facts in client.router.state._facts.values():
            facts.last_answer_at = None  # as if idle past Ollama's keep-alive
        third = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
        assert third.outcomes == [("local", "skipped"), ("hosted", "ok")]
        assert "not loaded" in (third.final.fallback_reason or "")
        assert third.elapsed < 0.5


async def test_a_warm_model_is_not_second_guessed(stack: Stack, kind: str) -> None:
    client = stack.client(kind, first_token_timeout=0.5)
    await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)  # loads it
    stack.ollama.clear_requests()
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.outcomes == [("local", "ok")]
    assert stack.ollama.recorded("/api/ps") == []  # it answered moments ago: no need to ask


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (None, [("local", "fallback"), ("hosted", "ok")]),  # refused
        (
            Fault("status", status=503, times=1, path="/api/generate"),
            [("local", "retry"), ("local", "ok")],
        ),
        (
            Fault("slow_first_token", seconds=5.0, path="/api/generate"),
            [("local", "fallback"), ("hosted", "ok")],
        ),
        (
            Fault("error_line", after_chunks=3, path="/api/generate"),
            [("local", "retry"), ("local", "ok")],
        ),
    ],
    ids=["refused", "busy-503", "slow-first-token", "broken-stream"],
)
async def test_generate_meets_the_same_faults_the_same_way(
    stack: Stack, kind: str, fault: Fault | None, expected: list[tuple[str, str]]
) -> None:
    if fault is None:
        stack.ollama.refuse_connections()
    else:
        stack.ollama.add_fault(fault)
    client = stack.client(kind, first_token_timeout=0.3)
    result = await stack.call(
        kind, client, "generate", "deepseek-r1:8b", "Say something", think=False
    )
    assert result.outcomes == expected
    assert result.text


async def test_a_busy_local_model_is_the_last_resort_when_hosted_fails(
    stack: Stack, kind: str
) -> None:
    stack.ollama.configure(tokens_per_second=40, answer_tokens=16, thinking_tokens=0)
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    client = stack.client(kind, first_token_timeout=0.3)
    await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, think=False
    )  # learn answer times

    async def occupy() -> None:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)

    running = asyncio.ensure_future(occupy())
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 1)
    await asyncio.sleep(0.05)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await running
    assert result.final.served_by.kind == "local"
    assert result.outcomes[0] == ("local", "skipped")
    assert ("hosted", "fallback") in result.outcomes
    assert result.outcomes[-1] == ("local", "ok")
