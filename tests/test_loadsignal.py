"""Load signals: the parsers, the sampler (TTL, single flight, failures), and
`HostedBackend.server_queue` / `server_capacity` against the vLLM and llama-server doubles.

Bursts are held in the doubles' slots by releasable stalls and observed with
``wait_for_load``, so every reading is compared with a known state, never after a sleep.
"""

from __future__ import annotations

import asyncio
import doctest
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import anyio
import httpx
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from dsollama._backends import loadsignal
from dsollama._backends.loadsignal import (
    METRIC_NAMES,
    LoadSampler,
    SignalUnavailable,
    parse_prometheus,
    queue_from_slots,
    queues_from_metrics,
    total_slots,
)
from dsollama._state import ServerQueue
from dsollama.testing import FakeLlamaServer, FakeVLLM, Fault
from tests.openai_clients import connect
from tests.prometheus_text import parse
from tests.route_backends import open_backend

MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def test_docstring_examples() -> None:
    result = doctest.testmod(loadsignal, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


# -- parsers -------------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@given(
    model=st.text(min_size=1, max_size=30),
    running=st.integers(0, 10_000),
    waiting=st.integers(0, 10_000),
)
def test_parser_reads_what_the_reference_parser_reads(
    model: str, running: int, waiting: int
) -> None:
    """Any model name (quotes, backslashes, newlines escaped as the format says) and any
    counts: the same samples as prometheus_client's parser, and the same queue."""
    text = (
        "# HELP vllm:num_requests_running Running.\n"
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="{_escape(model)}"}} {running}.0\n'
        "# HELP vllm:num_requests_waiting Waiting.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="{_escape(model)}",engine="0"}} {waiting}.0\n'
    )
    reference = [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]
    ours = [(s.name, dict(s.labels), s.value) for s in parse_prometheus(text)]
    assert ours == reference
    assert queues_from_metrics(text, METRIC_NAMES["vllm"]) == {model: ServerQueue(running, waiting)}


def test_the_doubles_metrics_parse_like_the_strict_reader() -> None:
    """Every sample of the doubles' real /metrics pages, histograms included."""
    with FakeVLLM() as vllm, FakeLlamaServer(metrics=True) as llama:
        for url in (vllm.url, llama.url):
            text = httpx.get(url + "/metrics").text
            strict = sorted(
                (name, tuple(sorted(labels.items())), value)
                for family in parse(text).values()
                for name, labels, value in family.samples
            )
            ours = sorted(
                (s.name, tuple(sorted(s.labels.items())), s.value) for s in parse_prometheus(text)
            )
            assert ours == strict


def test_odd_lines_are_skipped_not_fatal() -> None:
    text = (
        'vllm:num_requests_running{model_name="m"} 2 1700000000000\n'  # with a timestamp
        "vllm:num_requests_running{model_name=unquoted} 9\n"
        'vllm:num_requests_running{model_name="m"} not-a-number\n'
        "}{ nonsense\n"
        "\n"
        'vllm:num_requests_waiting{model_name="m"} 5\n'
    )
    assert queues_from_metrics(text, METRIC_NAMES["vllm"]) == {"m": ServerQueue(2, 5)}


@pytest.mark.parametrize("value", ["NaN", "-1", "+Inf"])
def test_a_count_that_is_not_a_count_gives_no_reading(value: str) -> None:
    text = f"llamacpp:requests_processing {value}\nllamacpp:requests_deferred 1\n"
    assert queues_from_metrics(text, METRIC_NAMES["llamacpp"]) == {}


def test_engines_of_a_model_add_up_and_models_stay_apart() -> None:
    text = (
        'vllm:num_requests_running{engine="0",model_name="a"} 1\n'
        'vllm:num_requests_running{engine="1",model_name="a"} 2\n'
        'vllm:num_requests_waiting{engine="0",model_name="a"} 0\n'
        'vllm:num_requests_waiting{engine="1",model_name="a"} 4\n'
        'vllm:num_requests_running{model_name="b"} 7\n'
        'vllm:num_requests_waiting{model_name="b"} 0\n'
    )
    assert queues_from_metrics(text, METRIC_NAMES["vllm"]) == {
        "a": ServerQueue(3, 4),
        "b": ServerQueue(7, 0),
    }


def test_sglang_names_are_read_per_model() -> None:
    text = 'sglang:num_running_reqs{model_name="m"} 3\nsglang:num_queue_reqs{model_name="m"} 8\n'
    assert queues_from_metrics(text, METRIC_NAMES["sglang"]) == {"m": ServerQueue(3, 8)}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([], ServerQueue(0, 0)),
        ([{"is_processing": True}, {"is_processing": True}], ServerQueue(2, 0)),
        ([{"is_processing": "yes"}], ServerQueue(0, 0)),
        ([1, 2], None),
        ("slots", None),
    ],
)
def test_queue_from_slots(payload: Any, expected: ServerQueue | None) -> None:
    assert queue_from_slots(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"total_slots": 3}, 3),
        ({"total_slots": 0}, None),
        ({"total_slots": True}, None),
        ([], None),
    ],
)
def test_total_slots(payload: Any, expected: int | None) -> None:
    assert total_slots(payload) == expected


# -- the sampler, on its own clock ---------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_sampler_reads_once_per_ttl() -> None:
    clock, calls = Clock(), []

    async def read() -> int:
        calls.append(clock.now)
        return len(calls)

    sampler = LoadSampler(read, ttl=0.25, timeout=1.0, route="r", clock=clock)
    assert [await sampler.get() for _ in range(5)] == [1] * 5
    clock.now += 0.24
    assert await sampler.get() == 1
    clock.now += 0.02
    assert await sampler.get() == 2
    assert calls == [100.0, pytest.approx(100.26)]
    assert sampler.scrapes == 2


@pytest.mark.anyio
async def test_sampler_single_flight_survives_a_caller_that_leaves() -> None:
    """20 callers while one scrape is in flight share it; a caller cancelled meanwhile
    does not cancel it for the others."""
    started, release = asyncio.Event(), asyncio.Event()

    async def read() -> str:
        started.set()
        await release.wait()
        return "reading"

    sampler = LoadSampler(read, ttl=0.25, timeout=10.0, route="r", clock=Clock())
    callers = [asyncio.ensure_future(sampler.get()) for _ in range(20)]
    await started.wait()
    callers[0].cancel()
    release.set()
    results = await asyncio.gather(*callers[1:])
    assert results == ["reading"] * 19
    assert sampler.scrapes == 1


@pytest.mark.anyio
async def test_sampler_failure_is_none_for_a_ttl_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, calls = Clock(), []

    async def read() -> int:
        calls.append(clock.now)
        if len(calls) < 3:
            raise SignalUnavailable("/metrics answered 500")
        return 7

    sampler = LoadSampler(read, ttl=1.0, timeout=1.0, route="vllm:box", clock=clock)
    with caplog.at_level(logging.DEBUG, logger="dsollama"):
        assert await sampler.get() is None
        assert await sampler.get() is None  # cached: no second attempt within the TTL
        clock.now += 1.0
        assert await sampler.get() is None
        clock.now += 1.0
        assert await sampler.get() == 7
    assert len(calls) == 3
    failures = [r for r in caplog.records if "could not read" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.INFO, logging.DEBUG]
    assert "vllm:box" in failures[0].getMessage()
    assert "/metrics answered 500" in failures[0].getMessage()


@pytest.mark.anyio
async def test_sampler_gives_up_on_a_slow_read_quickly() -> None:
    never = asyncio.Event()

    async def read() -> int:
        await never.wait()
        return 1

    sampler = LoadSampler(read, ttl=1.0, timeout=0.05, route="r", clock=Clock())
    started = time.perf_counter()
    assert await sampler.get() is None
    assert time.perf_counter() - started < 2.0


# -- server_queue against the doubles -------------------------------------------------------


def streamed(client: openai.OpenAI, question: str, model: str = MODEL) -> str:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(max_num_seqs=2, token_seconds=0) as fake:
        yield fake


def vllm_route(fake: FakeVLLM, **extra: Any) -> dict[str, Any]:
    # A generous timeout: the double answers at once, but the machine may be loaded.
    table = {"preset": "vllm", "base_url": fake.base_url, "models": [MODEL], "load_timeout": 5.0}
    return {**table, **extra}


async def wait_for_load(fake: Any, **counts: int) -> None:
    assert await anyio.to_thread.run_sync(lambda: fake.wait_for_load(**counts, timeout=10))


async def metrics_text(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(url + "/metrics")).text


@pytest.mark.anyio
async def test_server_queue_is_what_vllm_metrics_say_during_a_burst(vllm: FakeVLLM) -> None:
    """Two requests held in the batch, three waiting: server_queue says (2, 3), as
    /metrics does; a route that read the idle server within its TTL still says (0, 0)."""
    vllm.add_fault(Fault("stall_after", after_chunks=1, times=2))
    async with open_backend(vllm_route(vllm, load_ttl=60)) as early:
        assert await early.server_queue(MODEL) == ServerQueue(0, 0)
        with ThreadPoolExecutor(5) as pool, connect(vllm.base_url) as client:
            futures: list[Future[str]] = [pool.submit(streamed, client, f"q{i}") for i in range(2)]
            await wait_for_load(vllm, running=2, waiting=0)
            futures += [pool.submit(streamed, client, f"q{i}") for i in range(2, 5)]
            await wait_for_load(vllm, running=2, waiting=3)
            async with open_backend(vllm_route(vllm)) as backend:
                queue = await backend.server_queue(MODEL)
                assert await backend.server_queue("another-model") is None  # not its label
            cached = await early.server_queue(MODEL)
            metrics = parse(await metrics_text(vllm.url))
            vllm.release()
            for future in futures:
                future.result(timeout=10)
    assert queue == ServerQueue(
        running=int(metrics["vllm:num_requests_running"].value(model_name=MODEL)),
        waiting=int(metrics["vllm:num_requests_waiting"].value(model_name=MODEL)),
    )
    assert queue == ServerQueue(2, 3)
    assert cached == ServerQueue(0, 0)


@pytest.mark.anyio
async def test_ttl_means_one_scrape_for_many_calls(vllm: FakeVLLM) -> None:
    async with open_backend(vllm_route(vllm, load_ttl=60)) as backend:
        for _ in range(25):
            assert await backend.server_queue(MODEL) == ServerQueue(0, 0)
    assert len(vllm.recorded("/metrics")) == 1


@pytest.mark.anyio
async def test_concurrent_callers_share_one_scrape(vllm: FakeVLLM) -> None:
    """20 callers arrive while the first scrape is held at the server: one request
    reaches /metrics, and all 20 get its reading."""
    vllm.add_fault(Fault("stall_before", path="/metrics"))
    async with open_backend(vllm_route(vllm)) as backend:
        callers = [asyncio.ensure_future(backend.server_queue(MODEL)) for _ in range(20)]
        assert await anyio.to_thread.run_sync(vllm.faults.wait_for_stalled, 1)
        vllm.release()
        results = await asyncio.gather(*callers)
    assert results == [ServerQueue(0, 0)] * 20
    assert len(vllm.recorded("/metrics")) == 1


@pytest.mark.anyio
async def test_a_dead_metrics_endpoint_gives_none_quickly(vllm: FakeVLLM) -> None:
    async with open_backend(vllm_route(vllm, load_ttl=60)) as backend:
        vllm.refuse_connections()
        started = time.perf_counter()
        results = [await backend.server_queue(MODEL) for _ in range(10)]
        elapsed = time.perf_counter() - started
    assert results == [None] * 10
    assert elapsed < 2.0


@pytest.mark.anyio
async def test_a_stalled_metrics_endpoint_gives_none_after_the_timeout(vllm: FakeVLLM) -> None:
    vllm.add_fault(Fault("stall_before", path="/metrics"))
    try:
        async with open_backend(vllm_route(vllm, load_timeout=0.1)) as backend:
            started = time.perf_counter()
            assert await backend.server_queue(MODEL) is None
            assert time.perf_counter() - started < 2.0
    finally:
        vllm.release()


@pytest.mark.anyio
async def test_a_route_without_load_signal_never_scrapes(vllm: FakeVLLM) -> None:
    async with open_backend(vllm_route(vllm, load_signal="none")) as backend:
        assert await backend.server_queue(MODEL) is None
    assert vllm.recorded("/metrics") == []


@pytest.mark.anyio
async def test_metrics_error_status_gives_none(vllm: FakeVLLM) -> None:
    vllm.add_fault(Fault("status", status=500, path="/metrics"))
    async with open_backend(vllm_route(vllm)) as backend:
        assert await backend.server_queue(MODEL) is None


# -- llama-server ----------------------------------------------------------------------------


def llama_route(fake: FakeLlamaServer, **extra: Any) -> dict[str, Any]:
    table = {"preset": "llamacpp", "base_url": fake.base_url, "models": [fake.model_alias]}
    return {**table, "load_timeout": 5.0, **extra}


async def _llama_burst(fake: FakeLlamaServer) -> ServerQueue | None:
    """One request held in each of the 2 slots and 3 deferred; the reading meanwhile."""
    fake.add_fault(Fault("stall_after", after_chunks=1, times=2))
    with ThreadPoolExecutor(5) as pool, connect(fake.base_url) as client:
        futures = [pool.submit(streamed, client, f"q{i}", fake.model_alias) for i in range(2)]
        await wait_for_load(fake, running=2, waiting=0)
        futures += [pool.submit(streamed, client, f"q{i}", fake.model_alias) for i in range(2, 5)]
        await wait_for_load(fake, running=2, waiting=3)
        async with open_backend(llama_route(fake)) as backend:
            queue = await backend.server_queue(fake.model_alias)
        fake.release()
        for future in futures:
            future.result(timeout=10)
    return queue


@pytest.mark.anyio
async def test_llamacpp_metrics_give_processing_and_deferred() -> None:
    with FakeLlamaServer(metrics=True, parallel=2, token_seconds=0) as fake:
        assert await _llama_burst(fake) == ServerQueue(2, 3)
        assert fake.recorded("/slots") == []


@pytest.mark.anyio
async def test_llamacpp_without_metrics_reads_busy_slots(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """/metrics is off (501): busy slots come from /slots (deferred requests do not
    show there), and the log says so."""
    with FakeLlamaServer(metrics=False, parallel=2, token_seconds=0) as fake:
        with caplog.at_level(logging.INFO, logger="dsollama"):
            assert await _llama_burst(fake) == ServerQueue(2, 0)
        assert len(fake.recorded("/metrics")) == len(fake.recorded("/slots")) == 1
    assert any("/metrics is off" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_llamacpp_with_neither_endpoint_gives_none() -> None:
    with FakeLlamaServer(metrics=False, slots_endpoint=False) as fake:
        async with open_backend(llama_route(fake)) as backend:
            assert await backend.server_queue(fake.model_alias) is None


@pytest.mark.anyio
async def test_capacity_set_on_the_route_wins_over_props() -> None:
    with FakeLlamaServer(metrics=True, parallel=3) as fake:
        async with open_backend(llama_route(fake, capacity=8)) as backend:
            assert await backend.server_capacity() == 8
        assert fake.recorded("/props") == []
        async with open_backend(llama_route(fake)) as backend:
            assert await backend.server_capacity() == 3
            assert await backend.server_capacity() == 3
        assert len(fake.recorded("/props")) == 1


@pytest.mark.anyio
async def test_the_key_goes_to_the_routes_own_metrics_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """llama-server guards /metrics with its key: the route sends it there. A
    metrics_url on another origin is read without the key."""
    monkeypatch.setenv("LLAMA_KEY", "sk-local-secret")
    with (
        FakeLlamaServer(metrics=True, api_key="sk-local-secret") as fake,
        FakeVLLM() as elsewhere,
    ):
        async with open_backend(llama_route(fake, key_env="LLAMA_KEY")) as backend:
            assert await backend.server_queue(fake.model_alias) == ServerQueue(0, 0)
        [own] = fake.recorded("/metrics")
        assert own.headers["authorization"] == "Bearer sk-local-secret"
        table = llama_route(
            fake, key_env="LLAMA_KEY", load_signal="vllm", metrics_url=elsewhere.url + "/metrics"
        )
        async with open_backend(table) as backend:
            assert await backend.server_queue(fake.model_alias) is None  # vLLM names another model
        [foreign] = elsewhere.recorded("/metrics")
        assert "authorization" not in foreign.headers


def test_the_sglang_preset_marks_its_metric_names_unverified() -> None:
    from tests.route_backends import route

    config = route({"preset": "sglang"})
    assert config.load_signal == "sglang"
    assert config.unverified is not None
    assert "sglang:num_running_reqs" in config.unverified
