"""A hosted answer that is malformed is never returned short: through both clients.

The hosted backend always asks for a stream. A server (or a proxy) may still answer with
one JSON body, with chunks whose fields have the wrong types, or with an HTML page; each
must end as the whole answer or as a failure the router retries or moves past — never
as a shortened answer that passes for complete.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import dsollama
from dsollama._backends import CallSpec, StreamStats
from dsollama._backends.hosted import HostedBackend
from dsollama._catalogue import load_catalogue
from dsollama._config import load_settings
from dsollama._delta import Delta
from dsollama._exceptions import ServerError
from dsollama._routes import resolve_routes
from dsollama.testing import Fault

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


async def test_a_json_body_on_a_streaming_request_is_the_whole_answer(
    stack: Stack, kind: str, stream: bool
) -> None:
    client = stack.client(kind, policy="hosted-first")
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    stack.deepseek.add_fault(Fault("json_body", path="/chat/completions"))
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
    assert result.outcomes == [("hosted", "ok")]
    assert result.text == clean.text
    assert result.text
    assert result.thinking == clean.thinking
    assert result.final.done_reason == "stop"
    assert result.final.usage is not None
    assert result.final.usage.completion_tokens == clean.final.usage.completion_tokens


async def test_a_json_body_on_a_streaming_generate_is_the_whole_answer(
    stack: Stack, kind: str
) -> None:
    client = stack.client(kind, policy="hosted-first")
    clean = await stack.call(kind, client, "generate", "deepseek-r1:8b", "Why?", think=False)
    stack.deepseek.add_fault(Fault("json_body"))
    result = await stack.call(kind, client, "generate", "deepseek-r1:8b", "Why?", think=False)
    assert result.outcomes == [("hosted", "ok")]
    assert result.text == clean.text
    assert result.text


async def test_a_wrong_typed_chunk_is_retried_never_returned_short(stack: Stack, kind: str) -> None:
    client = stack.client(kind, policy="hosted-first")
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    # Event 3 is mid-reasoning: skipped, it would take a piece of the thought with it.
    stack.deepseek.add_fault(Fault("wrong_type", after_chunks=3, path="/chat/completions"))
    result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert result.outcomes == [("hosted", "retry"), ("hosted", "ok")]
    assert result.final.attempts[0].error == "ServerError"
    assert "malformed" in (result.final.attempts[0].detail or "")
    assert (result.text, result.thinking) == (clean.text, clean.thinking)


@pytest.mark.parametrize("fault", ["wrong_type", "html_body", "malformed_line"])
async def test_a_hosted_route_that_keeps_answering_malformed_falls_back(
    stack: Stack, kind: str, stream: bool, fault: str
) -> None:
    stack.deepseek.add_fault(Fault(fault, times=None, path="/chat/completions"))  # type: ignore[arg-type]
    client = stack.client(kind, policy="hosted-first")
    result = await stack.call(
        kind, client, "chat", "deepseek-r1:8b", USER, stream=stream, think=False
    )
    assert result.outcomes == [("hosted", "retry"), ("hosted", "fallback"), ("local", "ok")]
    assert result.final.served_by.kind == "local"
    assert result.final.attempts[0].error == "ServerError"
    assert result.text


async def test_an_html_page_is_named_in_the_failure(stack: Stack, kind: str) -> None:
    stack.deepseek.add_fault(Fault("html_body", times=None, path="/chat/completions"))
    client = stack.client(kind, policy="local-first")
    stack.ollama.refuse_connections()
    with pytest.raises(dsollama.AllRoutesFailedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    hosted = [a for a in caught.value.attempts if a.kind == "hosted"]
    assert hosted
    assert all("text/html" in (a.detail or "") for a in hosted)


async def test_a_wrong_typed_chunk_after_text_was_shown_surfaces_with_the_partial_answer(
    stack: Stack, kind: str
) -> None:
    client = stack.client(kind, policy="hosted-first")
    clean = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, think=False)
    stack.deepseek.add_fault(Fault("wrong_type", after_chunks=4, path="/chat/completions"))
    with pytest.raises(dsollama.StreamInterruptedError) as caught:
        await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True, think=False)
    error = caught.value
    assert error.partial_text
    assert clean.text.startswith(error.partial_text)
    assert len(error.partial_text) < len(clean.text)
    assert "malformed" in str(error)


# -- the hosted backend on its own, against canned answers (no server) ------------------

COMPLETION = {
    "object": "chat.completion",
    "model": "deepseek-flash",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there.", "reasoning": "Greet."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 4},
}


async def backend_answer(
    body: bytes, content_type: str | None
) -> tuple[list[Delta], StreamStats, dict[str, Any]]:
    """Run one hosted chat whose HTTP answer is ``body`` with ``content_type``."""
    sent: dict[str, Any] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        sent.update(json.loads(request.content))
        headers = {"content-type": content_type} if content_type else {}
        return httpx.Response(200, content=body, headers=headers)

    settings = load_settings(hosted_base_url="http://127.0.0.1:9", hosted_api_key="sk-test-key")
    route = resolve_routes(settings)[-1]  # the hosted route the settings describe
    backend = HostedBackend(
        route, settings, load_catalogue(), transport=httpx.MockTransport(answer)
    )
    stats = StreamStats()
    spec = CallSpec(operation="chat", model="deepseek-r1:8b", messages=USER)
    try:
        deltas = [
            d
            async for d in backend.stream(spec, model="deepseek-flash", thinking=None, stats=stats)
        ]
    finally:
        await backend.aclose()
    return deltas, stats, sent


async def test_the_backend_decodes_a_json_body_after_filler_lines() -> None:
    body = b"\n\n\n" + json.dumps(COMPLETION, indent=2).encode()  # pretty-printed, too
    deltas, stats, sent = await backend_answer(body, "application/json")
    assert sent["stream"] is True  # it asked for a stream and got a body
    assert "".join(d.content for d in deltas) == "Hello there."
    assert "".join(d.thinking for d in deltas) == "Greet."  # OpenRouter/vLLM "reasoning"
    assert deltas[-1].done
    assert (deltas[-1].done_reason, deltas[-1].completion_tokens) == ("stop", 4)
    assert stats.filler == 3


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": "stop"}]},
            "not a chat or text completion",
        ),
        ({"choices": []}, "no choices"),
        ({"id": "x"}, "no choices"),
        (
            {"choices": [{"index": 0, "message": {"content": 42}, "finish_reason": "stop"}]},
            "content must be a string",
        ),
    ],
)
async def test_a_json_body_that_is_not_a_valid_completion_is_malformed(
    body: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ServerError, match="malformed") as caught:
        await backend_answer(json.dumps(body).encode(), "application/json; charset=utf-8")
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "content_type", ["text/html; charset=utf-8", "text/plain", "application/x-ndjson"]
)
async def test_an_unexpected_content_type_is_a_server_error_naming_it(content_type: str) -> None:
    page = b"<html><body>502 Bad Gateway</body></html>"
    with pytest.raises(ServerError) as caught:
        await backend_answer(page, content_type)
    assert repr(content_type.split(";")[0]) in str(caught.value)
    assert caught.value.hint


async def test_without_a_content_type_a_one_line_completion_still_decodes() -> None:
    deltas, _, _ = await backend_answer(json.dumps(COMPLETION).encode(), None)
    assert "".join(d.content for d in deltas) == "Hello there."
