"""FakeLlamaServer: llama.cpp's llama-server, proven with the official openai client.

Fixed slots with deferred requests (visible in /slots and /metrics, FIFO, silent until
their first token), llama-server's shapes (sorted keys, timings, its error objects),
loading, the monitoring routes, the shared faults, continuation across doubles, and the
process mode.
"""

from __future__ import annotations

import json
import math
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from dsollama.testing import FakeDeepSeek, FakeLlamaServer, FakeVLLM, Fault
from dsollama.testing._text import answer_tokens, thinking_tokens
from tests.openai_clients import connect, connect_async, extra, loopback_http
from tests.prometheus_text import parse

QUESTION = "why is the sky blue"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
ANSWER = "".join(answer_tokens(QUESTION, 12))
THOUGHT = "".join(thinking_tokens(QUESTION, 8))
ALIAS = "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M"


def canonical(question: str) -> str:
    return "".join(answer_tokens(question, 12))


@pytest.fixture(scope="module", name="http")
def http_fixture() -> Iterator[httpx.Client]:
    with loopback_http() as client:
        yield client


@pytest.fixture
def fake() -> Iterator[FakeLlamaServer]:
    with FakeLlamaServer(metrics=True, token_seconds=0) as double:
        yield double


@pytest.fixture
def client(fake: FakeLlamaServer) -> Iterator[openai.OpenAI]:
    with connect(fake.base_url) as c:
        yield c


def streamed(client: openai.OpenAI, question: str = QUESTION) -> str:
    stream = client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": question}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def metrics(http: httpx.Client, fake: FakeLlamaServer) -> dict[str, Any]:
    return parse(http.get(fake.url + "/metrics").text)


# -- answers --------------------------------------------------------------------------------


def test_chat_answer_with_reasoning_content(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="my-model", messages=MESSAGES)
    message = answer.choices[0].message
    assert (message.content, extra(message, "reasoning_content")) == (ANSWER, THOUGHT)
    assert answer.model == "my-model"  # echoed, whatever the server loaded
    assert answer.system_fingerprint == "b6700-3df2244d"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 20
    timings = extra(answer, "timings")
    assert timings["predicted_n"] == 20
    assert timings["prompt_n"] == answer.usage.prompt_tokens


def test_bodies_have_sorted_keys_and_llamas_headers(
    fake: FakeLlamaServer, http: httpx.Client
) -> None:
    """nlohmann::json keeps object keys sorted; the model defaults to gpt-3.5-turbo."""
    response = http.post(fake.base_url + "/chat/completions", json={"messages": MESSAGES})
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.headers["server"] == "llama.cpp"
    body = response.json()
    assert list(body) == sorted(body)
    assert list(body["choices"][0]["message"]) == ["content", "reasoning_content", "role"]
    assert body["model"] == "gpt-3.5-turbo"


def test_stream_bytes_are_llama_servers(fake: FakeLlamaServer, http: httpx.Client) -> None:
    body = {
        "model": ALIAS,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", fake.base_url + "/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"] == {"content": None, "role": "assistant"}
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == THOUGHT
    assert "".join(d.get("content", "") for d in deltas) == ANSWER
    assert chunks[-2]["choices"][0] == {"delta": {}, "finish_reason": "stop", "index": 0}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 20
    assert "timings" in chunks[-1]
    assert all("timings" not in c for c in chunks[:-1])


@pytest.mark.anyio
async def test_async_client_streaming_and_not(fake: FakeLlamaServer) -> None:
    async with connect_async(fake.base_url) as c:
        whole = await c.chat.completions.create(model=ALIAS, messages=MESSAGES)
        stream = await c.chat.completions.create(model=ALIAS, messages=MESSAGES, stream=True)
        reasoning, content = "", ""
        async for chunk in stream:
            reasoning += extra(chunk.choices[0].delta, "reasoning_content") or ""
            content += chunk.choices[0].delta.content or ""
    assert whole.choices[0].message.content == content == ANSWER
    assert reasoning == THOUGHT


def test_reasoning_format_none_keeps_the_thought_inline() -> None:
    with (
        FakeLlamaServer(reasoning_format="none", token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        message = c.chat.completions.create(model=ALIAS, messages=MESSAGES).choices[0].message
        assert streamed(c) == message.content
    assert message.content == f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}"
    assert extra(message, "reasoning_content") is None


def test_completions_endpoint(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=ALIAS, prompt="def add(a, b):")
    assert whole.object == "text_completion"
    assert whole.choices[0].text == canonical("def add(a, b):")
    stream = client.completions.create(model=ALIAS, prompt="def add(a, b):", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == whole.choices[0].text


def test_models_health_props(
    fake: FakeLlamaServer, client: openai.OpenAI, http: httpx.Client
) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [ALIAS]
    assert models.data[0].owned_by == "llamacpp"
    assert http.get(fake.url + "/health").json() == {"status": "ok"}
    props = http.get(fake.url + "/props").json()
    assert props["total_slots"] == 1
    assert props["model_alias"] == ALIAS
    assert props["default_generation_settings"]["n_ctx"] == 4096
    assert props["chat_template_caps"]["supports_tools"] is True


@pytest.mark.parametrize(("unified", "n_ctx"), [(False, 2048), (True, 8192)])
def test_slot_context_is_shared_unless_unified(
    http: httpx.Client, unified: bool, n_ctx: int
) -> None:
    with FakeLlamaServer(parallel=4, ctx_size=8192, kv_unified=unified) as fake:
        props = http.get(fake.url + "/props").json()
        slots = http.get(fake.url + "/slots").json()
    assert props["total_slots"] == 4
    assert props["default_generation_settings"]["n_ctx"] == n_ctx
    assert [(s["id"], s["n_ctx"], s["is_processing"]) for s in slots] == [
        (i, n_ctx, False) for i in range(4)
    ]


# -- slots and deferred requests ----------------------------------------------------------


def test_busy_slots_and_deferred_requests_in_slots_and_metrics(http: httpx.Client) -> None:
    """-np 2: two requests hold the slots (stalled), two are deferred; /slots and /metrics
    say so, fail_on_no_slot answers 503, and everything completes once released."""
    with (
        ThreadPoolExecutor(4) as pool,
        FakeLlamaServer(parallel=2, metrics=True, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1, times=2))
        futures = [pool.submit(streamed, c, f"question {i}") for i in range(2)]
        assert fake.wait_for_load(running=2, waiting=0)
        futures += [pool.submit(streamed, c, f"question {i}") for i in range(2, 4)]
        assert fake.wait_for_load(running=2, waiting=2)
        slots = http.get(fake.url + "/slots").json()
        assert [s["is_processing"] for s in slots] == [True, True]
        assert sorted(s["id_task"] for s in slots) == [0, 1]
        busy = http.get(fake.url + "/slots", params={"fail_on_no_slot": 1})
        assert busy.status_code == 503
        assert busy.json()["error"]["message"] == "no slot available"
        during = metrics(http, fake)
        assert during["llamacpp:requests_processing"].value() == 2
        assert during["llamacpp:requests_deferred"].value() == 2
        fake.release()
        answers = [f.result(timeout=10) for f in futures]
        assert fake.wait_for_load(running=0, waiting=0)
        after = metrics(http, fake)
        again = metrics(http, fake)
        slots = http.get(fake.url + "/slots").json()
    assert answers == [canonical(f"question {i}") for i in range(4)]
    assert after["llamacpp:requests_deferred"].value() == 0
    assert after["llamacpp:tokens_predicted_total"].value() == 4 * 20
    assert after["llamacpp:predicted_tokens_seconds"].value() > 0
    # The throughput gauges cover what happened since the previous read.
    assert again["llamacpp:predicted_tokens_seconds"].value() == 0
    assert again["llamacpp:tokens_predicted_total"].value() == 4 * 20
    # Slots keep their last task's tokens (prompt and answer) as a prompt cache.
    assert [(s["is_processing"], s["id_task"]) for s in slots] == [(False, -1)] * 2
    last_prompt = 4 + math.ceil(len("question 3") / 4)  # 4 characters a token, 4 a message
    assert after["llamacpp:kv_cache_tokens"].value() == 2 * (last_prompt + 20)
    assert after["llamacpp:kv_cache_usage_ratio"].value() == pytest.approx(
        2 * (last_prompt + 20) / 4096, rel=1e-5
    )


def test_deferred_requests_run_in_arrival_order() -> None:
    with (
        ThreadPoolExecutor(4) as pool,
        FakeLlamaServer(parallel=1, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1))
        futures = [pool.submit(streamed, c, "first")]
        assert fake.wait_for_load(running=1, waiting=0)
        for i in range(1, 4):
            futures.append(pool.submit(streamed, c, f"then {i}"))
            assert fake.wait_for_load(running=1, waiting=i)
        fake.release()
        for future in futures:
            future.result(timeout=10)
        started = [t.task for t in fake.generations()]
    assert started == [0, 1, 2, 3]


def _raw_chat(port: int) -> socket.socket:
    body = json.dumps({"model": ALIAS, "messages": MESSAGES, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def test_a_deferred_request_gets_no_bytes_until_its_first_token() -> None:
    """llama-server answers only once the task has its first result: while deferred, not
    even the status line (unlike vLLM, whose stream headers go out at once)."""
    with (
        ThreadPoolExecutor(1) as pool,
        FakeLlamaServer(parallel=1, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1))
        holder = pool.submit(streamed, c, "first")
        assert fake.wait_for_load(running=1)
        with _raw_chat(fake.port) as sock:
            assert fake.wait_for_load(running=1, waiting=1)
            readable, _, _ = select.select([sock], [], [], 0.05)
            assert readable == []
            fake.release()
            sock.settimeout(10)
            assert sock.recv(64).startswith(b"HTTP/1.1 200 OK\r\n")
        holder.result(timeout=10)


def test_a_client_that_leaves_gives_up_its_place() -> None:
    with (
        ThreadPoolExecutor(1) as pool,
        FakeLlamaServer(parallel=1, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1))
        holder = pool.submit(streamed, c, "first")
        assert fake.wait_for_load(running=1)
        with _raw_chat(fake.port):
            assert fake.wait_for_load(waiting=1)
        assert fake.wait_for_load(running=1, waiting=0)
        fake.release()
        holder.result(timeout=10)


# -- errors ---------------------------------------------------------------------------------


def _overflow_body(n_prompt: int, n_ctx: int) -> dict[str, Any]:
    return {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": n_prompt,
            "n_ctx": n_ctx,
        }
    }


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_over_the_slot_context_is_a_400(stream: bool) -> None:
    """Streaming too: the status is held until the first result, so the error is a 400."""
    question = "x" * 400  # 100 tokens + 4
    with (
        FakeLlamaServer(parallel=2, ctx_size=200, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        with pytest.raises(openai.BadRequestError) as caught:
            c.chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": question}], stream=stream
            )
        assert fake.running() == 0
    assert caught.value.response.json() == _overflow_body(104, 100)


def test_an_overflowing_request_waits_for_a_slot_before_its_400() -> None:
    """The context is checked in the slot: behind a busy slot, the error waits too."""
    with (
        ThreadPoolExecutor(2) as pool,
        FakeLlamaServer(parallel=1, ctx_size=50, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1))
        holder = pool.submit(streamed, c, "first")
        assert fake.wait_for_load(running=1)
        refused = pool.submit(streamed, c, "y" * 400)
        assert fake.wait_for_load(running=1, waiting=1)
        assert not refused.done()
        fake.release()
        with pytest.raises(openai.BadRequestError, match="exceeds the available context"):
            refused.result(timeout=10)
        holder.result(timeout=10)


def test_loading_answers_503_everywhere(http: httpx.Client) -> None:
    loading = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    with FakeLlamaServer(loading=True, token_seconds=0) as fake, connect(fake.base_url) as c:
        health = http.get(fake.url + "/health")
        assert (health.status_code, health.json()) == (503, loading)
        with pytest.raises(openai.InternalServerError) as caught:
            c.chat.completions.create(model=ALIAS, messages=MESSAGES)
        assert caught.value.status_code == 503
        fake.configure(loading=False)
        assert fake.wait_until_loaded()
        assert http.get(fake.url + "/health").json() == {"status": "ok"}
        assert c.chat.completions.create(model=ALIAS, messages=MESSAGES).choices


def test_load_seconds_then_ready(http: httpx.Client) -> None:
    with FakeLlamaServer(load_seconds=0.05) as fake:
        assert http.get(fake.url + "/health").status_code == 503
        assert fake.wait_until_loaded()
        assert http.get(fake.url + "/health").status_code == 200


def test_endpoints_that_are_off_answer_501(http: httpx.Client) -> None:
    with FakeLlamaServer(metrics=False, slots_endpoint=False) as fake:
        metrics_off = http.get(fake.url + "/metrics")
        slots_off = http.get(fake.url + "/slots")
    assert metrics_off.status_code == slots_off.status_code == 501
    assert metrics_off.json()["error"] == {
        "code": 501,
        "message": "This server does not support metrics endpoint. Start it with `--metrics`",
        "type": "not_supported_error",
    }
    assert slots_off.json()["error"]["type"] == "not_supported_error"


def test_api_key(http: httpx.Client) -> None:
    invalid = {"error": {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}}
    with FakeLlamaServer(api_key="sk-llama", token_seconds=0) as fake:
        with connect(fake.base_url, api_key="sk-wrong") as c:
            with pytest.raises(openai.AuthenticationError) as caught:
                c.chat.completions.create(model=ALIAS, messages=MESSAGES)
            assert caught.value.response.json() == invalid
            good = c.with_options(api_key="sk-llama")
            assert good.chat.completions.create(model=ALIAS, messages=MESSAGES).choices
        assert http.get(fake.url + "/props").status_code == 401
        assert http.get(fake.url + "/props", headers={"X-Api-Key": "sk-llama"}).status_code == 200
        assert http.get(fake.url + "/health").status_code == 200
        assert http.get(fake.base_url + "/models").status_code == 200


def test_unknown_routes_and_methods_are_404(fake: FakeLlamaServer, http: httpx.Client) -> None:
    not_found = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
    for response in (
        http.get(fake.url + "/nothing"),
        http.get(fake.base_url + "/chat/completions"),
    ):
        assert (response.status_code, response.json()) == (404, not_found)


# -- faults ---------------------------------------------------------------------------------


def test_status_fault_in_llamas_shape(fake: FakeLlamaServer, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("status", status=500, message="slot crashed"))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=ALIAS, messages=MESSAGES)
    assert caught.value.response.json() == {
        "error": {"code": 500, "message": "slot crashed", "type": "server_error"}
    }


def test_error_line_mid_stream(
    fake: FakeLlamaServer, client: openai.OpenAI, http: httpx.Client
) -> None:
    fake.add_fault(Fault("error_line", after_chunks=3, message="decode failed"))
    with pytest.raises(openai.APIError, match="decode failed"):
        streamed(client)
    fake.add_fault(Fault("error_line", after_chunks=3))
    body = {"model": ALIAS, "messages": MESSAGES, "stream": True}
    raw = http.post(fake.base_url + "/chat/completions", json=body).text
    assert "[DONE]" not in raw


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_cut_connections(fake: FakeLlamaServer, client: openai.OpenAI, kind: str) -> None:
    fake.add_fault(Fault(kind, after_chunks=4))  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError):
        streamed(client)


def test_slow_first_token_sends_headers_at_once(fake: FakeLlamaServer, http: httpx.Client) -> None:
    """The fault stands for a proxy in front: headers now, even though llama-server itself
    holds them."""
    fake.add_fault(Fault("slow_first_token"))
    body = {"model": ALIAS, "messages": MESSAGES, "stream": True}
    with http.stream("POST", fake.base_url + "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert fake.faults.wait_for_stalled(1)
        fake.release()
        assert response.read().decode().endswith("data: [DONE]\n\n")


def test_fault_naming_slots_reaches_it(fake: FakeLlamaServer, http: httpx.Client) -> None:
    fake.add_fault(Fault("status", status=500))
    assert http.get(fake.url + "/slots").status_code == 200  # left for a generation
    fake.add_fault(Fault("drop", path="/slots"))
    with pytest.raises(httpx.TransportError):
        http.get(fake.url + "/slots")
    assert len(fake.faults.pending()) == 1


# -- continuation across doubles ----------------------------------------------------------


def test_an_answer_cut_here_continues_on_any_double(
    fake: FakeLlamaServer, client: openai.OpenAI
) -> None:
    """Cut after 4 answer tokens on llama-server; continued by assistant prefill here, by
    continue_final_message on vLLM, and by prefix completion on DeepSeek, every answer is
    the uninterrupted one."""
    fake.add_fault(Fault("close_without_done", after_chunks=1 + 8 + 4))
    got = streamed(client)
    assert got == "".join(answer_tokens(QUESTION, 12)[:4])
    history = [*MESSAGES, {"role": "assistant", "content": got}]
    here = client.chat.completions.create(model=ALIAS, messages=history)
    with FakeVLLM(token_seconds=0) as vllm, connect(vllm.base_url) as c:
        there = c.chat.completions.create(
            model="deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            messages=history,
            extra_body={"continue_final_message": True, "add_generation_prompt": False},
        )
    with (
        FakeDeepSeek(tokens_per_second=0) as deepseek,
        connect(deepseek.beta_url, api_key=deepseek.api_key) as c,
    ):
        hosted = c.chat.completions.create(
            model="deepseek-flash", messages=[*MESSAGES, {**history[-1], "prefix": True}]
        )
    for answer in (here, there, hosted):
        assert got + (answer.choices[0].message.content or "") == ANSWER


# -- process mode ---------------------------------------------------------------------------


def test_process_mode_starts_and_answers(http: httpx.Client) -> None:
    command = [sys.executable, "-m", "dsollama.testing", "llamacpp", "--port", "0"]
    with subprocess.Popen(
        [*command, "-np", "2", "--metrics"], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with connect(url + "/v1") as c:
                answer = c.chat.completions.create(model=ALIAS, messages=MESSAGES)
            assert answer.choices[0].message.content == ANSWER
            assert http.get(url + "/props").json()["total_slots"] == 2
            assert "llamacpp:requests_deferred 0" in http.get(url + "/metrics").text
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
