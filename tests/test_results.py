"""Results built without validation must be indistinguishable from validated ones."""

from __future__ import annotations

import ollama

from dsollama._delta import Delta, ToolCall
from dsollama._results import chat_response, generate_response
from dsollama._routing.shapes import CallSummary, RoutedDelta
from dsollama._types import Attempt, ChatResponse, GenerateResponse, ServedBy

SERVED = ServedBy(
    kind="local",
    route="local:127.0.0.1:11434",
    endpoint="http://127.0.0.1:11434",
    model="deepseek-r1:8b",
)


def final_delta() -> Delta:
    return Delta(
        content="answer",
        thinking="reasons",
        tool_calls=[ToolCall("get_weather", {"city": "Paris"})],
        done=True,
        done_reason="stop",
        prompt_tokens=5,
        completion_tokens=7,
        total_duration_ns=1_000,
        context=[1, 2],
    )


def summary() -> CallSummary:
    attempt = Attempt(route=SERVED.route, kind="local", model=SERVED.model, outcome="ok")
    return CallSummary(
        attempts=[attempt],
        fallback_reason=None,
        seams=[],
        usage=None,
        cost_usd=0.0,
        ttft_s=0.1,
        total_s=0.2,
    )


def test_a_streamed_chunk_equals_its_validated_twin() -> None:
    chunk = chat_response(RoutedDelta(Delta(content="par"), SERVED))
    twin = ChatResponse.model_validate(chunk.model_dump(exclude_unset=True))
    assert chunk == twin
    assert chunk.model_fields_set == twin.model_fields_set
    assert "thinking" not in chunk.message  # unset, as when the server omits it
    assert chunk["message"]["content"] == "par"
    assert isinstance(chunk, ollama.ChatResponse)


def test_a_final_chat_response_equals_its_validated_twin() -> None:
    final = chat_response(RoutedDelta(final_delta(), SERVED, summary()))
    twin = ChatResponse.model_validate(final.model_dump(exclude_unset=True))
    assert final == twin
    assert final.message.tool_calls is not None
    assert final.message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert final.model_dump_json() == twin.model_dump_json()


def test_a_final_generate_response_equals_its_validated_twin() -> None:
    final = generate_response(RoutedDelta(final_delta(), SERVED, summary()))
    twin = GenerateResponse.model_validate(final.model_dump(exclude_unset=True))
    assert final == twin
    assert final.context == [1, 2]
    assert final.attempts is not None
    assert final.attempts[0].outcome == "ok"
