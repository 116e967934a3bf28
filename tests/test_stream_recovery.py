"""A stream that breaks after the caller has seen text: raise, continue or restart.

Continue picks the next route that can continue a prefix, never the one that broke;
restart asks the next route for the whole answer and says so in the stream first; each
route takes over at most once per call, and never past the total deadline.
"""

from __future__ import annotations

import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


async def test_continue_never_goes_back_to_the_route_that_broke(stack: Stack, kind: str) -> None:
    # Hosted-first: the hosted route breaks mid-answer, so it is local that continues
    # (Ollama continues a final assistant message), not the hosted route again.
    stack.deepseek.add_fault(Fault("drop", after_chunks=4, path="/chat/completions"))
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(
        kind,
        client,
        "chat",
        "deepseek-r1:8b",
        USER,
        stream=True,
        think=False,
        on_broken_stream="continue",
    )
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    assert result.text == clean.text  # the two halves are the uninterrupted answer
    assert [(s.from_route.split(":")[0], s.to_route.split(":")[0]) for s in result.final.seams] == [
        ("hosted", "local")
    ]
    assert result.final.seams[0].kind == "continue"
    assert stack.deepseek.recorded("/beta/chat/completions") == []  # no continuation there
    continued = stack.ollama.recorded("/api/chat")[0].json["messages"][-1]
    assert continued["role"] == "assistant"
    assert continued["content"] == result.text[: result.final.seams[0].at_char]


async def test_each_route_takes_over_at_most_once(stack: Stack, kind: str) -> None:
    # Local breaks, hosted continues and breaks too: nothing is left, so the caller gets
    # the partial text of both, and the hosted route was asked to continue exactly once.
    stack.ollama.add_fault(Fault("drop", after_chunks=3, path="/api/chat"))
    stack.deepseek.add_fault(Fault("drop", after_chunks=2, times=None))
    client = stack.client(kind, continue_streams=True)
    with pytest.raises(dsollama.StreamInterruptedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    error = caught.value
    clean = await stack.call(
        kind, stack.client(kind, hosted_api_key=None), "chat", "deepseek-r1:8b", USER, think=False
    )
    assert clean.text.startswith(error.partial_text)
    assert len(stack.deepseek.recorded("/beta/chat/completions")) == 1
    assert "no route could continue it" in str(error)
    assert [a.outcome for a in error.attempts][-2:] == ["fallback", "failed"]


async def test_a_stalling_route_is_not_continued_on_again(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("drop", after_chunks=3, path="/api/chat"))
    stack.deepseek.add_fault(Fault("stall_after", after_chunks=2, seconds=0, times=None))
    client = stack.client(kind, continue_streams=True, gap_timeout=0.3, total_timeout=8.0)
    with pytest.raises(dsollama.StreamInterruptedError):
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    # Before: every stall was continued on again until the total deadline.
    assert len(stack.deepseek.recorded("/beta/chat/completions")) == 1


async def test_restart_announces_itself_before_the_new_answer(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("drop", after_chunks=4, path="/api/chat"))
    client = stack.client(kind)
    result = await stack.call(
        kind,
        client,
        "chat",
        "deepseek-r1:8b",
        USER,
        stream=True,
        think=False,
        on_broken_stream="restart",
    )
    flags = [bool(c.restart) for c in result.chunks]
    assert flags.count(True) == 1
    marker = flags.index(True)
    before, after = result.chunks[:marker], result.chunks[marker + 1 :]
    assert all(c.served_by.kind == "local" for c in before)
    assert result.chunks[marker].message.content == ""  # the announcement carries no text
    assert all(c.served_by.kind == "hosted" for c in after)
    restarted = "".join(c.message.content or "" for c in after)
    whole = await stack.call(
        kind,
        stack.client(kind, policy="hosted-first"),
        "chat",
        "deepseek-r1:8b",
        USER,
        think=False,
    )
    assert restarted == whole.text  # a whole answer, not the rest of one
    assert result.final.seams[0].kind == "restart"
    assert stack.deepseek.recorded("/beta/chat/completions") == []  # not a continuation


async def test_raise_is_the_default_and_says_how_to_recover(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("drop", after_chunks=3, path="/api/chat"))
    client = stack.client(kind)
    with pytest.raises(dsollama.StreamInterruptedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    assert "on_broken_stream='restart'" in (caught.value.hint or "")
    assert stack.deepseek.requests == []


async def test_an_unknown_recovery_mode_is_a_config_error(stack: Stack, kind: str) -> None:
    client = stack.client(kind)
    with pytest.raises(dsollama.ConfigError, match="on_broken_stream"):
        await stack.call(
            kind, client, "chat", "deepseek-r1:8b", USER, on_broken_stream="retry-forever"
        )
