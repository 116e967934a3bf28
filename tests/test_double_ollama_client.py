"""FakeOllama driven by the official `ollama` client: the proof that the double is faithful.

Each test asserts what the real daemon does as the client sees it (types, values,
`ResponseError` texts and status codes, exceptions for a dead daemon).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
import ollama
import pytest

from dsollama.testing import FakeModel, FakeOllama, Fault

R1 = "deepseek-r1:8b"
CODER = "deepseek-coder:1.3b"
BUSY = "server busy, please try again.  maximum pending requests exceeded"
USER = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[R1, CODER]) as double:
        yield double


@pytest.fixture
def client(fake: FakeOllama) -> Iterator[ollama.Client]:
    with ollama.Client(host=fake.url) as official:
        yield official


# -- listing ----------------------------------------------------------------------------


def test_list_show_ps_parse_into_the_clients_types(client: ollama.Client) -> None:
    listed = client.list()
    assert {m.model for m in listed.models} == {R1, CODER}
    entry = next(m for m in listed.models if m.model == R1)
    assert entry.details is not None
    assert entry.details.family == "qwen3"
    assert entry.details.quantization_level == "Q4_K_M"
    assert re.fullmatch(r"[0-9a-f]{64}", entry.digest or "")

    shown = client.show(R1)
    assert shown.capabilities == ["completion", "thinking"]
    assert shown.modelinfo is not None
    assert shown.modelinfo["qwen3.context_length"] == 131072
    assert shown.parameters is not None
    assert shown.parameters.startswith('stop                           "<｜')

    assert client.ps().models == []
    client.generate(R1)  # load
    running = client.ps().models
    assert [m.model for m in running] == [R1]
    assert running[0].context_length == 4096
    assert running[0].size_vram == running[0].size


# -- pull and create --------------------------------------------------------------------


def test_pull_streams_realistic_progress(client: ollama.Client) -> None:
    events = list(client.pull("deepseek-r1:1.5b", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    layers = [e for e in events if (e.status or "").startswith("pulling ") and e.digest]
    first = layers[0]
    assert first.status == f"pulling {first.digest[7:19]}"
    assert first.completed is None
    assert first.total
    assert any(e.completed == e.total for e in layers)
    assert "deepseek-r1:1.5b" in {m.model for m in client.list().models}
    # A second pull finds every layer on disk: one complete line per layer.
    again = [e for e in client.pull("deepseek-r1:1.5b", stream=True) if e.digest]
    assert all(e.completed == e.total for e in again)


def test_pull_progress_follows_the_bandwidth() -> None:
    with FakeOllama(pull_bytes_per_second=200_000) as fake, ollama.Client(host=fake.url) as client:
        fake.pull_tick_seconds = 0.01
        events = list(client.pull("deepseek-coder:6.7b", stream=True))
    weights = [e for e in events if e.total == 38_000]  # 3.8 GB scaled down 100,000 times
    completed = [e.completed for e in weights if e.completed]
    assert len(completed) >= 5
    assert completed == sorted(completed)
    assert completed[-1] == 38_000


def test_pull_of_an_unknown_model_fails_like_ollama(client: ollama.Client) -> None:
    stream = client.pull("no-such-model", stream=True)
    assert next(stream).status == "pulling manifest"  # HTTP 200 first...
    with pytest.raises(ollama.ResponseError) as streamed:
        next(stream)  # ...then the error line
    assert streamed.value.error == "pull model manifest: file does not exist"
    assert streamed.value.status_code == -1

    with pytest.raises(ollama.ResponseError) as blocking:
        client.pull("no-such-model")
    assert blocking.value.status_code == 500
    assert str(blocking.value) == "pull model manifest: file does not exist (status code: 500)"


def test_pull_non_streaming_returns_success(client: ollama.Client) -> None:
    assert client.pull("deepseek-llm:7b").status == "success"


def test_create_from_a_local_model(client: ollama.Client) -> None:
    events = list(
        client.create(
            "mario", from_=R1, system="You are Mario.", parameters={"temperature": 0.7}, stream=True
        )
    )
    assert events[-1].status == "success"
    assert any((e.status or "").startswith("using existing layer sha256:") for e in events)
    assert any((e.status or "").startswith("creating new layer sha256:") for e in events)
    shown = client.show("mario")
    assert shown.details is not None
    assert shown.details.parent_model == R1
    assert shown.parameters is not None
    assert "temperature                    0.7" in shown.parameters
    assert shown.capabilities == ["completion", "thinking"]


def test_create_from_a_registry_model_pulls_it_first(client: ollama.Client) -> None:
    events = [e.status for e in client.create("tiny", from_="deepseek-r1:1.5b", stream=True)]
    assert events[0] == "pulling manifest"
    assert "verifying sha256 digest" in events
    assert events[-1] == "success"
    models = {m.model for m in client.list().models}
    assert {"tiny:latest", "deepseek-r1:1.5b"} <= models


def test_create_from_uploaded_files(client: ollama.Client, tmp_path: Path) -> None:
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF" + b"\x00" * 60)
    digest = client.create_blob(weights)
    events = [
        e.status for e in client.create("local-gguf", files={"model.gguf": digest}, stream=True)
    ]
    assert events == [
        "parsing GGUF",
        f"using existing layer {digest}",
        "writing manifest",
        "success",
    ]
    assert "local-gguf:latest" in {m.model for m in client.list().models}

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_bytes(b"just text")
    other = client.create_blob(not_gguf)
    with pytest.raises(ollama.ResponseError) as info:
        client.create("broken", files={"notes.gguf": other})
    assert (info.value.status_code, info.value.error) == (
        400,
        "supplied file was not in GGUF format",
    )


def test_copy_and_delete(client: ollama.Client) -> None:
    assert client.copy(R1, "backup").status == "success"
    assert "backup:latest" in {m.model for m in client.list().models}
    assert client.delete("backup").status == "success"
    with pytest.raises(ollama.ResponseError) as deleted:
        client.delete("backup")
    assert (deleted.value.status_code, deleted.value.error) == (404, "model 'backup' not found")
    with pytest.raises(ollama.ResponseError) as copied:
        client.copy("ghost", "x")
    assert (copied.value.status_code, copied.value.error) == (404, 'model "ghost" not found')


# -- chat and generate ------------------------------------------------------------------


def test_chat_non_streaming_separates_thinking(client: ollama.Client) -> None:
    reply = client.chat(R1, messages=USER)
    assert reply.done
    assert reply.done_reason == "stop"
    assert reply.message.role == "assistant"
    assert reply.message.thinking
    assert reply.message.content
    assert "<think>" not in (reply.message.content or "")
    assert reply.eval_count == 20  # 8 thinking + 12 answer tokens
    for counter in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(reply[counter], int)
        assert reply[counter] > 0
    # Deterministic: the same conversation gets the same answer.
    assert client.chat(R1, messages=USER).message.content == reply.message.content


def test_chat_streaming_matches_non_streaming(client: ollama.Client) -> None:
    chunks = list(client.chat(R1, messages=USER, stream=True))
    assert all(not c.done for c in chunks[:-1])
    assert chunks[-1].done
    assert chunks[-1].done_reason == "stop"
    assert chunks[-1].eval_count == 20
    assert all(c.done_reason is None and c.eval_count is None for c in chunks[:-1])
    thinking = "".join(c.message.thinking or "" for c in chunks)
    content = "".join(c.message.content or "" for c in chunks)
    whole = client.chat(R1, messages=USER)
    assert (thinking, content) == (whole.message.thinking, whole.message.content)


def test_think_false_and_non_thinking_models(client: ollama.Client) -> None:
    plain = client.chat(R1, messages=USER, think=False)
    assert plain.message.thinking is None
    assert plain.eval_count == 12
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(CODER, messages=USER, think=True)
    assert (info.value.status_code, info.value.error) == (
        400,
        f'"{CODER}" does not support thinking',
    )


def test_generate_streaming_and_not(client: ollama.Client) -> None:
    whole = client.generate(R1, "Say hi", think=False)
    assert whole.done_reason == "stop"
    assert whole.response
    assert whole.context
    chunks = list(client.generate(R1, "Say hi", think=False, stream=True))
    assert "".join(c.response or "" for c in chunks) == whole.response
    assert chunks[-1].response == ""
    assert chunks[-1].context == whole.context


def test_missing_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as chat:
        client.chat("missing", messages=USER)
    assert (chat.value.status_code, chat.value.error) == (404, "model 'missing' not found")
    with pytest.raises(ollama.ResponseError) as streamed:
        next(iter(client.generate("missing", "hi", stream=True)))
    assert streamed.value.status_code == 404  # a real status, even when streaming
    with pytest.raises(ollama.ResponseError) as embed:
        client.embed("missing", "hi")
    assert embed.value.error == 'model "missing" not found, try pulling it first'


def test_tools_produce_tool_calls() -> None:
    tooled = FakeModel("toolbox:latest", family="qwen3", capabilities=("completion", "tools"))
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    with FakeOllama(models=[tooled, R1]) as fake, ollama.Client(host=fake.url) as client:
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        reply = client.chat("toolbox", messages=messages, tools=[weather])
        calls = reply.message.tool_calls or []
        assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"})
        ]
        answered = client.chat(
            "toolbox",
            messages=[
                *messages,
                {"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]},
                {"role": "tool", "content": "18 degrees", "tool_name": "get_weather"},
            ],
            tools=[weather],
        )
        assert answered.message.content
        assert not answered.message.tool_calls
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(R1, messages=messages, tools=[weather])
        assert info.value.status_code == 400
        assert info.value.error == f"registry.ollama.ai/library/{R1} does not support tools"


def test_embed(client: ollama.Client) -> None:
    result = client.embed(R1, ["a", "b"])
    assert len(result.embeddings) == 2
    assert all(len(v) == 8 for v in result.embeddings)
    assert abs(sum(x * x for x in result.embeddings[0]) - 1) < 1e-5  # L2-normalised
    assert client.embed(R1, ["a"]).embeddings[0] == result.embeddings[0]


# -- errors and transport ---------------------------------------------------------------


def test_error_line_mid_stream_is_status_minus_one(fake: FakeOllama, client: ollama.Client) -> None:
    fake.add_fault(Fault("error_line", after_chunks=3, message="model runner crashed"))
    stream = client.chat(R1, messages=USER, stream=True)
    received = [next(stream) for _ in range(3)]
    with pytest.raises(ollama.ResponseError) as info:
        next(stream)
    assert (info.value.error, info.value.status_code) == ("model runner crashed", -1)
    assert not any(c.done for c in received)


def test_status_faults_surface_as_response_errors(fake: FakeOllama, client: ollama.Client) -> None:
    fake.add_fault(Fault("status", status=503, times=2))
    for _ in range(2):
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(R1, messages=USER)
        assert (info.value.status_code, info.value.error) == (503, BUSY)
    assert client.chat(R1, messages=USER).done


def test_refused_connection() -> None:
    with FakeOllama(models=[R1]) as fake, ollama.Client(host=fake.url) as client:
        fake.refuse_connections()
        with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
            client.chat(R1, messages=USER)
        with pytest.raises(httpx.ConnectError):  # streaming: the raw httpx error
            next(iter(client.chat(R1, messages=USER, stream=True)))
        assert fake.requests == []  # nothing reached it
        fake.accept_connections()
        assert client.chat(R1, messages=USER).done


def test_truncated_stream_raises_nothing_in_the_client(
    fake: FakeOllama, client: ollama.Client
) -> None:
    fake.add_fault(Fault("close_without_done", after_chunks=4))
    chunks = list(client.chat(R1, messages=USER, stream=True))
    assert len(chunks) == 4
    assert not chunks[-1].done


# -- scheduling -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_warm_model_queues_silently() -> None:
    """One slot, four concurrent 100 ms answers: none fails, the last ends after ~400 ms."""
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            FakeOllama(models=[CODER], tokens_per_second=100, answer_tokens=10)
        )
        client = await stack.enter_async_context(ollama.AsyncClient(host=fake.url))
        await client.generate(CODER)  # warm: the model is loaded
        started = time.monotonic()
        finished: list[float] = []

        async def one() -> None:
            reply = await client.chat(CODER, messages=USER)
            assert reply.done_reason == "stop"
            finished.append(time.monotonic() - started)

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)
        finished.sort()
        assert finished[0] < 0.35
        assert 0.38 <= finished[-1] < 1.5
        # Each waited for the previous one: the gaps are about one answer long.
        assert all(b - a > 0.07 for a, b in itertools.pairwise(finished))


@pytest.mark.slow
@pytest.mark.anyio
async def test_warm_model_queues_silently_at_full_scale(request: pytest.FixtureRequest) -> None:
    """The literal demonstration: four one-second generations on one slot take ~4 s."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("four seconds of real time: run with -m slow")
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            FakeOllama(models=[CODER], tokens_per_second=10, answer_tokens=10)
        )
        client = await stack.enter_async_context(ollama.AsyncClient(host=fake.url))
        await client.generate(CODER)
        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(client.chat, CODER, USER)
        assert 3.8 < time.monotonic() - started < 5.5


@pytest.mark.anyio
async def test_cold_model_with_a_small_queue_returns_503() -> None:
    async with AsyncExitStack() as stack:
        fake = await stack.enter_async_context(
            FakeOllama(models=[CODER], load_seconds=0.15, max_queue=1)
        )
        client = await stack.enter_async_context(ollama.AsyncClient(host=fake.url))
        outcomes: list[object] = []

        async def one() -> None:
            try:
                await client.chat(CODER, messages=USER)
                outcomes.append("ok")
            except ollama.ResponseError as exc:
                outcomes.append((exc.status_code, exc.error))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(one)
        # One loading, one queued behind it, the rest overflow the pending queue.
        assert sorted(map(str, outcomes)) == sorted(
            map(str, ["ok", "ok", (503, BUSY), (503, BUSY)])
        )


@pytest.mark.anyio
async def test_async_client_streams(fake: FakeOllama) -> None:
    async with ollama.AsyncClient(host=fake.url) as client:
        parts = [part async for part in await client.chat(R1, messages=USER, stream=True)]
        assert parts[-1].done
        assert parts[-1].eval_count == 20
        with pytest.raises(ollama.ResponseError) as info:
            await client.show("ghost")
    assert (info.value.status_code, info.value.error) == (404, "model 'ghost:latest' not found")
