"""FakeDeepSeek driven by the official openai client: proof that the double is faithful.

If openai-python accepts and parses what the double sends the way it does DeepSeek's
answers (keep-alive comments skipped, reasoning_content kept as an extra field, errors
raised as the right APIStatusError subclass with DeepSeek's envelope as the body), code
tested against the double behaves the same against the real service.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from dsollama.testing._faults import Fault
from dsollama.testing._text import answer_tokens, thinking_tokens
from dsollama.testing.deepseek import FakeDeepSeek

QUESTION = "why is the sky blue"
MESSAGES: list[Any] = [{"role": "user", "content": QUESTION}]
ANSWER = "".join(answer_tokens(QUESTION, 12))
THOUGHT = "".join(thinking_tokens(QUESTION, 8))
TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    with FakeDeepSeek(tokens_per_second=0) as double:
        yield double


@pytest.fixture
def client(fake: FakeDeepSeek) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0, timeout=10) as c:
        yield c


def extra(model: Any, name: str) -> Any:
    """A field the openai types do not declare (DeepSeek's extensions)."""
    return (model.model_extra or {}).get(name)


def test_reasoning_content_and_cache_usage_reach_the_client(client: openai.OpenAI) -> None:
    """Non-streaming: reasoning_content and the cache counts arrive as extra fields."""
    answer = client.chat.completions.create(model="deepseek-flash", messages=MESSAGES)
    message = answer.choices[0].message
    assert message.content == ANSWER
    assert extra(message, "reasoning_content") == THOUGHT
    assert answer.choices[0].finish_reason == "stop"
    assert answer.system_fingerprint is not None
    usage = answer.usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 8
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert extra(usage, "prompt_cache_miss_tokens") == usage.prompt_tokens


def test_streaming_through_keepalive_comments(fake: FakeDeepSeek, client: openai.OpenAI) -> None:
    """The client skips ': keep-alive' comments sent while queued, then reads
    reasoning_content deltas before content deltas, and usage on the finish chunk."""
    fake.add_fault(Fault("keepalive", seconds=0.03, interval=0.005))
    stream = client.chat.completions.create(model="deepseek-flash", messages=MESSAGES, stream=True)
    reasoning, content, order = "", "", []
    last = None
    for chunk in stream:
        delta = chunk.choices[0].delta
        piece = getattr(delta, "reasoning_content", None)
        if piece:
            reasoning += piece
            order.append("r")
        if delta.content:
            content += delta.content
            order.append("c")
        last = chunk
    assert fake.faults.pending() == []
    assert reasoning == THOUGHT
    assert content == ANSWER
    assert order == sorted(order, reverse=True)  # every "r" before any "c"
    assert last is not None
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + 20


@pytest.mark.anyio
async def test_async_client_streams_through_keepalive(fake: FakeDeepSeek) -> None:
    """Same with AsyncOpenAI: keep-alive filler, then reasoning and answer."""
    fake.add_fault(Fault("keepalive", seconds=0.02, interval=0.005))
    async with openai.AsyncOpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0) as c:
        stream = await c.chat.completions.create(
            model="deepseek-v4-pro", messages=MESSAGES, stream=True
        )
        reasoning, content = "", ""
        async for chunk in stream:
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
            content += chunk.choices[0].delta.content or ""
    assert (reasoning, content) == (THOUGHT, ANSWER)


def test_thinking_switched_off_through_extra_body(client: openai.OpenAI) -> None:
    """thinking: disabled (sent through extra_body, as with the real API): no reasoning."""
    answer = client.chat.completions.create(
        model="deepseek-flash",
        messages=MESSAGES,
        extra_body={"thinking": {"type": "disabled"}},
        reasoning_effort="low",
    )
    assert answer.choices[0].message.content == ANSWER
    assert extra(answer.choices[0].message, "reasoning_content") is None
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 12


def _raise_for(fake: FakeDeepSeek, client: openai.OpenAI, case: str) -> None:
    kwargs: dict[str, Any] = {"model": "deepseek-flash", "messages": MESSAGES}
    if case == "retired":
        kwargs["model"] = "deepseek-reasoner"
    elif case == "bad key":
        client = client.with_options(api_key="sk-not-mine-1234")
    elif case == "no balance":
        fake.balance_available = False
    elif case == "temperature":
        kwargs["temperature"] = 3
    elif case == "concurrency":
        fake.concurrency_limit = 0
    elif case in ("500", "503"):
        fake.add_fault(Fault("status", status=int(case)))
    client.chat.completions.create(**kwargs)


@pytest.mark.parametrize(
    ("case", "error", "status", "message"),
    [
        ("retired", openai.BadRequestError, 400, "Model Not Exist"),
        (
            "bad key",
            openai.AuthenticationError,
            401,
            "Authentication Fails, Your api key: ****1234 is invalid",
        ),
        ("no balance", openai.APIStatusError, 402, "Insufficient Balance"),
        ("temperature", openai.UnprocessableEntityError, 422, None),
        ("concurrency", openai.RateLimitError, 429, None),
        ("500", openai.InternalServerError, 500, "Server Error"),
        ("503", openai.InternalServerError, 503, "Server Overloaded"),
    ],
)
def test_statuses_become_the_clients_exceptions(
    fake: FakeDeepSeek,
    client: openai.OpenAI,
    case: str,
    error: type[openai.APIStatusError],
    status: int,
    message: str | None,
) -> None:
    """Each documented status raises its APIStatusError subclass, with DeepSeek's error
    envelope as the body (§3)."""
    with pytest.raises(error) as caught:
        _raise_for(fake, client, case)
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
    if message is not None:
        assert body["message"] == message
    assert caught.value.response.headers.get("retry-after") is None


@pytest.mark.parametrize("separate", [False, True])
def test_include_usage_in_both_placements(
    fake: FakeDeepSeek, client: openai.OpenAI, separate: bool
) -> None:
    """include_usage: the client finds usage on the finish chunk (wire) or on a trailing
    choices-less chunk (documented variant)."""
    fake.usage_on_separate_chunk = separate
    chunks = list(
        client.chat.completions.create(
            model="deepseek-flash",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1
    usage = with_usage[0].usage
    assert usage is not None
    assert usage.completion_tokens == 20
    if separate:
        assert chunks[-1].choices == []
        assert chunks[-2].choices[0].finish_reason == "stop"
    else:
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    """A tool call (arguments a JSON string), then the tool result with reasoning_content
    passed back, then a text answer."""
    first = client.chat.completions.create(model="deepseek-flash", messages=MESSAGES, tools=[TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_00_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    history: list[Any] = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": choice.message.content,
            "reasoning_content": extra(choice.message, "reasoning_content"),
            "tool_calls": [call.model_dump()],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model="deepseek-flash", messages=history, tools=[TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == ANSWER
    del history[1]["reasoning_content"]
    with pytest.raises(openai.BadRequestError, match="reasoning_content in the thinking mode"):
        client.chat.completions.create(model="deepseek-flash", messages=history, tools=[TOOL])


def test_streamed_tool_call_fragments_assemble(client: openai.OpenAI) -> None:
    """Streamed tool-call fragments, accumulated by index as a client must, form the call."""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    stream = client.chat.completions.create(
        model="deepseek-flash", messages=MESSAGES, tools=[TOOL], stream=True
    )
    for chunk in stream:
        choice = chunk.choices[0]
        for fragment in choice.delta.tool_calls or []:
            entry = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += fragment.id or ""
            if fragment.function is not None:
                entry["name"] += fragment.function.name or ""
                entry["arguments"] += fragment.function.arguments or ""
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_00_")
    assert set(json.loads(calls[0]["arguments"])) == {"city"}


def test_fim_through_the_completions_api(fake: FakeDeepSeek) -> None:
    """FIM with client.completions.create on the /beta base, plain and streamed (§5.2)."""
    with openai.OpenAI(base_url=fake.beta_url, api_key=fake.api_key, max_retries=0) as beta:
        answer = beta.completions.create(
            model="deepseek-v4-pro", prompt="def add(a, b):", suffix="    return c"
        )
        assert answer.object == "text_completion"
        text = answer.choices[0].text
        assert text
        streamed = beta.completions.create(
            model="deepseek-v4-pro", prompt="def add(a, b):", suffix="    return c", stream=True
        )
        assert "".join(c.choices[0].text for c in streamed if c.choices) == text
    with openai.OpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0) as root:
        with pytest.raises(openai.NotFoundError):
            root.completions.create(model="deepseek-v4-pro", prompt="x")


def test_prefix_completion_continues_through_the_client(fake: FakeDeepSeek) -> None:
    """Prefix completion on /beta: the continuation completes the canonical answer."""
    prefix = ANSWER[:9]
    with openai.OpenAI(base_url=fake.beta_url, api_key=fake.api_key, max_retries=0) as beta:
        answer = beta.chat.completions.create(
            model="deepseek-flash",
            messages=[*MESSAGES, {"role": "assistant", "content": prefix, "prefix": True}],
        )
    assert prefix + (answer.choices[0].message.content or "") == ANSWER


def test_in_band_error_raises_api_error(fake: FakeDeepSeek, client: openai.OpenAI) -> None:
    """An error event mid-stream makes openai-python raise APIError (§2.5)."""
    fake.add_fault(Fault("error_line", after_chunks=3, message="Server Overloaded"))
    stream = client.chat.completions.create(model="deepseek-flash", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="Server Overloaded"):
        for _ in stream:
            pass


def test_stream_cut_without_done_ends_silently(fake: FakeDeepSeek, client: openai.OpenAI) -> None:
    """A stream that ends without finish_reason or [DONE] is *not* an error to the client:
    iteration just stops — which is why dsollama must check (§2.5, §7.4)."""
    fake.add_fault(Fault("close_without_done", after_chunks=5))
    chunks = list(
        client.chat.completions.create(model="deepseek-flash", messages=MESSAGES, stream=True)
    )
    assert len(chunks) == 5
    assert all(c.choices[0].finish_reason is None for c in chunks)


def test_cut_connection_is_a_connection_error(fake: FakeDeepSeek, client: openai.OpenAI) -> None:
    """drop mid-stream: APIConnectionError from the iteration."""
    fake.add_fault(Fault("drop", after_chunks=3))
    stream = client.chat.completions.create(model="deepseek-flash", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIConnectionError):
        list(stream)


def test_whitespace_only_body_is_the_2025_json_error(
    fake: FakeDeepSeek, client: openai.OpenAI
) -> None:
    """Queued, then closed with no data: the client fails to parse a blank body, as users
    saw in 2025 ('Expecting value: line 5 column 1 (char 4)', §7.1)."""
    fake.add_fault(Fault("keepalive_then_close", seconds=0.02, interval=0.005))
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        client.chat.completions.create(model="deepseek-flash", messages=MESSAGES)


def test_keepalive_filler_defeats_the_read_timeout(fake: FakeDeepSeek) -> None:
    """While filler arrives every 5 ms, a 50 ms read timeout never fires (§4.2): the call
    waits for the data however long the queue holds it."""
    fake.add_fault(Fault("keepalive", seconds=0, interval=0.005))
    with openai.OpenAI(base_url=fake.url, api_key=fake.api_key, max_retries=0, timeout=0.05) as c:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            call = pool.submit(c.chat.completions.create, model="deepseek-flash", messages=MESSAGES)
            with pytest.raises(concurrent.futures.TimeoutError):
                call.result(timeout=0.25)
            fake.release()
            assert call.result(timeout=10).choices[0].message.content == ANSWER
