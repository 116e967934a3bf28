"""`dsollama serve` in operation: health, readiness, metrics, the /generate route, the
request log, cancellation on disconnect, graceful shutdown, and the command itself."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import httpx
import ollama
import pytest

from dsollama._types import CallRecord
from dsollama.testing import FakeDeepSeek, FakeOllama

from .conftest import Stack
from .serve_harness import MODEL, USER, http, ndjson, serving, wait_until

pytestmark = pytest.mark.anyio

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|\+Inf|NaN)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(name, labels): value}; every line must be well-formed."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("# HELP ") or not line:
            continue
        match = _SAMPLE.match(line)
        assert match, f"malformed metrics line: {line!r}"
        name, _, labels, value = match.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or base in types, f"sample without # TYPE: {line!r}"
        samples[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return samples


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Recorder:
    """A call sink that keeps every record (what the request log would get)."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, rec: CallRecord) -> None:
        self.records.append(rec)


async def test_healthz_and_readyz(stack: Stack) -> None:
    with serving(stack) as served:
        assert (await http("GET", f"{served.url}/healthz")).json()["status"] == "ok"
        ready = await http("GET", f"{served.url}/readyz")
        assert ready.status_code == 200
        routes = {r["kind"]: r for r in ready.json()["routes"]}
        assert routes["local"]["reachable"]
        assert routes["local"]["version"] == "0.33.0"
        assert routes["hosted"]["usable"]
        assert routes["hosted"]["probed"] is False
        stack.ollama.refuse_connections()
        degraded = await http("GET", f"{served.url}/readyz")
        assert degraded.status_code == 200  # the hosted route can still answer
        local = next(r for r in degraded.json()["routes"] if r["kind"] == "local")
        assert local["usable"] is False
        assert local["reachable"] is False
    with serving(stack, policy="local-only") as served:
        down = await http("GET", f"{served.url}/readyz")
        assert down.status_code == 503
        assert down.json()["ready"] is False
        assert (await http("GET", f"{served.url}/healthz")).status_code == 200  # alive all the same


async def test_healthz_names_the_process_and_readyz_the_in_process_store(stack: Stack) -> None:
    with serving(stack) as served:
        health = (await http("GET", f"{served.url}/healthz")).json()
        ready = (await http("GET", f"{served.url}/readyz")).json()
        samples = parse_metrics((await http("GET", f"{served.url}/metrics")).text)
    assert health["pid"] == os.getpid()  # the harness serves from this process
    assert ready["store"] == {
        "kind": "memory",
        "url": None,
        "ok": True,
        "using_fallback": False,
        "last_error": None,
        "latency_p50_s": None,
        "latency_p99_s": None,
        "fallbacks": 0,
    }
    assert metric(samples, "dsollama_state_store_up", kind="memory") == 1
    assert metric(samples, "dsollama_state_store_fallbacks_total", kind="memory") == 0
    # No operation measured, no latency sample (rather than a made-up zero).
    assert not any(name == "dsollama_state_store_latency_seconds" for name, _ in samples)


async def test_metrics_count_requests_fallbacks_latency_and_tokens(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        before = parse_metrics((await http("GET", f"{url}/metrics")).text)
        body = {"model": MODEL, "messages": USER, "stream": False}
        await http("POST", f"{url}/api/chat", json=body)
        await ndjson(f"{url}/api/chat", {**body, "stream": True})
        await http("GET", f"{url}/api/nope")
        stack.ollama.refuse_connections()
        await http("POST", f"{url}/v1/chat/completions", json={"model": MODEL, "messages": USER})
        response = await http("GET", f"{url}/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        after = parse_metrics(response.text)

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("dsollama_serve_requests_total", route="/api/chat", outcome="ok") == 2
    assert grew("dsollama_serve_requests_total", route="/v1/chat/completions", outcome="ok") == 1
    assert grew("dsollama_serve_requests_total", route="unmatched", outcome="client_error") == 1
    assert grew("dsollama_fallbacks_total", reason="local daemon unreachable") == 1
    assert grew("dsollama_calls_total", operation="chat", served="local", outcome="ok") == 2
    assert grew("dsollama_calls_total", operation="chat", served="hosted", outcome="ok") == 1
    assert grew("dsollama_tokens_total", direction="completion", served="local") > 0
    assert grew("dsollama_tokens_total", direction="prompt", served="hosted") > 0
    assert grew("dsollama_serve_request_duration_seconds_count", route="/api/chat") == 2
    assert grew("dsollama_serve_first_token_seconds_count", route="/api/chat", served="local") == 1
    assert grew("dsollama_call_first_token_seconds_count", served="local") == 2
    assert metric(after, "dsollama_hosted_cost_usd_total") > 0
    local_route = f"local:{stack.ollama.url.removeprefix('http://')}"
    assert metric(after, "dsollama_route_breaker_open", route=local_route) == 1
    buckets = [
        v
        for (name, labels), v in after.items()
        if name == "dsollama_serve_request_duration_seconds_bucket"
        and ("route", "/api/chat") in labels
    ]
    assert buckets == sorted(buckets)  # cumulative


async def test_generate_compat_route(stack: Stack) -> None:
    with serving(stack) as served:
        url = f"{served.url}/generate"
        answer = await http("POST", url, json={"input_text": "Why run DeepSeek locally?"})
        assert answer.status_code == 200
        data = answer.json()
        assert data["response"]
        assert data["model"] == MODEL
        assert data["served_by"]["kind"] == "local"
        assert "<think>" not in data["response"]
        assert answer.headers["x-dsollama-kind"] == "local"
        missing = await http("POST", url, json={"text": "hi"})
        assert missing.status_code == 400
        assert "input_text" in missing.json()["error"]
        stack.ollama.refuse_connections()
        fell_back = (await http("POST", url, json={"input_text": "hi"})).json()
        assert fell_back["response"]
        assert fell_back["served_by"]["kind"] == "hosted"
        assert fell_back["fallback_reason"] == "local daemon unreachable"


async def test_every_call_is_recorded_once_with_source_serve(stack: Stack) -> None:
    recorder = Recorder()
    with serving(stack, sinks=(recorder,)) as served:
        body = {"model": MODEL, "messages": USER}
        await http("POST", f"{served.url}/api/chat", json={**body, "stream": False})
        await http("POST", f"{served.url}/v1/chat/completions", json={**body, "stream": True})
        await http("POST", f"{served.url}/generate", json={"input_text": "hi"})
    assert [(r.operation, r.stream, r.source, r.ok) for r in recorder.records] == [
        ("chat", False, "serve", True),
        ("chat", True, "serve", True),
        ("generate", False, "serve", True),
    ]


def _slow_local(stack: Stack) -> None:
    # About six seconds per answer: any test that ends sooner stopped it early.
    stack.ollama.configure(tokens_per_second=5.0, answer_tokens=30, thinking_tokens=1)


def _raw_request(url: str, body: dict[str, Any]) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST /api/chat HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    sock.sendall(head.encode() + payload)
    return sock


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_client_that_disconnects_cancels_the_local_call(stack: Stack, stream: bool) -> None:
    _slow_local(stack)
    recorder = Recorder()
    with serving(stack, sinks=(recorder,), total_timeout=20.0) as served:
        sock = _raw_request(served.url, {"model": MODEL, "messages": USER, "stream": stream})
        assert wait_until(lambda: stack.ollama.in_flight(MODEL) == 1)
        if stream:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the answer is flowing
        sock.close()
        assert wait_until(lambda: stack.ollama.in_flight(MODEL) == 0, timeout=3.0)
        assert wait_until(lambda: len(recorder.records) == 1)
    assert recorder.records[0].error_class == "Cancelled"
    assert stack.deepseek.requests == []  # cancelled, not failed over


async def test_a_client_that_disconnects_cancels_the_hosted_call(stack: Stack) -> None:
    stack.deepseek.configure(tokens_per_second=5.0, answer_tokens=30)
    with serving(stack, total_timeout=20.0) as served:
        sock = _raw_request(
            served.url, {"model": "deepseek-flash", "messages": USER, "stream": True}
        )
        assert stack.deepseek.wait_for_in_flight(1)
        sock.close()
        assert stack.deepseek.wait_for_in_flight(0, timeout=3.0)


async def test_shutdown_lets_a_stream_in_flight_finish(stack: Stack) -> None:
    stack.ollama.configure(tokens_per_second=30.0, answer_tokens=20, thinking_tokens=2)
    with serving(stack, grace=10) as served:
        host, port = served.url.removeprefix("http://").split(":")
        body = {"model": MODEL, "messages": USER}
        async with (
            httpx.AsyncClient(timeout=10) as client,
            client.stream("POST", f"{served.url}/api/chat", json=body) as response,
        ):
            lines = response.aiter_lines()
            first = json.loads(await anext(lines))
            served.server.should_exit = True

            def refused() -> bool:
                try:
                    socket.create_connection((host, int(port)), timeout=0.5).close()
                except OSError:
                    return True
                return False

            assert await asyncio.to_thread(wait_until, refused)  # no new connections now
            rest = [json.loads(line) async for line in lines]
        assert first["done"] is False
        assert rest[-1]["done"] is True
        assert rest[-1]["served_by"]["kind"] == "local"
        served.thread.join(10)
        assert not served.thread.is_alive()


async def test_past_the_grace_period_a_stream_ends_with_an_error_not_silence(
    stack: Stack,
) -> None:
    _slow_local(stack)
    with serving(stack, grace=1, total_timeout=20.0) as served:
        parts: list[Any] = []
        with ollama.Client(host=served.url) as client:
            stream = client.chat(MODEL, messages=USER, stream=True)
            parts.append(next(stream))
            stopper = threading.Thread(target=served.stop)
            stopper.start()
            with pytest.raises(ollama.ResponseError) as caught:
                parts.extend(stream)
            stopper.join()
        assert "shutting down" in caught.value.error
        assert not any(p.done for p in parts)
        assert wait_until(lambda: stack.ollama.in_flight(MODEL) == 0)


def test_the_command_serves_until_sigterm_then_exits_cleanly() -> None:
    with FakeOllama(models=[MODEL]) as local, FakeDeepSeek() as hosted:
        _run_and_terminate(local, hosted)


def _run_and_terminate(local: FakeOllama, hosted: FakeDeepSeek) -> None:
    env = {
        **os.environ,
        "OLLAMA_HOST": local.url,
        "DEEPSEEK_BASE_URL": hosted.url,
        "DEEPSEEK_API_KEY": hosted.api_key,
        "DSOLLAMA_LOG": "off",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dsollama", "serve", "--port", "0", "--grace", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with ollama.Client(host=url) as client:
            assert client.chat(MODEL, messages=USER).message.content
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "dsollama serve stopped." in err
    assert f"chat {MODEL} -> local" in err  # the one line per call
