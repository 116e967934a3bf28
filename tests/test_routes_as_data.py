"""Routes as data: model fallback chains on one provider, privacy by route, and admission
from a vLLM-like server's real queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import dsollama
from dsollama.testing import FakeVLLM, Fault

from .conftest import USER, Stack
from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

X = "deepseek-ai/DeepSeek-V4-Pro"
Y = "deepseek-ai/DeepSeek-V4-Flash"


@pytest.fixture
def provider() -> Iterator[FakeVLLM]:
    """A third party serving two DeepSeek models under its own names."""
    with FakeVLLM(served_model_names=[X, Y], token_seconds=0.001) as fake:
        yield fake


def _provider_route(fake: FakeVLLM) -> dict[str, Any]:
    return {
        "name": "provider",
        "preset": "vllm",
        "base_url": fake.url + "/v1",
        "private": False,
        "model_map": {"deepseek-v4-pro": X, "deepseek-flash": Y},
    }


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=429, times=None, model=X),
        Fault("status", status=503, times=None, model=X),
        Fault("reset", times=None, model=X),
        Fault(
            "status",
            status=400,
            times=None,
            model=X,
            message="This model's maximum context length is 64 tokens. However, you requested 900 tokens.",
        ),
    ],
    ids=["429", "503", "reset", "context"],
)
async def test_a_model_chain_on_one_provider_moves_from_x_to_y(
    stack: Stack, kind: str, provider: FakeVLLM, fault: Fault
) -> None:
    provider.add_fault(fault)
    client = stack.client(kind, routes=[_provider_route(provider)])
    result = await stack.call(
        kind, client, "chat", "deepseek-v4-pro", USER, fallback_models=["deepseek-flash"]
    )
    assert result.final.served_by.route == "provider"
    assert result.final.served_by.model == Y
    assert result.final.attempts[0].model == X
    assert result.final.attempts[0].error is not None
    assert result.final.attempts[-1].outcome == "ok"


async def test_a_chain_can_be_configured_per_model(
    stack: Stack, kind: str, provider: FakeVLLM
) -> None:
    provider.add_fault(Fault("status", status=503, times=None, model=X))
    client = stack.client(
        kind,
        routes=[_provider_route(provider)],
        models={"deepseek-v4-pro": {"fallbacks": ["deepseek-flash"]}},
    )
    result = await stack.call(kind, client, "chat", "deepseek-v4-pro", USER)
    assert result.final.served_by.model == Y


async def test_a_third_party_route_never_serves_a_local_only_call(
    stack: Stack, kind: str, provider: FakeVLLM
) -> None:
    stack.ollama.refuse_connections()
    routes = [
        {"name": "home", "preset": "ollama", "base_url": stack.ollama.url},
        _provider_route(provider),
    ]
    client = stack.client(kind, routes=routes, on_broken_stream="continue")
    with pytest.raises(dsollama.DaemonUnreachableError):
        await stack.call(kind, client, "chat", "deepseek-v4-pro", USER, local_only=True)
    with pytest.raises(dsollama.DsollamaError):  # the daemon's breaker is open by now
        await stack.call(kind, client, "chat", "deepseek-v4-pro", USER, policy="local-only")
    assert provider.recorded("/v1/chat/completions") == []  # not one request


# -- admission from the server's own queue ------------------------------------------------

SERVED = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
BUDGET = 1.0


def _gpu_route(fake: FakeVLLM) -> dict[str, Any]:
    return {
        "name": "gpu",
        "preset": "vllm",
        "base_url": fake.url + "/v1",
        "private": True,
        "capacity": 4,
        "model_map": {"deepseek-r1:7b": SERVED},
        "load_ttl": 0.05,
    }


async def _burst(clients: list[dsollama.AsyncClient], n: int) -> list[Any]:
    async def one(client: dsollama.AsyncClient) -> Any:
        started = asyncio.get_running_loop().time()
        answer = None
        async for part in await client.chat("deepseek-r1:7b", USER, stream=True, think=False):
            if answer is None:
                answer = (part, asyncio.get_running_loop().time() - started)
        return answer

    return await asyncio.gather(*(one(clients[i % len(clients)]) for i in range(n)))


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_burst_on_a_vllm_route_keeps_the_minimum_hosted_share(
    stack: Stack, processes: int, request: pytest.FixtureRequest
) -> None:
    # Four run at once (~0.6 s each); a budget of 1 s: the 5th to 8th start in time as
    # the first four finish; only the last four are better off hosted.
    with FakeVLLM(
        served_model_names=[SERVED],
        max_num_seqs=4,
        answer_tokens=12,
        thinking_tokens=0,
        token_seconds=0.05,
    ) as gpu:
        shared: dict[str, Any] = {}
        if processes > 1:
            redis: RedisServer = request.getfixturevalue("redis_server")
            shared = {
                "state_url": redis.url,
                "state_namespace": request.getfixturevalue("redis_namespace"),
                "state_op_timeout": 2.0,  # a loaded machine is not a failing Redis
            }
        routes = [
            _gpu_route(gpu),
            {
                "name": "deepseek",
                "preset": "deepseek",
                "base_url": stack.deepseek.url,
                "api_key": stack.deepseek.api_key,
            },
        ]
        clients = [
            dsollama.AsyncClient(
                **stack.settings(routes=routes, first_token_timeout=BUDGET, **shared)
            )
            for _ in range(processes)
        ]
        try:
            for client in clients:  # each learns how long an answer takes
                await client.chat("deepseek-r1:7b", USER, think=False)
            results = await _burst(clients, 12)
        finally:
            for client in clients:
                await client.aclose()
    routes_used = [part.served_by.route for part, _ in results]
    first_tokens = sorted(t for _, t in results)
    assert routes_used.count("deepseek") == 4
    assert routes_used.count("gpu") == 8
    assert first_tokens[-1] < BUDGET  # nobody waited the budget out
