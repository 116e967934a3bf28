"""What a call means on the other route: options, formats, tools, images, FIM, thinking."""

from __future__ import annotations

import json

import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


async def test_options_are_mapped_and_what_cannot_be_honoured_is_reported(
    stack: Stack, kind: str
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    options = {
        "temperature": 0.3,
        "num_predict": 50,
        "stop": ["\n\n"],
        "seed": 7,
        "top_k": 20,
        "num_ctx": 8192,
    }
    result = await stack.call(kind, client, "chat", "deepseek-coder:6.7b", USER, options=options)
    body = stack.deepseek.recorded("/chat/completions")[-1].json
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert body["stop"] == ["\n\n"]
    assert body["thinking"] == {"type": "disabled"}  # a coder model is not a thinking model
    ignored = " ".join(result.final.ignored or [])
    for name in ("seed", "top_k", "num_ctx"):
        assert name in ignored


async def test_think_maps_to_the_hosted_thinking_switch(stack: Stack, kind: str) -> None:
    client = stack.client(kind, policy="hosted-first")
    await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    await stack.call(kind, client, "chat", "deepseek-coder:6.7b", USER, think=True)
    await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think="high")
    bodies = [r.json for r in stack.deepseek.recorded("/chat/completions")]
    assert bodies[0]["thinking"] == {"type": "disabled"}
    assert bodies[1]["thinking"] == {"type": "enabled"}
    assert bodies[2]["thinking"] == {"type": "enabled"}
    assert bodies[2]["reasoning_effort"] == "high"


async def test_json_format_becomes_json_mode(stack: Stack, kind: str) -> None:
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, format="json", think=False
    )
    body = stack.deepseek.recorded("/chat/completions")[-1].json
    assert body["response_format"] == {"type": "json_object"}
    assert isinstance(json.loads(result.text), dict)


async def test_a_schema_format_is_sent_as_json_mode_and_the_answer_is_checked(
    stack: Stack, kind: str
) -> None:
    # The hosted double answers JSON mode with {"answer": "..."}.
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
    }
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, format=schema, think=False
    )
    body = stack.deepseek.recorded("/chat/completions")[-1].json
    assert body["response_format"] == {"type": "json_object"}
    assert (
        '"required": ["answer"]' in body["messages"][0]["content"]
    )  # the schema travels in the prompt
    assert result.final.served_by.kind == "hosted"
    assert isinstance(json.loads(result.text)["answer"], str)


async def test_a_hosted_answer_that_breaks_the_schema_is_not_returned(
    stack: Stack, kind: str
) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, format=schema, think=False
    )
    assert result.outcomes == [("hosted", "retry"), ("hosted", "fallback"), ("local", "ok")]
    assert "does not match the requested JSON schema" in (result.final.attempts[0].detail or "")
    assert "city" in json.loads(result.text)  # the local daemon enforces the schema itself


async def test_tools_round_trip_to_the_hosted_route(stack: Stack, kind: str) -> None:
    tools = [
        {
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
    ]
    client = stack.client(kind)
    # deepseek-r1:8b has no tools capability locally: the daemon refuses, hosted answers.
    result = await stack.call(
        kind,
        client,
        "chat",
        "deepseek-r1:8b",
        [{"role": "user", "content": "Weather in Paris? use get_weather"}],
        tools=tools,
    )
    assert result.final.served_by.kind == "hosted"
    assert "capability" in (result.final.fallback_reason or "")
    calls = [c for chunk in result.chunks for c in (chunk.message.tool_calls or [])]
    assert calls
    assert calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments, dict)  # a dict, as ollama returns
    followup = [
        {"role": "user", "content": "Weather in Paris? use get_weather"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    await stack.call(kind, client, "chat", "deepseek-r1:8b", followup, tools=tools, think=False)
    sent = stack.deepseek.recorded("/chat/completions")[-1].json["messages"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert sent[2]["role"] == "tool"
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]


async def test_images_never_go_hosted_and_fail_clearly_without_local(
    stack: Stack, kind: str
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    message = [{"role": "user", "content": "what is this?", "images": ["aGVsbG8="]}]
    with pytest.raises(dsollama.DaemonUnreachableError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", message)
    details = [a.detail or "" for a in caught.value.attempts]
    assert any("images cannot go to the hosted route" in d for d in details)
    assert stack.deepseek.requests == []


async def test_generate_with_a_suffix_uses_fim_on_the_hosted_side(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    result = await stack.call(
        kind,
        client,
        "generate",
        "deepseek-coder:6.7b",
        "def add(a, b):\n",
        "\n\nprint(add(1, 2))",
        stream=stream,
    )
    assert result.final.served_by.kind == "hosted"
    fim = stack.deepseek.recorded("/beta/completions")
    assert fim
    assert fim[0].json["suffix"] == "\n\nprint(add(1, 2))"
    assert result.text


async def test_generate_reports_what_has_no_hosted_equivalent(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    result = await stack.call(
        kind, client, "generate", "deepseek-r1:8b", "hi", context=[1, 2, 3], think=False
    )
    assert any(note.startswith("context") for note in result.final.ignored or [])


async def test_a_retired_hosted_name_is_reported_loudly_and_falls_back(
    stack: Stack, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = stack.client(kind, policy="hosted-first", hosted_model="deepseek-chat")
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.final.served_by.kind == "local"
    assert result.final.attempts[0].error == "BadRequestError"
    assert any(
        "hosted model name" in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
    )


async def test_a_local_capability_error_is_not_retried(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(
        Fault(
            "status",
            status=400,
            message='"deepseek-coder:6.7b" does not support thinking',
            path="/api/chat",
        )
    )
    client = stack.client(kind)
    result = await stack.call(kind, client, "chat", "deepseek-coder:6.7b", USER, think=True)
    assert result.outcomes == [("local", "fallback"), ("hosted", "ok")]
