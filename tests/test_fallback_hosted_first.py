"""Hosted first: every way the hosted API is busy or broken, and the way back to local."""

from __future__ import annotations

import asyncio

import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio

SLACK = 1.5


async def test_hosted_first_answers_from_the_hosted_route(
    stack: Stack, kind: str, stream: bool
) -> None:
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.final.served_by.kind == "hosted"
    assert result.final.served_by.thinking is True  # R1 maps to deepseek-flash with thinking
    assert result.thinking  # reasoning_content arrives as message.thinking
    assert result.final.usage is not None
    assert result.final.usage.completion_tokens > 0
    assert result.final.cost_usd is not None
    assert result.final.cost_usd > 0
    assert stack.ollama.recorded("/api/chat") == []


async def test_a_hosted_model_name_maps_back_to_a_local_model(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-flash", USER)
    assert result.final.served_by.kind == "local"
    assert result.final.served_by.model == "deepseek-r1:8b"  # flash with thinking → R1 locally


async def test_keepalive_filler_is_not_progress(stack: Stack, kind: str, stream: bool) -> None:
    # DeepSeek holds a queued request open with `: keep-alive` comments for minutes.
    stack.deepseek.add_fault(Fault("keepalive", seconds=5.0, interval=0.01))
    client = stack.client(kind, policy="hosted-first", first_token_timeout=0.6)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.final.served_by.kind == "local"
    reason = result.final.fallback_reason or ""
    assert "first token within 0.6s" in reason
    assert "keep-alive" in reason
    assert result.elapsed < 0.6 + SLACK


async def test_a_body_of_only_filler_is_a_transient_failure(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("keepalive_then_close", seconds=0.05, interval=0.01, times=None))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.outcomes == [("hosted", "retry"), ("hosted", "fallback"), ("local", "ok")]
    assert result.final.attempts[0].error == "IncompleteResponseError"


async def test_rate_limits_back_off_then_fall_back(stack: Stack, kind: str, stream: bool) -> None:
    stack.deepseek.add_fault(Fault("status", status=429, times=None, path="/chat/completions"))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.outcomes == [("hosted", "retry"), ("hosted", "fallback"), ("local", "ok")]
    assert "429" in (result.final.fallback_reason or "")


async def test_server_busy_503_falls_back_to_local(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.final.served_by.kind == "local"


@pytest.mark.parametrize(
    ("setup", "error"),
    [("bad-key", "HostedAuthError"), ("no-credit", "HostedBalanceError")],
)
async def test_401_and_402_disable_the_hosted_route_without_retrying(
    stack: Stack, kind: str, setup: str, error: str
) -> None:
    overrides = {"hosted_api_key": "sk-not-accepted-123456"} if setup == "bad-key" else {}
    if setup == "no-credit":
        stack.deepseek.configure(balance_available=False)
    client = stack.client(kind, policy="hosted-first", **overrides)
    first = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert first.outcomes == [("hosted", "fallback"), ("local", "ok")]
    assert first.final.attempts[0].error == error
    second = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert second.outcomes == [("hosted", "skipped"), ("local", "ok")]
    assert len(stack.deepseek.recorded("/chat/completions")) == 1  # never retried, never again


async def test_an_actionable_error_when_the_key_is_refused_and_local_is_down(
    stack: Stack, kind: str
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind, policy="hosted-first", hosted_api_key="sk-not-accepted-123456")
    with pytest.raises(dsollama.AllRoutesFailedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    errors = [a.error for a in caught.value.attempts]
    assert errors == ["HostedAuthError", "DaemonUnreachableError"]


async def test_insufficient_system_resource_is_never_a_success(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.deepseek.add_fault(
        Fault(
            "finish_reason", finish_reason="insufficient_system_resource", after_chunks=2, times=1
        )
    )
    client = stack.client(kind, policy="hosted-first")
    if stream:
        # Text already reached the caller: the cut must surface with what was delivered.
        with pytest.raises(dsollama.StreamInterruptedError) as caught:
            await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
        assert caught.value.partial_text
        assert caught.value.attempts[-1].error == "InsufficientResourceError"
        return
    # The caller has seen nothing yet: the cut answer is thrown away and retried.
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert result.outcomes == [("hosted", "retry"), ("hosted", "ok")]
    assert result.final.attempts[0].error == "InsufficientResourceError"
    assert result.final.done_reason == "stop"


async def test_a_stream_without_done_is_retried_not_returned(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("close_without_done", after_chunks=3, times=1))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.outcomes == [("hosted", "retry"), ("hosted", "ok")]
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.text == clean.text  # the retried answer is whole


async def test_hosted_only_when_fallback_is_off(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("status", status=503, times=None, path="/chat/completions"))
    client = stack.client(kind, policy="hosted-first", fallback=False)
    with pytest.raises(dsollama.BusyError):
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert stack.ollama.recorded("/api/chat") == []


async def test_hosted_first_without_a_key_names_the_variable(stack: Stack) -> None:
    client = stack.client("async", policy="hosted-first", hosted_api_key=None)
    with pytest.raises(dsollama.MissingAPIKeyError) as caught:
        await client.chat("deepseek-r1:8b", USER)
    assert "DEEPSEEK_API_KEY" in caught.value.one_line()


async def _occupy_hosted(
    stack: Stack, kind: str, client: object, count: int
) -> list[asyncio.Future[object]]:
    calls = [
        asyncio.ensure_future(stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False))
        for _ in range(count)
    ]
    deadline = asyncio.get_running_loop().time() + 5
    while stack.deepseek.in_flight() < count:
        assert asyncio.get_running_loop().time() < deadline, "hosted calls never started"
        await asyncio.sleep(0.005)
    return calls


async def test_a_configured_hosted_concurrency_limit_keeps_extra_calls_local(
    stack: Stack, kind: str
) -> None:
    stack.deepseek.configure(tokens_per_second=20, answer_tokens=20)  # hosted answers last ~1 s
    client = stack.client(kind, policy="hosted-first", hosted_concurrency=2)
    running = await _occupy_hosted(stack, kind, client, 2)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await asyncio.gather(*running)
    assert result.outcomes == [("hosted", "skipped"), ("local", "ok")]
    assert "concurrency limit" in (result.final.fallback_reason or "")
    assert len(stack.deepseek.recorded("/chat/completions")) == 2  # no 429 provoked


async def test_the_hosted_limit_is_learned_from_a_429_that_states_it(
    stack: Stack, kind: str
) -> None:
    stack.deepseek.configure(tokens_per_second=20, answer_tokens=20, concurrency_limit=1)
    client = stack.client(kind, policy="hosted-first")
    running = await _occupy_hosted(stack, kind, client, 1)
    provoked = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert provoked.final.served_by.kind == "local"
    assert provoked.final.attempts[0].status_code == 429
    learned = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await asyncio.gather(*running)
    assert learned.outcomes == [("hosted", "skipped"), ("local", "ok")]
    assert "limit 1" in (learned.final.fallback_reason or "")


async def test_retries_after_a_stated_limit_wait_for_a_slot_instead_of_another_429(
    stack: Stack, kind: str
) -> None:
    stack.deepseek.configure(tokens_per_second=40, answer_tokens=12, concurrency_limit=1)
    client = stack.client(kind, policy="hosted-first", first_token_timeout=5.0, local_only=None)
    stack.ollama.refuse_connections()  # nowhere else to go: the hosted queue is the answer
    running = await _occupy_hosted(stack, kind, client, 1)
    queued = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await asyncio.gather(*running)
    assert queued.final.served_by.kind == "hosted"
    assert [a.status_code for a in queued.final.attempts if a.kind == "hosted"] == [429, None]
    assert queued.outcomes[-1] == ("hosted", "ok")
    statuses = [r.path for r in stack.deepseek.recorded("/chat/completions")]
    assert len(statuses) == 3  # the running call, one 429, one retry that waited its turn


async def test_a_burst_over_the_stated_limit_waits_at_the_gate_and_keeps_the_route(
    stack: Stack, kind: str
) -> None:
    # Twelve calls at once at an account capped at 3: the first ones over the cap earn a
    # 429 stating it. That is the client's excess, not a sick route: the breaker stays
    # closed and the rest wait their turn at the gate. (Opening it sent the burst to the
    # one-slot daemon for a whole cooldown, where it waited out its deadline.)
    stack.deepseek.configure(tokens_per_second=200, answer_tokens=10, concurrency_limit=3)
    stack.ollama.refuse_connections()  # nowhere else to go: the hosted queue is the answer
    client = stack.client(
        kind, policy="hosted-first", first_token_timeout=5.0, breaker_cooldown=30.0
    )
    results = await asyncio.gather(
        *(stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False) for _ in range(12))
    )
    assert all(r.final.served_by.kind == "hosted" for r in results)
    limited = [a for r in results for a in r.final.attempts if a.status_code == 429]
    assert limited  # the cap was met, and learned from the answers
    assert all("concurrency limit of 3" in (a.detail or "") for a in limited)
    hosted = [name for name in client.routes()["breakers"] if name.startswith("hosted")]
    assert hosted
    assert all(client.routes()["breakers"][name]["state"] == "closed" for name in hosted)
