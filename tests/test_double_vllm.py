"""FakeVLLM: vLLM's OpenAI-compatible server, proven with the official openai client.

Continuous batching (K running, the rest waiting in FIFO order, both in /metrics), vLLM's
error shapes, reasoning with and without the parser, the shared fault vocabulary, and the
process mode. Requests are held in their slots by releasable faults, so bursts are
observed in a known state instead of after a sleep.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from dsollama.testing import FakeVLLM, Fault
from dsollama.testing._text import answer_tokens, thinking_tokens
from tests.openai_clients import connect, connect_async, extra, loopback_http
from tests.prometheus_text import parse

QUESTION = "why is the sky blue"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
ANSWER = "".join(answer_tokens(QUESTION, 12))
THOUGHT = "".join(thinking_tokens(QUESTION, 8))
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


def canonical(question: str) -> str:
    return "".join(answer_tokens(question, 12))


@pytest.fixture(scope="module", name="http")
def http_fixture() -> Iterator[httpx.Client]:
    with loopback_http() as client:
        yield client


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    with FakeVLLM(reasoning_parser=True, token_seconds=0) as double:
        yield double


@pytest.fixture
def client(fake: FakeVLLM) -> Iterator[openai.OpenAI]:
    with connect(fake.base_url) as c:
        yield c


def streamed(client: openai.OpenAI, question: str = QUESTION, **kwargs: Any) -> str:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], stream=True, **kwargs
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def metrics(fake: FakeVLLM) -> dict[str, Any]:
    response = httpx.get(fake.url + "/metrics", verify=False)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


# -- answers --------------------------------------------------------------------------------


def test_chat_answer_with_reasoning_parser(client: openai.OpenAI) -> None:
    """A whole chat.completion: the canonical answer, the thought in reasoning_content."""
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    message = answer.choices[0].message
    assert message.content == ANSWER
    assert extra(message, "reasoning_content") == THOUGHT
    assert answer.id.startswith("chatcmpl-")
    assert len(answer.id) == len("chatcmpl-") + 32
    assert answer.object == "chat.completion"
    assert answer.model == MODEL
    assert answer.choices[0].finish_reason == "stop"
    assert extra(answer.choices[0], "stop_reason") is None
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 20
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 20


def test_stream_bytes_are_vllms(http: httpx.Client, fake: FakeVLLM) -> None:
    """SSE framing, exclude_unset deltas, the usage-only chunk and [DONE]."""
    body = {
        "model": MODEL,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", fake.base_url + "/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": THOUGHT.split(" ")[0]}
    assert "usage" not in chunks[1]
    finish = chunks[-2]["choices"][0]
    assert (finish["finish_reason"], finish["stop_reason"]) == ("stop", None)
    assert chunks[-1]["choices"] == []
    assert list(chunks[-1]["usage"]) == ["prompt_tokens", "total_tokens", "completion_tokens"]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:-2]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == THOUGHT
    assert "".join(d.get("content", "") for d in deltas) == ANSWER


def test_streaming_through_the_client_with_usage(client: openai.OpenAI) -> None:
    """The client reads reasoning deltas before content deltas, then the usage chunk."""
    stream = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    reasoning = "".join(extra(c.choices[0].delta, "reasoning_content") or "" for c in chunks[:-1])
    content = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert (reasoning, content) == (THOUGHT, ANSWER)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 20


@pytest.mark.anyio
async def test_async_client_streaming_and_not(fake: FakeVLLM) -> None:
    async with connect_async(fake.base_url) as c:
        whole = await c.chat.completions.create(model=MODEL, messages=MESSAGES)
        stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        content = ""
        async for chunk in stream:
            content += chunk.choices[0].delta.content or ""
    assert whole.choices[0].message.content == content == ANSWER


def test_without_reasoning_parser_the_thought_is_inline() -> None:
    """No --reasoning-parser: <think>…</think> in the content, reasoning_content null."""
    with FakeVLLM(token_seconds=0) as fake:
        with connect(fake.base_url) as c:
            message = c.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message
            assert streamed(c) == message.content
    assert message.content == f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}"
    assert extra(message, "reasoning_content") is None


def test_newer_reasoning_field_name() -> None:
    with FakeVLLM(token_seconds=0, reasoning_parser=True, reasoning_field="reasoning") as fake:
        with connect(fake.base_url) as c:
            message = c.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message
    assert extra(message, "reasoning") == THOUGHT
    assert "reasoning_content" not in (message.model_extra or {})


def test_max_tokens_can_end_inside_the_thought(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=3)
    choice = answer.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content is None
    assert extra(choice.message, "reasoning_content") == "".join(thinking_tokens(QUESTION, 8)[:3])


def test_completions_endpoint(client: openai.OpenAI) -> None:
    """Legacy completions, whole and streamed: text_completion objects, cmpl- ids."""
    whole = client.completions.create(model=MODEL, prompt="def add(a, b):")
    assert whole.object == "text_completion"
    assert whole.id.startswith("cmpl-")
    assert whole.choices[0].text == canonical("def add(a, b):")
    stream = client.completions.create(model=MODEL, prompt="def add(a, b):", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == whole.choices[0].text


def test_models_health_version(http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert models.data[0].owned_by == "vllm"
    assert extra(models.data[0], "max_model_len") == 16384
    health = http.get(fake.url + "/health")
    assert (health.status_code, health.content) == (200, b"")
    assert http.get(fake.url + "/version").json() == {"version": "0.11.0"}


def test_several_served_names_echo_the_one_asked() -> None:
    with FakeVLLM(served_model_names=["r1-distill", "deepseek"], token_seconds=0) as fake:
        with connect(fake.base_url) as c:
            assert c.chat.completions.create(model="deepseek", messages=MESSAGES).model == (
                "deepseek"
            )
        assert fake.model == "r1-distill"  # the metrics label


# -- continuous batching ------------------------------------------------------------------


def test_burst_shows_k_running_and_the_rest_waiting_in_metrics() -> None:
    """max_num_seqs=2: two requests generate (held in their slots by a stall), three wait;
    /metrics says so while it happens, and all five answers are whole once released."""
    with (
        ThreadPoolExecutor(5) as pool,
        FakeVLLM(max_num_seqs=2, reasoning_parser=True, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1, times=2))
        futures = [pool.submit(streamed, c, f"question {i}") for i in range(2)]
        assert fake.wait_for_load(running=2, waiting=0)
        futures += [pool.submit(streamed, c, f"question {i}") for i in range(2, 5)]
        assert fake.wait_for_load(running=2, waiting=3)
        during = metrics(fake)
        assert during["vllm:num_requests_running"].value(model_name=MODEL) == 2
        assert during["vllm:num_requests_waiting"].value(model_name=MODEL) == 3
        assert 0 < during["vllm:kv_cache_usage_perc"].value(model_name=MODEL) < 1
        assert during["vllm:e2e_request_latency_seconds"].value("_count") == 0
        fake.release()
        answers = [f.result(timeout=10) for f in futures]
        assert fake.wait_for_load(running=0, waiting=0)
        after = metrics(fake)
    assert answers == [canonical(f"question {i}") for i in range(5)]
    assert after["vllm:num_requests_waiting"].value(model_name=MODEL) == 0
    assert after["vllm:request_success_total"].value(finished_reason="stop") == 5
    assert after["vllm:time_to_first_token_seconds"].value("_count") == 5
    assert after["vllm:e2e_request_latency_seconds"].value("_count") == 5
    assert after["vllm:generation_tokens_total"].value() == 5 * 20


def test_waiting_requests_start_in_arrival_order() -> None:
    """One slot, held; three requests arrive one after another and wait; once released
    they take the slot oldest first."""
    with (
        ThreadPoolExecutor(4) as pool,
        FakeVLLM(max_num_seqs=1, token_seconds=0) as fake,
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


def test_stream_headers_go_out_while_the_request_waits(http: httpx.Client) -> None:
    """vLLM answers 200 and text/event-stream at once; the data follows the slot."""
    with ThreadPoolExecutor(1) as pool, FakeVLLM(max_num_seqs=1, token_seconds=0) as fake:
        fake.add_fault(Fault("stall_after", after_chunks=1))
        with connect(fake.base_url) as c:
            holder = pool.submit(streamed, c, "first")
            assert fake.wait_for_load(running=1)
            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            with http.stream("POST", fake.base_url + "/chat/completions", json=body) as response:
                assert response.status_code == 200  # while the only slot is held
                assert fake.wait_for_load(running=1, waiting=1)
                fake.release()
                text = response.read().decode()
            holder.result(timeout=10)
    assert text.endswith("data: [DONE]\n\n")


def test_a_client_that_leaves_gives_up_its_place(http: httpx.Client) -> None:
    with ThreadPoolExecutor(1) as pool, FakeVLLM(max_num_seqs=1, token_seconds=0) as fake:
        fake.add_fault(Fault("stall_after", after_chunks=1))
        with connect(fake.base_url) as c:
            holder = pool.submit(streamed, c, "first")
            assert fake.wait_for_load(running=1)
            body = {"model": MODEL, "messages": MESSAGES, "stream": True}
            with http.stream("POST", fake.base_url + "/chat/completions", json=body):
                assert fake.wait_for_load(waiting=1)
            assert fake.wait_for_load(running=1, waiting=0)
            fake.release()
            holder.result(timeout=10)


def test_more_seqs_let_waiting_requests_in_at_once(http: httpx.Client) -> None:
    with (
        ThreadPoolExecutor(2) as pool,
        FakeVLLM(max_num_seqs=1, reasoning_parser=True, token_seconds=0) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1, times=2))
        futures = [pool.submit(streamed, c, "a")]
        assert fake.wait_for_load(running=1)
        futures.append(pool.submit(streamed, c, "b"))
        assert fake.wait_for_load(running=1, waiting=1)
        response = http.post(fake.url + "/_dsollama/config", json={"max_num_seqs": 2})
        assert response.json()["max_num_seqs"] == 2
        assert fake.wait_for_load(running=2, waiting=0)
        fake.release()
        assert [f.result(timeout=10) for f in futures] == [canonical("a"), canonical("b")]


def test_kv_cache_space_limits_the_batch_too() -> None:
    """With room for 4 sequences but not for two requests' tokens, the second waits."""
    long_question = "tell me " * 60  # ~124 prompt tokens; with the answer ~144 of 200
    settings: dict[str, Any] = {"max_model_len": 200, "kv_cache_tokens": 200}
    with (
        ThreadPoolExecutor(2) as pool,
        FakeVLLM(max_num_seqs=4, reasoning_parser=True, token_seconds=0, **settings) as fake,
        connect(fake.base_url) as c,
    ):
        fake.add_fault(Fault("stall_after", after_chunks=1))
        futures = [pool.submit(streamed, c, long_question)]
        assert fake.wait_for_load(running=1)
        futures.append(pool.submit(streamed, c, long_question))
        assert fake.wait_for_load(running=1, waiting=1)
        usage = metrics(fake)["vllm:kv_cache_usage_perc"].value(model_name=MODEL)
        assert 0.5 < usage < 1
        fake.release()
        assert [f.result(timeout=10) for f in futures] == [canonical(long_question)] * 2
    with pytest.raises(ValueError, match="kv_cache_tokens"):
        FakeVLLM(max_model_len=1000, kv_cache_tokens=999)


def test_metrics_are_standard_prometheus_text(
    http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI
) -> None:
    """A standard parser reads the same families (skipped without prometheus_client)."""
    parser = pytest.importorskip("prometheus_client.parser")
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    text = http.get(fake.url + "/metrics").text
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["vllm:num_requests_running"].type == "gauge"
    ttft = families["vllm:time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    count = [s for s in ttft.samples if s.name.endswith("_count")]
    assert [s.value for s in count] == [1.0]
    assert count[0].labels["model_name"] == MODEL


# -- errors ---------------------------------------------------------------------------------


def test_prompt_over_the_context_is_vllms_400(client: openai.OpenAI) -> None:
    """The message vLLM sends, with the deterministic token estimate (4 characters a
    token, 4 per message)."""
    question = "x" * 400  # 100 tokens + 4
    with FakeVLLM(max_model_len=120, token_seconds=0) as small:
        with connect(small.base_url) as c:
            with pytest.raises(openai.BadRequestError) as caught:
                c.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=50
                )
            with pytest.raises(openai.BadRequestError) as without_max:
                c.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": question * 2}]
                )
            assert small.requests[0].json["max_tokens"] == 50
            assert small.generations() == []
    assert caught.value.body == {
        "object": "error",
        "message": "This model's maximum context length is 120 tokens. However, you requested "
        "154 tokens (104 in the messages, 50 in the completion). Please reduce the length of "
        "the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    assert isinstance(without_max.value.body, dict)
    assert without_max.value.body["message"] == (
        "This model's maximum context length is 120 tokens. However, you requested 204 tokens "
        "in the messages, Please reduce the length of the messages."
    )


def test_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="deepseek-r1", messages=MESSAGES)
    assert caught.value.body == {
        "object": "error",
        "message": "The model `deepseek-r1` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


def test_api_key_guards_v1_only(http: httpx.Client) -> None:
    """--api-key: a wrong or missing key on /v1 is the middleware's 401; /health and
    /metrics stay open."""
    with FakeVLLM(api_key="sk-vllm", token_seconds=0) as fake:
        with connect(fake.base_url, api_key="sk-wrong") as c:
            with pytest.raises(openai.AuthenticationError) as caught:
                c.chat.completions.create(model=MODEL, messages=MESSAGES)
            assert caught.value.response.json() == {"error": "Unauthorized"}
            good = c.with_options(api_key="sk-vllm")
            assert good.chat.completions.create(model=MODEL, messages=MESSAGES).choices
        assert http.get(fake.base_url + "/models").status_code == 401
        assert http.get(fake.base_url + "/nowhere").status_code == 401  # before routing
        assert http.get(fake.url + "/health").status_code == 200
        assert http.get(fake.url + "/metrics").status_code == 200


def test_newer_wrapped_error_shape(http: httpx.Client) -> None:
    with FakeVLLM(error_wrapped=True) as fake:
        response = http.post(
            fake.base_url + "/chat/completions", json={"model": "nope", "messages": MESSAGES}
        )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "The model `nope` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        }
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "f"}}]}, '"auto" tool choice requires'),
        ({"messages": MESSAGES, "stream_options": {"include_usage": True}}, "Stream options can only be defined when `stream=True`."),
        ({"messages": MESSAGES, "max_tokens": 0}, "max_tokens must be at least 1"),
        ({"messages": []}, "messages"),
        ({"messages": MESSAGES, "continue_final_message": True, "add_generation_prompt": True}, "Cannot set both"),
    ],
)  # fmt: skip
def test_bad_requests_are_400_in_vllms_shape(
    http: httpx.Client, fake: FakeVLLM, body: dict[str, Any], message: str
) -> None:
    response = http.post(fake.base_url + "/chat/completions", json={"model": MODEL, **body})
    assert response.status_code == 400
    error = response.json()
    assert (error["object"], error["type"], error["code"]) == ("error", "BadRequestError", 400)
    assert message in error["message"]


def test_unknown_routes_are_fastapis(http: httpx.Client, fake: FakeVLLM) -> None:
    assert http.get(fake.url + "/v1/nothing").json() == {"detail": "Not Found"}
    response = http.get(fake.base_url + "/chat/completions")
    assert (response.status_code, response.json()) == (405, {"detail": "Method Not Allowed"})


# -- faults ---------------------------------------------------------------------------------


def test_status_fault_in_vllms_shape(fake: FakeVLLM, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("status", status=503))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.body == {
        "object": "error",
        "message": "Service Unavailable",
        "type": "ServiceUnavailableError",
        "param": None,
        "code": 503,
    }


def test_error_line_mid_stream_then_done(
    http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI
) -> None:
    """vLLM sends an engine error as a data event, then [DONE]; the client raises."""
    fake.add_fault(Fault("error_line", after_chunks=3, message="engine died"))
    with pytest.raises(openai.APIError, match="engine died"):
        streamed(client)
    fake.add_fault(Fault("error_line", after_chunks=3, message="engine died"))
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    raw = http.post(fake.base_url + "/chat/completions", json=body).text
    events = raw.split("\n\n")
    assert json.loads(events[3][len("data: ") :])["error"]["message"] == "engine died"
    assert events[4:] == ["data: [DONE]", ""]


def test_error_line_on_a_whole_answer_is_a_500(fake: FakeVLLM, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("error_line", message="engine died"))
    with pytest.raises(openai.InternalServerError, match="engine died"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)


@pytest.mark.parametrize("kind", ["drop", "reset"])
def test_cut_connections_are_connection_errors(
    fake: FakeVLLM, client: openai.OpenAI, kind: str
) -> None:
    fake.add_fault(Fault(kind, after_chunks=3))  # type: ignore[arg-type]
    with pytest.raises(openai.APIConnectionError):
        streamed(client)


def test_close_without_done_then_continue_final_message(
    fake: FakeVLLM, client: openai.OpenAI
) -> None:
    """A stream cut after 5 answer tokens, continued with continue_final_message, makes
    exactly the uninterrupted answer."""
    fake.add_fault(Fault("close_without_done", after_chunks=1 + 8 + 5))
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert all(c.choices[0].finish_reason is None for c in chunks)
    got = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert got == "".join(answer_tokens(QUESTION, 12)[:5])
    rest = client.chat.completions.create(
        model=MODEL,
        messages=[*MESSAGES, {"role": "assistant", "content": got}],
        extra_body={"continue_final_message": True, "add_generation_prompt": False},
    )
    assert got + (rest.choices[0].message.content or "") == ANSWER


def test_finish_reason_fault_cuts_the_answer(fake: FakeVLLM, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("finish_reason", after_chunks=1 + 8 + 2))
    answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.content == "".join(answer_tokens(QUESTION, 12)[:2])


def test_stall_before_holds_outside_the_batch(fake: FakeVLLM, client: openai.OpenAI) -> None:
    """stall_before holds the request before the status line: not running, not waiting."""
    fake.add_fault(Fault("stall_before"))
    with ThreadPoolExecutor(1) as pool:
        call: Future[str] = pool.submit(streamed, client)
        try:
            assert fake.faults.wait_for_stalled(1)
            assert (fake.running(), fake.waiting()) == (0, 0)
        finally:
            fake.release()
        assert call.result(timeout=10) == ANSWER


def test_slow_first_token_sends_headers_then_waits(http: httpx.Client, fake: FakeVLLM) -> None:
    fake.add_fault(Fault("slow_first_token"))
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    with http.stream("POST", fake.base_url + "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert fake.faults.wait_for_stalled(1)
        fake.release()
        assert response.read().decode().endswith("data: [DONE]\n\n")


def test_malformed_and_blank_lines(fake: FakeVLLM, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("blank_line", after_chunks=2))
    assert streamed(client) == ANSWER  # an empty line is no event
    fake.add_fault(Fault("malformed_line", after_chunks=2))
    with pytest.raises(json.JSONDecodeError):
        streamed(client)


def test_refuse_and_accept(http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI) -> None:
    fake.add_fault(Fault("refuse"))
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    with pytest.raises(httpx.ConnectError):
        http.get(fake.url + "/health")
    fake.accept_connections()
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices


def test_monitoring_routes_take_only_faults_naming_them(
    http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI
) -> None:
    """Polling /metrics and /health leaves path-less faults to the requests under test;
    a fault that names /metrics reaches it."""
    fake.add_fault(Fault("status", status=500))
    assert http.get(fake.url + "/metrics").status_code == 200
    assert http.get(fake.url + "/health").status_code == 200
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    fake.add_fault(Fault("status", status=503, path="/metrics"))
    assert http.get(fake.url + "/metrics").status_code == 503
    assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices


def test_deepseek_only_faults_are_refused(fake: FakeVLLM) -> None:
    with pytest.raises(ValueError, match="DeepSeek"):
        fake.add_fault(Fault("keepalive"))


def test_requests_are_recorded(http: httpx.Client, fake: FakeVLLM, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    http.get(fake.url + "/_dsollama/config")
    recorded = fake.recorded("/v1/chat/completions")
    assert [r.json["messages"] for r in recorded] == [MESSAGES]
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"]


# -- process mode ---------------------------------------------------------------------------


def test_process_mode_starts_and_answers(http: httpx.Client) -> None:
    command = [sys.executable, "-m", "dsollama.testing", "vllm", "--port", "0"]
    options = ["--max-num-seqs", "4", "--api-key", "sk-proc", "--reasoning-parser", "deepseek_r1"]
    with subprocess.Popen([*command, *options], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            with connect(url + "/v1", api_key="sk-proc") as c:
                message = c.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0]
            assert message.message.content == ANSWER
            assert extra(message.message, "reasoning_content") == THOUGHT
            config = http.get(url + "/_dsollama/config").json()
            assert config["max_num_seqs"] == 4
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()
