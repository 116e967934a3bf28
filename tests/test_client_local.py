"""The clients on a healthy local daemon: drop-in shapes, served_by, parity, secrets."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from typing import Any

import ollama
import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


async def test_chat_is_answered_locally_with_official_shapes(
    stack: Stack, kind: str, stream: bool
) -> None:
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    final = result.final
    assert isinstance(final, ollama.ChatResponse)
    assert final.done
    assert final.done_reason == "stop"
    assert final.message.role == "assistant"
    assert result.text
    assert result.thinking
    assert final["message"]["content"] == final.message.content  # still subscriptable
    assert final.eval_count
    assert final.total_duration
    for chunk in result.chunks:
        assert chunk.served_by is not None
        assert chunk.served_by.kind == "local"
        assert chunk.served_by.model == "deepseek-r1:8b"
    assert result.outcomes == [("local", "ok")]
    assert final.fallback_reason is None
    assert final.cost_usd == 0.0
    assert final.ttft_s is not None
    assert final.elapsed_s is not None
    assert 0 < final.ttft_s <= final.elapsed_s <= result.elapsed
    assert stack.deepseek.requests == []  # nothing left the machine


async def test_generate_is_answered_locally(stack: Stack, kind: str, stream: bool) -> None:
    client = stack.client(kind)
    result = await stack.call(kind, client, "generate", "deepseek-r1:8b", "Say hi", stream=stream)
    assert isinstance(result.final, ollama.GenerateResponse)
    assert result.text
    assert result.final.context  # generate's token context survives
    assert result.final.served_by.kind == "local"
    assert stack.deepseek.requests == []


async def test_streaming_really_streams(stack: Stack, kind: str) -> None:
    stack.ollama.configure(answer_tokens=8, thinking_tokens=0)
    client = stack.client(kind)
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False
    )
    assert len(result.chunks) >= 8
    assert all(not c.done for c in result.chunks[:-1])
    assert result.chunks[-1].attempts  # attempts only on the final chunk
    assert all(c.attempts is None for c in result.chunks[:-1])


async def test_embed_is_served_locally(stack: Stack, kind: str) -> None:
    stack.ollama.install("nomic-embed-text")
    client = stack.client(kind)
    if kind == "async":
        result = await client.embed("nomic-embed-text", ["a", "b"])
    else:
        result = await asyncio.to_thread(client.embed, "nomic-embed-text", ["a", "b"])
    assert isinstance(result, ollama.EmbedResponse)
    assert len(result.embeddings) == 2
    assert result.served_by.kind == "local"


async def test_provisioning_methods_keep_official_names(stack: Stack, kind: str) -> None:
    client = stack.client(kind)

    async def run(name: str, *args: Any) -> Any:
        method = getattr(client, name)
        return await method(*args) if kind == "async" else await asyncio.to_thread(method, *args)

    listed = await run("list")
    assert isinstance(listed, ollama.ListResponse)
    assert "deepseek-r1:8b" in [m.model for m in listed.models]
    shown = await run("show", "deepseek-r1:8b")
    assert isinstance(shown, ollama.ShowResponse)
    with pytest.raises(dsollama.ModelNotFoundError) as caught:
        await run("show", "not-there:1b")
    assert "dsollama pull" in (caught.value.hint or "")


def test_sync_and_async_clients_have_the_same_methods_and_parameters() -> None:
    public = [
        n
        for n in dir(dsollama.AsyncClient)
        if not n.startswith("_") and callable(getattr(dsollama.AsyncClient, n))
    ]
    for name in [
        "chat",
        "generate",
        "embed",
        "list",
        "show",
        "ps",
        "delete",
        "copy",
        "pull",
        "create",
        "provision",
        "pull_events",
        "create_from_modelfile",
        "routes",
    ]:
        assert name in public
        sync_params = inspect.signature(getattr(dsollama.Client, name)).parameters
        async_params = inspect.signature(getattr(dsollama.AsyncClient, name)).parameters
        assert list(sync_params) == list(async_params), name
        for param in sync_params:
            assert sync_params[param].default == async_params[param].default, (name, param)


def test_chat_and_generate_accept_every_official_parameter() -> None:
    for name in ("chat", "generate"):
        ours = inspect.signature(getattr(dsollama.Client, name)).parameters
        official = inspect.signature(getattr(ollama.Client, name)).parameters
        missing = [p for p in official if p not in ours and p not in {"width", "height", "steps"}]
        assert missing == [], (name, missing)


async def test_sync_client_works_inside_a_running_event_loop(stack: Stack) -> None:
    # A notebook cell: a loop is running in this thread and plain sync code calls dsollama.
    client = stack.client("sync")
    result = client.chat("deepseek-r1:8b", USER)
    assert result.served_by.kind == "local"


async def test_closing_a_stream_early_cancels_the_upstream_request(stack: Stack, kind: str) -> None:
    stack.ollama.configure(tokens_per_second=50, answer_tokens=200)
    client = stack.client(kind)
    if kind == "async":
        parts = await client.chat("deepseek-r1:8b", USER, stream=True)
        await parts.__anext__()
        assert stack.ollama.in_flight("deepseek-r1:8b") == 1
        await parts.aclose()
    else:

        def read_one() -> None:
            parts = client.chat("deepseek-r1:8b", USER, stream=True)
            next(parts)
            assert stack.ollama.in_flight("deepseek-r1:8b") == 1
            parts.close()

        await asyncio.to_thread(read_one)
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 0)


async def test_cancelling_the_task_cancels_the_upstream_request(stack: Stack) -> None:
    stack.ollama.configure(tokens_per_second=50, answer_tokens=200)
    client = stack.client("async")
    task = asyncio.ensure_future(client.chat("deepseek-r1:8b", USER))
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: stack.ollama.in_flight("deepseek-r1:8b") == 0)


async def test_the_key_goes_only_to_the_hosted_route(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = stack.deepseek.api_key
    client = stack.client("async")
    await client.chat("deepseek-r1:8b", USER)
    stack.ollama.refuse_connections()
    await client.chat("deepseek-r1:8b", USER)  # served hosted
    for request in stack.ollama.requests:
        assert key not in str(request.headers)
        assert key.encode() not in request.body
    hosted = stack.deepseek.recorded("/chat/completions")
    assert hosted
    assert hosted[0].headers["authorization"] == f"Bearer {key}"
    assert key not in repr(client)
    assert key not in repr(client.settings)
    assert key not in caplog.text


async def test_a_refused_key_is_not_echoed_in_errors(stack: Stack) -> None:
    stack.ollama.refuse_connections()
    client = stack.client("async", hosted_api_key="sk-wrong-key-abcdef123456")
    with pytest.raises(dsollama.AllRoutesFailedError) as caught:
        await client.chat("deepseek-r1:8b", USER)
    text = str(caught.value) + repr(caught.value.attempts)
    assert "sk-wrong-key-abcdef123456" not in text
    assert "3456" not in text  # DeepSeek echoes the key's last characters; we drop them


async def test_plain_http_to_a_remote_hosted_endpoint_is_refused(stack: Stack) -> None:
    with pytest.raises(dsollama.InsecureEndpointError):
        stack.client("async", hosted_base_url="http://api.example.com")


async def test_one_info_line_per_call(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dsollama")
    client = stack.client("async")
    await client.chat("deepseek-r1:8b", USER)
    lines = [r.getMessage() for r in caplog.records if r.name == "dsollama"]
    assert len(lines) == 1
    assert "deepseek-r1:8b" in lines[0]
    assert "local" in lines[0]
    assert "ttft=" in lines[0]
    assert "tokens=" in lines[0]


async def test_every_call_reaches_the_configured_sinks(stack: Stack) -> None:
    records: list[dsollama.CallRecord] = []

    class Sink:
        def record(self, rec: dsollama.CallRecord) -> None:
            records.append(rec)

    client = dsollama.AsyncClient(**stack.settings(), sinks=[Sink()])
    stack.clients.append(client)
    await client.chat("deepseek-r1:8b", USER)
    stack.ollama.add_fault(Fault("status", status=400, message="bad"))
    with pytest.raises(dsollama.BadRequestError):
        await client.chat("deepseek-r1:8b", USER)
    assert [r.ok for r in records] == [True, False]
    assert records[0].served_by is not None
    assert records[0].served_by.kind == "local"
    assert records[1].error_class == "BadRequestError"
    assert records[0].response_text


async def _until(condition: Any, timeout: float = 5.0) -> None:
    """Poll a condition the doubles expose (they run on another thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def test_each_client_thread_shares_one_private_loop() -> None:
    from dsollama import _loop

    first = _loop.loop()
    seen: list[Any] = []
    threads = [threading.Thread(target=lambda: seen.append(_loop.loop())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(loop is first for loop in seen)


async def test_stopping_right_after_the_final_chunk_is_still_a_success(stack: Stack) -> None:
    records: list[dsollama.CallRecord] = []

    class Sink:
        def record(self, rec: dsollama.CallRecord) -> None:
            records.append(rec)

    client = dsollama.AsyncClient(**stack.settings(), sinks=[Sink()])
    stack.clients.append(client)
    parts = await client.chat("deepseek-r1:8b", USER, stream=True)
    async for part in parts:
        if part.done:
            break  # never asks for the (non-existent) next chunk
    await parts.aclose()
    assert [r.ok for r in records] == [True]
    assert records[0].error_class is None


async def test_a_stream_of_new_model_names_leaves_routing_state_bounded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through serve, anyone who can reach it names the model: a new name in every request
    # must not add routing state for as long as the process runs.
    from dsollama import _bounded

    monkeypatch.setattr(_bounded, "KEYS_KEPT", 16)
    client = stack.client("async", policy="local-only")
    for i in range(60):
        with pytest.raises(dsollama.ModelNotFoundError):
            await client.chat(f"nobody-has-{i}:1b", USER)
    state = client._router.state
    store = state.store
    sizes = {
        "facts": len(state._facts),
        "breaker cache": len(state._breakers),
        "predictions": len(state._predicted),
        "loads": len(store._loads),
        "breakers": len(store._breakers),
    }
    assert max(sizes.values()) <= 16, sizes
    answer = await client.chat("deepseek-r1:8b", USER)  # routing works as before
    assert answer.message.content
