"""A prompt too long for one route moves to a route where it fits, whatever the dialect.

Only when no route can take it is it raised, as `ContextOverflowError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import dsollama
from dsollama.testing import FakeLlamaServer, FakeVLLM, Fault

from .conftest import Stack

pytestmark = pytest.mark.anyio

SERVED = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
LONG = [{"role": "user", "content": "tell me about routes " * 60}]  # ~250 tokens


@pytest.fixture
def small_vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(served_model_names=[SERVED], max_model_len=64) as fake:
        yield fake


def _route(url: str, preset: str) -> dict[str, Any]:
    return {
        "name": "gpu-box",
        "preset": preset,
        "base_url": url + "/v1",
        "model_map": {"deepseek-r1:7b": SERVED},
        "private": True,
    }


def _hosted(stack: Stack) -> dict[str, Any]:
    return {
        "name": "deepseek",
        "preset": "deepseek",
        "base_url": stack.deepseek.url,
        "api_key": stack.deepseek.api_key,
    }


async def test_vllms_context_400_moves_the_call_to_a_route_where_it_fits(
    stack: Stack, kind: str, small_vllm: FakeVLLM
) -> None:
    routes = [_route(small_vllm.url, "vllm"), _hosted(stack)]
    client = stack.client(kind, routes=routes)
    result = await stack.call(kind, client, "chat", "deepseek-r1:7b", LONG)
    assert result.final.served_by.route == "deepseek"
    assert result.final.attempts[0].route == "gpu-box"
    assert result.final.attempts[0].error == "ContextOverflowError"
    assert "context" in (result.final.fallback_reason or "")


async def test_llama_servers_context_error_moves_the_call_too(stack: Stack, kind: str) -> None:
    with FakeLlamaServer(ctx_size=64) as llama:
        routes = [_route(llama.url, "llamacpp"), _hosted(stack)]
        client = stack.client(kind, routes=routes)
        result = await stack.call(kind, client, "chat", "deepseek-r1:7b", LONG)
    assert result.final.served_by.route == "deepseek"
    assert result.final.attempts[0].error == "ContextOverflowError"


async def test_ollamas_wording_moves_the_call_too(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(
        Fault(
            "status",
            status=400,
            path="/api/chat",
            message="the input length exceeds the context length",
        )
    )
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", LONG)
    assert result.final.served_by.kind == "hosted"
    assert result.final.attempts[0].error == "ContextOverflowError"


async def test_when_no_route_can_take_it_the_overflow_is_raised(
    stack: Stack, kind: str, small_vllm: FakeVLLM
) -> None:
    client = stack.client(kind, routes=[_route(small_vllm.url, "vllm")])
    with pytest.raises(dsollama.ContextOverflowError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:7b", LONG)
    assert [a.route for a in caught.value.attempts] == ["gpu-box"]
    assert "maximum context length" in str(caught.value)
