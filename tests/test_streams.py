"""Streams never lie: a broken answer is never returned as a short success."""

from __future__ import annotations

import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio

SLACK = 1.5


@pytest.mark.parametrize("fault", ["error_line", "drop", "close_without_done", "malformed_line"])
async def test_a_stream_broken_after_text_raises_with_the_partial_answer(
    stack: Stack, kind: str, fault: str
) -> None:
    stack.ollama.add_fault(Fault(fault, after_chunks=4, path="/api/chat"))  # type: ignore[arg-type]
    client = stack.client(kind)
    with pytest.raises(dsollama.StreamInterruptedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    error = caught.value
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert error.partial_text
    assert clean.text.startswith(error.partial_text)
    assert len(error.partial_text) < len(clean.text)
    assert error.attempts[-1].outcome == "failed"
    assert "continue_stream=True" in (error.hint or "")
    assert stack.deepseek.requests == []  # no silent switch after text was shown


@pytest.mark.parametrize("fault", ["error_line", "drop", "close_without_done"])
async def test_a_broken_answer_the_caller_has_not_seen_is_retried_whole(
    stack: Stack, kind: str, fault: str
) -> None:
    stack.ollama.add_fault(Fault(fault, after_chunks=4, path="/api/chat"))  # type: ignore[arg-type]
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert result.text == clean.text
    assert result.outcomes == [("local", "retry"), ("local", "ok")]


async def test_a_broken_stream_continues_on_the_hosted_route_from_where_it_stopped(
    stack: Stack, kind: str
) -> None:
    stack.ollama.add_fault(Fault("error_line", after_chunks=5, path="/api/chat"))
    client = stack.client(kind, continue_streams=True)
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False
    )
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert result.text == clean.text  # the two halves make the uninterrupted answer
    seams = result.final.seams
    assert seams
    assert seams[0].from_route.startswith("local:")
    assert seams[0].to_route.startswith("hosted:")
    assert 0 < seams[0].at_char < len(result.text)
    assert result.final.served_by.kind == "hosted"
    continuation = stack.deepseek.recorded("/beta/chat/completions")
    assert continuation
    assert continuation[0].json["messages"][-1]["prefix"] is True
    assert [c.served_by.kind for c in result.chunks][:2] == ["local", "local"]


async def test_continuation_is_a_per_call_choice(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("drop", after_chunks=3, path="/api/chat"))
    client = stack.client(kind)
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False, continue_stream=True
    )
    assert result.final.seams


async def test_continuation_never_leaves_the_machine_under_local_only(
    stack: Stack, kind: str
) -> None:
    stack.ollama.add_fault(Fault("error_line", after_chunks=3, path="/api/chat"))
    client = stack.client(kind, continue_streams=True)
    with pytest.raises(dsollama.StreamInterruptedError):
        await stack.call(
            kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False, local_only=True
        )
    assert stack.deepseek.requests == []


async def test_a_stall_mid_stream_is_cut_at_the_gap_deadline(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("stall_after", after_chunks=3, seconds=0, path="/api/chat"))
    client = stack.client(kind, gap_timeout=0.3)
    with pytest.raises(dsollama.StreamInterruptedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    assert caught.value.attempts[-1].error == "BackendTimeoutError"
    assert "gap" in str(caught.value)


async def test_a_hosted_stall_mid_reasoning_is_cut_and_retried_for_whole_answers(
    stack: Stack, kind: str
) -> None:
    stack.deepseek.add_fault(Fault("stall_after", after_chunks=2, seconds=0))
    client = stack.client(kind, policy="hosted-first", gap_timeout=0.3)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.outcomes[0] == ("hosted", "retry")
    assert result.final.attempts[0].error == "BackendTimeoutError"
    assert result.elapsed < 0.3 + SLACK


async def test_inline_think_tags_from_an_old_daemon_become_thinking(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.configure(version="0.8.0", think_inline=True)
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.thinking
    assert "<think>" not in result.text
    assert "</think>" not in result.text
    modern = await stack.call(
        kind, stack.client(kind, ollama_hosts=[stack.ollama.url]), "chat", "deepseek-r1:8b", USER
    )
    assert modern.text  # same canonical answer text either way
