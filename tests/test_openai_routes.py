"""OpenAI-format routes end to end: a vLLM or llama-server route answers through
`dsollama.Client` / `AsyncClient` in its own dialect (no DeepSeek thinking switch, its
sampling names, server-side JSON schemas), inline ``<think>`` is split, and a broken
answer continues on these servers the way each of them continues one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import dsollama
from dsollama._backends import CallSpec
from dsollama._exceptions import UnsupportedRequestError
from dsollama.testing import FakeLlamaServer, FakeVLLM, Fault
from dsollama.testing._text import answer_tokens, thinking_tokens
from tests.conftest import FAST_SETTINGS, Stack
from tests.route_backends import collect, open_backend

QUESTION = "why is the sky blue"
MESSAGES = [{"role": "user", "content": QUESTION}]
ANSWER = "".join(answer_tokens(QUESTION, 12))
THOUGHT = "".join(thinking_tokens(QUESTION, 8))
# One route, nowhere to fall back: deadlines generous enough for a loaded machine.
SETTINGS = {**FAST_SETTINGS, "first_token_timeout": 10.0, "gap_timeout": 10.0}


@pytest.fixture
async def calls() -> AsyncIterator[Stack]:
    """A place to make clients (closed at the end) and `Stack.call` to call them."""
    holder = Stack(ollama=None, deepseek=None)
    try:
        yield holder
    finally:
        for client in holder.clients:
            if hasattr(client, "aclose"):
                await client.aclose()
            else:
                await asyncio.to_thread(client.close)


def make_client(calls: Stack, kind: str, *routes: dict[str, Any]) -> Any:
    cls = dsollama.AsyncClient if kind == "async" else dsollama.Client
    client = cls(routes=list(routes), **SETTINGS)
    calls.clients.append(client)
    return client


def vllm_route(fake: FakeVLLM, **fields: Any) -> dict[str, Any]:
    table = {"preset": "vllm", "base_url": fake.url + "/v1", "models": [fake.model]}
    return {**table, "private": True, **fields}


def llama_route(fake: FakeLlamaServer, **fields: Any) -> dict[str, Any]:
    table = {"preset": "llamacpp", "base_url": fake.base_url, "models": [fake.model_alias]}
    return {**table, **fields}


def sent(fake: Any) -> dict[str, Any]:
    """The body of the last chat request the double received."""
    body: dict[str, Any] = fake.recorded("/v1/chat/completions")[-1].json
    return body


# -- answers -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["chat", "generate"])
async def test_a_vllm_route_answers(
    calls: Stack, fake_vllm: FakeVLLM, kind: str, stream: bool, op: str
) -> None:
    client = make_client(calls, kind, vllm_route(fake_vllm, name="gpu-box"))
    args: dict[str, Any] = (
        {"messages": MESSAGES} if op == "chat" else {"prompt": QUESTION, "system": None}
    )
    result = await calls.call(kind, client, op, model=fake_vllm.model, stream=stream, **args)
    assert (result.text, result.thinking) == (ANSWER, THOUGHT)
    served = result.final.served_by
    assert (served.route, served.api, served.kind, served.model) == (
        "gpu-box",
        "openai",
        "local",
        fake_vllm.model,
    )
    body = sent(fake_vllm)
    assert "thinking" not in body  # DeepSeek's switch is not vLLM's
    assert body["stream"] is True
    assert not result.final.ignored


@pytest.mark.anyio
async def test_think_the_route_cannot_switch_is_reported(
    calls: Stack, fake_vllm: FakeVLLM, kind: str
) -> None:
    client = make_client(calls, kind, vllm_route(fake_vllm))
    result = await calls.call(
        kind, client, "chat", model=fake_vllm.model, messages=MESSAGES, think=False
    )
    assert result.final.ignored == [
        "think: this route's model always reasons; cannot switch it off"
    ]
    assert result.thinking == THOUGHT  # what the model did, still delivered where it belongs
    assert "thinking" not in sent(fake_vllm)


@pytest.mark.anyio
async def test_options_are_spelt_the_way_vllm_takes_them(
    calls: Stack, fake_vllm: FakeVLLM, kind: str
) -> None:
    client = make_client(calls, kind, vllm_route(fake_vllm))
    options = {
        "temperature": 0.2,
        "num_predict": 64,
        "seed": 11,
        "top_k": 40,
        "repeat_penalty": 1.15,
        "num_ctx": 8192,
        "mirostat": 2,
    }
    result = await calls.call(
        kind, client, "chat", model=fake_vllm.model, messages=MESSAGES, options=options
    )
    body = sent(fake_vllm)
    assert {k: body[k] for k in ("temperature", "max_tokens", "seed", "top_k")} == {
        "temperature": 0.2,
        "max_tokens": 64,
        "seed": 11,
        "top_k": 40,
    }
    assert body["repetition_penalty"] == 1.15
    assert not {"num_ctx", "mirostat", "repeat_penalty"} & set(body)
    assert [note.split(":")[0] for note in result.final.ignored] == ["num_ctx", "mirostat"]
    assert result.text == ANSWER


@pytest.mark.anyio
async def test_json_schema_is_left_to_vllm(calls: Stack, fake_vllm: FakeVLLM, kind: str) -> None:
    """vLLM constrains decoding to the schema: it travels as response_format json_schema,
    the prompt is untouched, and dsollama does not second-guess the answer."""
    schema = {"type": "object", "properties": {"color": {"type": "string"}}}
    client = make_client(calls, kind, vllm_route(fake_vllm))
    result = await calls.call(
        kind, client, "chat", model=fake_vllm.model, messages=MESSAGES, format=schema
    )
    body = sent(fake_vllm)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }
    assert body["messages"] == MESSAGES
    assert result.text == ANSWER  # the double does not constrain; a real vLLM would


# -- inline <think> ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_inline_think_from_vllm_without_a_parser_is_split(
    calls: Stack, kind: str, stream: bool
) -> None:
    """Without --reasoning-parser the thought is inline in the content: the caller gets
    exactly what a server with the parser gives."""
    with FakeVLLM(reasoning_parser=False) as fake:
        client = make_client(calls, kind, vllm_route(fake))
        result = await calls.call(
            kind, client, "chat", model=fake.model, messages=MESSAGES, stream=stream
        )
        raw = fake.recorded("/v1/chat/completions")
    assert (result.text, result.thinking) == (ANSWER, THOUGHT)
    assert "<think>" not in result.text
    assert len(raw) == 1


@pytest.mark.anyio
async def test_inline_think_from_llama_server_is_split(calls: Stack, kind: str) -> None:
    with FakeLlamaServer(reasoning_format="none") as fake:
        client = make_client(calls, kind, llama_route(fake))
        result = await calls.call(
            kind, client, "chat", model=fake.model_alias, messages=MESSAGES, stream=True
        )
    assert (result.text, result.thinking) == (ANSWER, THOUGHT)


@pytest.mark.anyio
async def test_llama_server_reasoning_content_is_thinking(calls: Stack, kind: str) -> None:
    with FakeLlamaServer() as fake:
        client = make_client(calls, kind, llama_route(fake))
        result = await calls.call(kind, client, "generate", model=fake.model_alias, prompt=QUESTION)
    assert (result.text, result.thinking) == (ANSWER, THOUGHT)


# -- continuation ----------------------------------------------------------------------------------

PARTIAL = "".join(answer_tokens(QUESTION, 12)[:5])
SPEC = CallSpec("chat", model="", messages=MESSAGES, stream=True)


@pytest.mark.anyio
async def test_vllm_continues_a_broken_answer(fake_vllm: FakeVLLM) -> None:
    async with open_backend(vllm_route(fake_vllm)) as backend:
        deltas, _ = await collect(backend, SPEC, model=fake_vllm.model, partial=(PARTIAL, THOUGHT))
    assert PARTIAL + "".join(d.content for d in deltas) == ANSWER
    assert "".join(d.thinking for d in deltas) == ""
    assert deltas[-1].done
    body = sent(fake_vllm)
    assert body["messages"] == [*MESSAGES, {"role": "assistant", "content": PARTIAL}]
    assert (body["continue_final_message"], body["add_generation_prompt"]) == (True, False)


@pytest.mark.anyio
async def test_llama_server_continues_a_broken_answer(fake_llamacpp: FakeLlamaServer) -> None:
    async with open_backend(llama_route(fake_llamacpp)) as backend:
        deltas, _ = await collect(
            backend, SPEC, model=fake_llamacpp.model_alias, partial=(PARTIAL, THOUGHT)
        )
    assert PARTIAL + "".join(d.content for d in deltas) == ANSWER
    body = sent(fake_llamacpp)
    assert body["messages"][-1] == {"role": "assistant", "content": PARTIAL}
    assert "continue_final_message" not in body


@pytest.mark.anyio
async def test_continuation_is_refused_where_it_cannot_be_honest(fake_vllm: FakeVLLM) -> None:
    async with open_backend(vllm_route(fake_vllm)) as backend:
        with pytest.raises(UnsupportedRequestError, match="inside its reasoning"):
            await collect(backend, SPEC, model=fake_vllm.model, partial=("", "half a"))
    async with open_backend(vllm_route(fake_vllm, preset="lmstudio")) as backend:
        with pytest.raises(UnsupportedRequestError, match="cannot continue"):
            await collect(backend, SPEC, model=fake_vllm.model, partial=(PARTIAL, ""))
    assert fake_vllm.recorded("/v1/chat/completions") == []


@pytest.mark.anyio
async def test_a_stream_broken_on_one_vllm_continues_on_another(calls: Stack, kind: str) -> None:
    """Through the client: the first server cuts the answer after 5 tokens; the caller
    gets the uninterrupted answer, continued on the second server, with the seam noted."""
    with FakeVLLM(reasoning_parser=True) as first, FakeVLLM(reasoning_parser=True) as second:
        first.add_fault(Fault("drop", after_chunks=1 + 8 + 5))
        client = make_client(
            calls, kind, vllm_route(first, name="first"), vllm_route(second, name="second")
        )
        result = await calls.call(
            kind,
            client,
            "chat",
            model=first.model,
            messages=MESSAGES,
            stream=True,
            continue_stream=True,
        )
        body = sent(second)
    assert (result.text, result.thinking) == (ANSWER, THOUGHT)
    assert [(s.from_route, s.to_route, s.at_char) for s in result.final.seams] == [
        ("first", "second", len(PARTIAL))
    ]
    assert body["continue_final_message"] is True
