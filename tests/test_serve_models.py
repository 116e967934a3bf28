"""`dsollama serve` lists every usable route's models, marks each with its routes, and
routes a listed name the way the library would.

The official `ollama` and `openai` clients must still parse the lists: the mark is a
field they ignore (``dsollama``), kept by openai-python in ``model_extra``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import ollama
import openai
import pytest

from dsollama.testing import FakeVLLM

from .conftest import Stack
from .serve_harness import MODEL, USER, Served, http, serving

pytestmark = pytest.mark.anyio

CLOUD_ONLY = "frontier-r1"
"A name only the third-party route serves (nothing in the catalogue connects it)."


@pytest.fixture
def cloud() -> Iterator[FakeVLLM]:
    """An OpenAI-format server playing a third-party provider."""
    with FakeVLLM(served_model_names=("acme/DeepSeek-R1",)) as fake:
        yield fake


def routes(stack: Stack, gpu: FakeVLLM, cloud: FakeVLLM, **home: Any) -> list[dict[str, Any]]:
    return [
        {"preset": "ollama", "base_url": stack.ollama.url, "name": "home", **home},
        {
            "preset": "deepseek",
            "base_url": stack.deepseek.url,
            "name": "deepseek",
            "api_key": stack.deepseek.api_key,
            "private": False,  # the double listens on loopback; the real API does not
        },
        {"preset": "vllm", "base_url": gpu.base_url, "name": "gpu-box", "models": [gpu.model]},
        {
            "preset": "vllm",
            "base_url": cloud.base_url,
            "name": "cloud",
            "private": False,
            "model_map": {CLOUD_ONLY: cloud.model, "deepseek-flash": cloud.model},
        },
        {
            # No key: unusable, so nothing it declares is offered.
            "preset": "vllm",
            "base_url": "http://127.0.0.1:9/v1",
            "name": "keyless",
            "private": False,
            "key_env": "DSOLLAMA_TEST_UNSET_KEY",
            "models": ["needs-a-key"],
        },
    ]


def raw_tags(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), f"listed twice: {names}"
    return {e["name"]: e for e in entries}


async def ollama_list(served: Served) -> ollama.ListResponse:
    def run() -> ollama.ListResponse:
        with ollama.Client(host=served.url) as client:
            return client.list()

    return await asyncio.to_thread(run)


def openai_client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0, timeout=10)


async def test_api_tags_lists_every_usable_route_once_marked_with_its_routes(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    with serving(stack, routes=routes(stack, fake_vllm, cloud)) as served:
        listed = await ollama_list(served)  # the official client parses the list
        raw = raw_tags((await http("GET", f"{served.url}/api/tags")).json()["models"])
    expected = {
        MODEL: (["home"], True),
        "deepseek-coder:6.7b": (["home"], True),
        "deepseek-flash": (["deepseek", "cloud"], False),
        "deepseek-v4-pro": (["deepseek"], False),
        fake_vllm.model: (["gpu-box"], True),
        CLOUD_ONLY: (["cloud"], False),
    }
    assert sorted(m.model or "" for m in listed.models) == sorted(expected)
    assert {n: (e["dsollama"]["routes"], e["dsollama"]["private"]) for n, e in raw.items()} == (
        expected
    )
    assert "remote_host" not in raw[MODEL]  # the daemon's own entry
    daemon = raw_tags((await http("GET", f"{stack.ollama.url}/api/tags")).json()["models"])
    assert raw[MODEL] == {**daemon[MODEL], "dsollama": {"routes": ["home"], "private": True}}
    assert raw[fake_vllm.model]["remote_host"] == fake_vllm.base_url
    assert raw[fake_vllm.model]["details"]["format"] == "remote"  # private, not hosted
    assert raw[CLOUD_ONLY]["remote_model"] == cloud.model  # the route's own id
    assert raw[CLOUD_ONLY]["details"]["format"] == "hosted"


async def test_v1_models_lists_the_same_names_and_openai_keeps_the_mark(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    with (
        serving(stack, routes=routes(stack, fake_vllm, cloud)) as served,
        openai_client(served) as client,
    ):
        listed = {m.id: m for m in client.models.list()}
        retrieved = client.models.retrieve(CLOUD_ONLY)
    assert {name: m.owned_by for name, m in listed.items()} == {
        MODEL: "library",
        "deepseek-coder:6.7b": "library",
        "deepseek-flash": "deepseek-hosted",
        "deepseek-v4-pro": "deepseek-hosted",
        fake_vllm.model: "gpu-box",
        CLOUD_ONLY: "cloud",
    }
    assert (listed[fake_vllm.model].model_extra or {})["dsollama"] == {
        "routes": ["gpu-box"],
        "private": True,
    }
    assert (retrieved.model_extra or {})["dsollama"] == {"routes": ["cloud"], "private": False}


async def test_local_only_lists_nothing_only_third_parties_serve(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    with (
        serving(stack, routes=routes(stack, fake_vllm, cloud), policy="local-only") as served,
        openai_client(served) as client,
    ):
        tags = raw_tags((await http("GET", f"{served.url}/api/tags")).json()["models"])
        ids = {m.id for m in client.models.list()}
    private = {MODEL, "deepseek-coder:6.7b", fake_vllm.model}
    assert set(tags) == ids == private
    assert all(e["dsollama"]["routes"] in (["home"], ["gpu-box"]) for e in tags.values())


async def test_a_listed_name_is_routed_to_the_route_that_lists_it(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    with serving(stack, routes=routes(stack, fake_vllm, cloud)) as served:
        for name, route in ((fake_vllm.model, "gpu-box"), (CLOUD_ONLY, "cloud"), (MODEL, "home")):
            body = {"model": name, "messages": USER, "stream": False}
            answer = await http("POST", f"{served.url}/api/chat", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-dsollama-route"] == route


async def test_api_show_answers_for_a_model_no_daemon_holds(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    with serving(stack, routes=routes(stack, fake_vllm, cloud)) as served:

        def run() -> list[ollama.ShowResponse]:
            with ollama.Client(host=served.url) as client:
                return [client.show(n) for n in (fake_vllm.model, CLOUD_ONLY, MODEL)]

        gpu, third_party, local = await asyncio.to_thread(run)
    assert "gpu-box" in (gpu.modelfile or "")
    assert "thinking" in (gpu.capabilities or [])  # a vLLM route's model always reasons
    assert "cloud" in (third_party.modelfile or "")
    assert local.modelinfo  # the daemon's own answer
    assert "gpu-box" not in (local.modelfile or "")


async def test_an_ollama_route_that_declares_models_lists_only_those(
    stack: Stack, fake_vllm: FakeVLLM, cloud: FakeVLLM
) -> None:
    home = {"models": [MODEL], "model_map": {"r1": MODEL, "ghost": "not-pulled:1b"}}
    with serving(stack, routes=routes(stack, fake_vllm, cloud, **home)) as served:
        tags = raw_tags((await http("GET", f"{served.url}/api/tags")).json()["models"])
        body = {"model": "r1", "messages": USER, "stream": False}
        answer = await http("POST", f"{served.url}/api/chat", json=body)
    assert {n for n, e in tags.items() if e["dsollama"]["routes"] == ["home"]} == {MODEL, "r1"}
    assert tags["r1"]["digest"] == tags[MODEL]["digest"]  # the daemon's model, under the key
    assert answer.headers["x-dsollama-route"] == "home"
    assert answer.headers["x-dsollama-model"] == MODEL


async def test_the_default_routes_are_marked_too(stack: Stack) -> None:
    with serving(stack) as served, openai_client(served) as client:
        tags = raw_tags((await http("GET", f"{served.url}/api/tags")).json()["models"])
        listed = {m.id: (m.model_extra or {})["dsollama"] for m in client.models.list()}
    local = f"local:{stack.ollama.url.removeprefix('http://')}"
    hosted = f"hosted:{stack.deepseek.url.removeprefix('http://')}"
    assert tags[MODEL]["dsollama"] == listed[MODEL] == {"routes": [local], "private": True}
    assert tags["deepseek-flash"]["dsollama"] == {"routes": [hosted], "private": False}
    assert listed["deepseek-flash"] == {"routes": [hosted], "private": False}
