"""Streamed parts written from their fields (`serve.chunk_bytes` and the SSE templates)
are byte for byte what pydantic and ``json.dumps`` write, for any text; parts of other
shapes take the general way."""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsollama._types import Attempt, ChatResponse, GenerateResponse, ServedBy
from dsollama.serve.chunk_bytes import ChatPartWriter, GeneratePartWriter
from dsollama.serve.ollama_api import _EXTRAS, NdjsonEncoder
from dsollama.serve.openai_wire import ChatStreamEncoder, CompletionStreamEncoder, _event

SERVED = ServedBy(kind="local", route="local", endpoint="http://127.0.0.1:11434", model="m")
TEXT = st.text(max_size=40)  # every code point but surrogates, control characters included
MAYBE = st.none() | TEXT


def _chat(content: str | None, thinking: str | None = None, **fields: Any) -> ChatResponse:
    message = {"role": "assistant", "content": content, "thinking": thinking}
    base = {"model": "deepseek-r1:8b", "created_at": "2026-12-01T00:00:00Z", "done": False}
    return ChatResponse(**{**base, **fields}, message=message, served_by=SERVED)


def _generate(response: str | None, thinking: str | None = None, **fields: Any) -> Any:
    base = {"model": "deepseek-r1:8b", "created_at": "2026-12-01T00:00:00Z", "done": False}
    return GenerateResponse(
        **{**base, **fields}, response=response, thinking=thinking, served_by=SERVED
    )


def _pydantic(part: Any) -> bytes:
    return part.model_dump_json(exclude_none=True, exclude=_EXTRAS).encode()  # type: ignore[no-any-return]


@settings(max_examples=300, deadline=None)
@given(content=MAYBE, thinking=MAYBE, model=MAYBE, created=MAYBE, done=st.none() | st.booleans())
def test_text_parts_are_what_pydantic_writes(
    content: str | None,
    thinking: str | None,
    model: str | None,
    created: str | None,
    done: bool | None,
) -> None:
    fields = {"model": model, "created_at": created, "done": done}
    chat = _chat(content, thinking, **fields)
    assert ChatPartWriter(_EXTRAS)(chat) == _pydantic(chat)
    generated = _generate(content, thinking, **fields)
    assert GeneratePartWriter(_EXTRAS)(generated) == _pydantic(generated)


def test_other_parts_take_the_general_way() -> None:
    call = ollama.Message.ToolCall(
        function=ollama.Message.ToolCall.Function(name="f", arguments={})
    )
    odd = [
        _chat("a", done_reason="stop"),
        _chat("a", eval_count=3),
        _chat("a", restart=True),
        _chat("a", ttft_s=0.5),
        ChatResponse(
            model="m",
            message=ollama.Message(role="assistant", content="", tool_calls=[call]),
            served_by=SERVED,
        ),
        ChatResponse(
            model="m", message={"role": "assistant", "images": [ollama.Image(value=b"GIF")]}
        ),
    ]
    for part in odd:
        assert ChatPartWriter(_EXTRAS)(part) is None
        encoded = NdjsonEncoder(ChatPartWriter(_EXTRAS)).part(part)
        assert encoded == _pydantic(part) + b"\n"
    assert GeneratePartWriter(_EXTRAS)(_generate("a", context=[1, 2])) is None
    # a field given as None is as good as unset
    assert ChatPartWriter(_EXTRAS)(_chat("a", done_reason=None)) == _pydantic(_chat("a"))
    # dsollama's fields are left to the final line, whatever a part carries
    attempts = [Attempt(route="local", kind="local", model="m", outcome="ok")]
    assert ChatPartWriter(_EXTRAS)(_chat("a", attempts=attempts)) == _pydantic(_chat("a"))
    assert b"served_by" not in NdjsonEncoder(ChatPartWriter(_EXTRAS)).part(_chat("a"))


def test_a_lone_surrogate_fails_as_it_did() -> None:
    part = _chat("\ud800")
    assert ChatPartWriter(_EXTRAS)(part) is None
    with pytest.raises(Exception, match="surrogates not allowed"):
        NdjsonEncoder(ChatPartWriter(_EXTRAS)).part(part)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(st.tuples(TEXT, MAYBE), min_size=1, max_size=6), model=TEXT)
def test_sse_chunks_are_what_json_dumps_writes(
    parts: list[tuple[str, str | None]], model: str
) -> None:
    fast, reference = ChatStreamEncoder(), ChatStreamEncoder()
    reference.id, reference.created = fast.id, fast.created
    texts, reference_texts = CompletionStreamEncoder(), CompletionStreamEncoder()
    reference_texts.id, reference_texts.created = texts.id, texts.created
    for content, thinking in parts:
        chat = _chat(content, thinking, model=model)
        delta = reference._delta(chat)
        expected = b"" if delta is None else _event(reference._chunk(model, delta, None))
        assert fast.part(chat) == expected
        generated = _generate(content, thinking, model=model)
        if content or thinking:
            expected = _event(reference_texts._object(model, content, None, thinking))
            assert texts.part(generated) == expected
            assert json.loads(expected[len(b"data: ") :])["choices"][0]["text"] == content
        else:
            assert texts.part(generated) == b""
