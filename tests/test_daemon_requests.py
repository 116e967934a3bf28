"""Routed chat and generate send the daemon exactly what the official client sends.

dsollama reads the daemon's NDJSON answer itself, but the request is the official
client's: for each call below, the same arguments go to `ollama.AsyncClient` and to
`dsollama.AsyncClient`, and the bytes of the two request bodies (and the headers) must
be identical. Both talk to one `httpx.MockTransport`, so nothing leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

import dsollama
from dsollama._config import Settings

HOST = "http://127.0.0.1:11434"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40))

_FINAL = {"model": "m", "done": True, "done_reason": "stop", "eval_count": 1}


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/version":
        return httpx.Response(200, json={"version": "0.12.6"})
    body = json.loads(request.content)
    if request.url.path == "/api/chat":
        chunks = [
            {"model": body["model"], "message": {"role": "assistant", "content": "Hi"}},
            {**_FINAL, "message": {"role": "assistant", "content": ""}},
        ]
    else:
        chunks = [{"model": body["model"], "response": "Hi"}, {**_FINAL, "response": ""}]
    lines = b"".join(
        json.dumps({**c, "done": c.get("done", False)}).encode() + b"\n" for c in chunks
    )
    return httpx.Response(200, content=lines, headers={"Content-Type": "application/x-ndjson"})


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return _answer(request)

    def inference(self) -> httpx.Request:
        (request,) = [r for r in self.requests if r.url.path != "/api/version"]
        return request


def add_two_numbers(a: int, b: int) -> int:
    """
    Add two numbers together.

    Args:
      a: The first number
      b: The second number

    Returns:
      int: The sum of a and b
    """
    return a + b


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "required": ["city"],
            "properties": {"city": {"type": "string", "description": "The city"}},
        },
    },
}


def _chat_cases(image_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "plain": {"messages": [{"role": "user", "content": "Why is the sky blue?"}]},
        "history and Message objects": {
            "messages": [
                ollama.Message(role="system", content="Be brief."),
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "thinking": "easy"},
                {"role": "user", "content": "and 3+3, in JSON?", "images": None},
            ],
            "format": "json",
            "options": {"temperature": 0, "num_ctx": 8192, "stop": ["\n\n"]},
            "keep_alive": "10m",
        },
        "images as bytes, base64 and a path": {
            "messages": [
                {
                    "role": "user",
                    "content": "What is in these?",
                    "images": [PNG, "iVBORw0KGgo=", str(image_path)],
                },
                ollama.Message(role="user", content="and this", images=[ollama.Image(value=PNG)]),
            ]
        },
        "tools from a Python function, a dict and an ollama.Tool": {
            "messages": [{"role": "user", "content": "What is 2+3, and the weather in Paris?"}],
            "tools": [add_two_numbers, WEATHER_TOOL, ollama.Tool.model_validate(WEATHER_TOOL)],
        },
        "a tool call and its result in the history": {
            "messages": [
                {"role": "user", "content": "Weather in Tokyo?"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}
                    ],
                },
                {"role": "tool", "content": "Sunny", "tool_name": "get_weather"},
            ],
            "tools": [WEATHER_TOOL],
        },
        "thinking, a schema and Options": {
            "messages": [{"role": "user", "content": "Name a colour. ünïcödé ✓ 中文"}],
            "think": "high",
            "format": {"type": "object", "properties": {"colour": {"type": "string"}}},
            "options": ollama.Options(temperature=0.2, seed=7, num_predict=64),
            "keep_alive": 0,
            "logprobs": True,
            "top_logprobs": 3,
        },
        "think off": {"messages": [{"role": "user", "content": "hi"}], "think": False},
    }


def _generate_cases(image_path: Path) -> dict[str, dict[str, Any]]:
    return {
        "plain": {"prompt": "Why is the sky blue?"},
        "system, template, raw and context": {
            "prompt": "Continue",
            "system": "You are terse.",
            "template": "{{ .Prompt }}",
            "raw": True,
            "context": [1, 2, 3],
            "options": {"temperature": 0},
            "keep_alive": "1h",
        },
        "fill in the middle": {
            "prompt": "def add(a, b):\n    ",
            "suffix": "\n    return c",
            "options": ollama.Options(num_predict=32),
        },
        "images and a schema": {
            "prompt": "Describe",
            "images": [PNG, str(image_path)],
            "format": {"type": "object"},
            "think": True,
        },
    }


async def _wire_bytes(
    send: Callable[[httpx.MockTransport], Any], recorder: Recorder
) -> httpx.Request:
    await send(httpx.MockTransport(recorder))
    return recorder.inference()


async def _compare(operation: str, arguments: dict[str, Any], model: str) -> None:
    official_recorder, ours_recorder = Recorder(), Recorder()

    async def official(transport: httpx.MockTransport) -> None:
        client = ollama.AsyncClient(host=HOST, transport=transport)
        call = getattr(client, operation)
        async for _ in await call(model, stream=True, **arguments):
            pass

    async def ours(transport: httpx.MockTransport) -> None:
        settings = Settings(ollama_hosts=(HOST,), log=False)
        async with dsollama.AsyncClient(settings=settings, transport=transport) as client:
            call = getattr(client, operation)
            async for _ in await call(model, stream=True, **arguments):
                pass

    theirs = await _wire_bytes(official, official_recorder)
    mine = await _wire_bytes(ours, ours_recorder)
    assert (mine.method, mine.url) == (theirs.method, theirs.url)
    assert mine.content == theirs.content
    assert dict(mine.headers) == dict(theirs.headers)


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(_chat_cases(Path("x"))))
async def test_chat_bodies_are_the_official_clients_byte_for_byte(
    case: str, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    arguments = _chat_cases(image)[case]
    await _compare("chat", arguments, "deepseek-r1:8b")


@pytest.mark.anyio
@pytest.mark.parametrize("case", list(_generate_cases(Path("x"))))
async def test_generate_bodies_are_the_official_clients_byte_for_byte(
    case: str, tmp_path: Path
) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    arguments = _generate_cases(image)[case]
    await _compare("generate", arguments, "deepseek-coder-v2:16b")


@pytest.mark.anyio
async def test_the_answer_is_read_whatever_the_bytes_boundaries() -> None:
    # One byte per read: every line is split across reads, UTF-8 sequences too.
    stamps = [f"2026-11-25T16:32:46.00000000{i}Z" for i in range(3)]
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "Caf"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "é ✓"}, "done": False},
        {**_FINAL, "message": {"role": "assistant", "content": ""}},
    ]
    for line, stamp in zip(lines, stamps, strict=True):
        line["created_at"] = stamp
    body = b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)

    class OneByteAtATime(httpx.AsyncByteStream):
        async def __aiter__(self) -> Any:
            for i in range(len(body)):
                yield body[i : i + 1]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=OneByteAtATime())

    settings = Settings(ollama_hosts=(HOST,), log=False)
    transport = httpx.MockTransport(handler)
    async with dsollama.AsyncClient(settings=settings, transport=transport) as client:
        parts = [
            p async for p in await client.chat("m", [{"role": "user", "content": "x"}], stream=True)
        ]
        whole = await client.chat("m", [{"role": "user", "content": "x"}])
    assert "".join(p.message.content for p in parts) == "Café ✓"
    assert whole.message.content == "Café ✓"
    assert whole.eval_count == 1
    # The daemon's timestamps, as the official client shows them.
    assert [p.created_at for p in parts] == stamps
    assert whole.created_at == stamps[-1]
