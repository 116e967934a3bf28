"""`dsollama serve` as an OpenAI-format API: the official `openai` client at ``/v1``.

Answers, streams and errors must look like OpenAI's to the client; dsollama's extra
information is in the ``dsollama`` object (``model_extra``) and in the headers.
"""

from __future__ import annotations

import openai
import pytest

from dsollama.testing import Fault

from .conftest import Stack
from .serve_harness import MODEL, USER, Served, http, serving

pytestmark = pytest.mark.anyio


def client_for(served: Served, api_key: str = "anything") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{served.url}/v1", api_key=served.token or api_key, max_retries=0, timeout=10
    )


def async_client_for(served: Served) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{served.url}/v1", api_key=served.token or "anything", max_retries=0, timeout=10
    )


async def test_models_lists_local_and_hosted(stack: Stack) -> None:
    with serving(stack) as served, client_for(served) as client:
        models = {m.id: m.owned_by for m in client.models.list()}
        assert models[MODEL] == "library"
        assert models["deepseek-flash"] == "deepseek-hosted"
        assert client.models.retrieve("deepseek-flash").id == "deepseek-flash"
        assert client.models.retrieve("deepseek-coder:6.7b").owned_by == "library"
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("nope")
        assert missing.value.code == "model_not_found"


async def test_local_only_lists_no_hosted_model(stack: Stack) -> None:
    with serving(stack, policy="local-only") as served, client_for(served) as client:
        assert all(m.owned_by == "library" for m in client.models.list())


async def test_chat_answered_locally_with_reasoning_content(stack: Stack) -> None:
    with serving(stack) as served, client_for(served) as client:
        answer = client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
        choice = answer.choices[0]
        assert choice.finish_reason == "stop"
        assert choice.message.content
        assert choice.message.model_extra
        assert choice.message.model_extra["reasoning_content"]
        assert answer.usage is not None
        assert answer.usage.completion_tokens > 0
        assert answer.model == MODEL
        extra = answer.model_extra or {}
        assert extra["dsollama"]["served_by"]["kind"] == "local"
        assert stack.deepseek.requests == []


async def test_chat_streams_with_usage_and_done(stack: Stack) -> None:
    with serving(stack) as served, client_for(served) as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert deltas[0].role == "assistant"
        content = "".join(d.content or "" for d in deltas)
        reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
        assert content
        assert reasoning
        finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert [c.choices[0].finish_reason for c in finish] == ["stop"]
        assert (finish[0].model_extra or {})["dsollama"]["served_by"]["kind"] == "local"
        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert len({c.id for c in chunks}) == 1
        # The same text as the whole answer.
        whole = client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
        assert whole.choices[0].message.content == content


async def test_async_client_streams_too(stack: Stack) -> None:
    with serving(stack) as served:
        async with async_client_for(served) as client:
            stream = await client.chat.completions.create(
                model=MODEL,
                messages=USER,  # type: ignore[arg-type]
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_fallback_to_hosted_is_invisible_but_reported(stack: Stack, stream: bool) -> None:
    stack.ollama.refuse_connections()
    with serving(stack) as served, client_for(served) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=USER,  # type: ignore[arg-type]
            stream=stream,
        )
        assert raw.headers["x-dsollama-kind"] == "hosted"
        assert raw.headers["x-dsollama-model"] == "deepseek-flash"
        parsed = raw.parse()
        if stream:
            chunks = list(parsed)  # type: ignore[arg-type]
            final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
            extra = (final.model_extra or {})["dsollama"]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            assert raw.headers["x-dsollama-fallback-reason"] == "local daemon unreachable"
            extra = (parsed.model_extra or {})["dsollama"]  # type: ignore[union-attr]
            assert parsed.usage.prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
            assert parsed.choices[0].message.content  # type: ignore[union-attr]
        assert extra["served_by"]["kind"] == "hosted"
        assert extra["fallback_reason"] == "local daemon unreachable"
        assert extra["attempts"][0]["error"] == "DaemonUnreachableError"
        assert extra["cost_usd"] > 0


async def test_legacy_completions_and_embeddings(stack: Stack) -> None:
    with serving(stack) as served, client_for(served) as client:
        completion = client.completions.create(model=MODEL, prompt="Say hi", echo=True)
        assert completion.choices[0].text.startswith("Say hi")
        assert completion.choices[0].finish_reason == "stop"
        streamed = client.completions.create(model=MODEL, prompt="Say hi", stream=True)
        text = "".join(c.choices[0].text for c in streamed if c.choices)
        assert text == completion.choices[0].text.removeprefix("Say hi")
        vectors = client.embeddings.create(model=MODEL, input=["a", "b"])  # base64 on the wire
        assert len(vectors.data) == 2
        assert len(vectors.data[0].embedding) == 8
        floats = client.embeddings.create(model=MODEL, input="a", encoding_format="float")
        assert floats.data[0].embedding == pytest.approx(vectors.data[0].embedding, rel=1e-6)


async def test_tool_calls_round_trip(stack: Stack) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    with serving(stack) as served, client_for(served) as client:
        asked = [{"role": "user", "content": "What is the weather in Paris? use get_weather"}]
        first = client.chat.completions.create(
            model="deepseek-flash",
            messages=asked,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
        )
        call = first.choices[0].message.tool_calls
        assert first.choices[0].finish_reason == "tool_calls"
        assert call
        history = [
            *asked,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call[0].id, "content": "sunny"},
        ]
        second = client.chat.completions.create(
            model="deepseek-flash",
            messages=history,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
        )
        assert second.choices[0].finish_reason == "stop"
        assert second.choices[0].message.content


async def test_errors_use_openai_envelope(stack: Stack) -> None:
    with serving(stack, policy="local-only") as served, client_for(served) as client:
        with pytest.raises(openai.NotFoundError) as unknown:
            client.chat.completions.create(model="nope:1b", messages=USER)  # type: ignore[arg-type]
        assert unknown.value.code == "model_not_found"
        assert "not found" in unknown.value.message
        with pytest.raises(openai.BadRequestError) as temperature:
            client.chat.completions.create(model=MODEL, messages=USER, temperature=7)  # type: ignore[arg-type]
        assert temperature.value.param == "temperature"
        with pytest.raises(openai.BadRequestError) as empty:
            client.chat.completions.create(model=MODEL, messages=[])
        assert empty.value.param == "messages"
        with pytest.raises(openai.BadRequestError) as many:
            client.chat.completions.create(model=MODEL, messages=USER, n=2)  # type: ignore[arg-type]
        assert many.value.param == "n"
        with pytest.raises(openai.BadRequestError) as remote:
            client.chat.completions.create(
                model=MODEL,
                messages=[  # type: ignore[list-item]
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ],
            )
        assert "data: URL" in remote.value.message
        bad = await http("POST", f"{served.url}/v1/chat/completions", content=b"{")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"


async def test_a_mid_stream_break_raises_instead_of_ending_short(stack: Stack) -> None:
    stack.ollama.add_fault(Fault("error_line", after_chunks=4, path="/api/chat"))
    with serving(stack, hosted_api_key=None) as served, client_for(served) as client:
        stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)  # type: ignore[arg-type]
        received = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                received.append(chunk)
        assert received  # part of the answer arrived, then the error, never a finish_reason
        assert not any(c.choices and c.choices[0].finish_reason for c in received)
        assert "broke after" in caught.value.message


async def test_serve_never_glues_a_restarted_answer_to_a_broken_one(stack: Stack) -> None:
    # The library may restart a broken stream and flag it; an SDK client cannot read the
    # flag, so serve ends the stream with an error event instead.
    stack.ollama.add_fault(Fault("drop", after_chunks=4, path="/api/chat"))
    with serving(stack, on_broken_stream="restart") as served, client_for(served) as client:
        stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True)  # type: ignore[arg-type]
        received: list[str] = []
        with pytest.raises(openai.APIError):
            for chunk in stream:
                if chunk.choices:
                    delta = chunk.choices[0].delta
                    received.append(getattr(delta, "reasoning_content", None) or "")
                    received.append(delta.content or "")
    assert "".join(received)  # part of an answer went out before the break
    assert stack.deepseek.recorded("/chat/completions") == []  # nothing restarted there


async def test_all_routes_failing_is_503_with_the_attempts(stack: Stack) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=None))
    stack.deepseek.add_fault(Fault("status", status=503, times=None))
    with serving(stack, max_attempts=1) as served, client_for(served) as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=MODEL, messages=USER)  # type: ignore[arg-type]
        assert caught.value.status_code == 503
        assert caught.value.code == "all_routes_failed"
        body = caught.value.response.json()
        assert [a["kind"] for a in body["dsollama"]["attempts"]] == ["local", "hosted"]
        assert caught.value.response.headers["x-dsollama-attempts"] == "2"


async def test_with_the_daemon_down_the_list_still_offers_hosted_models(stack: Stack) -> None:
    stack.ollama.refuse_connections()
    with serving(stack) as served, client_for(served) as client:
        raw = client.models.with_raw_response.list()
        assert {m.id for m in raw.parse()} == {"deepseek-flash", "deepseek-v4-pro"}
        assert "cannot reach the Ollama daemon" in raw.headers["x-dsollama-local-error"]
        tags = await http("GET", f"{served.url}/api/tags")
        assert tags.status_code == 200
        assert "x-dsollama-local-error" in tags.headers
