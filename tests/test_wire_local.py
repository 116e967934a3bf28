"""Ollama chunks → Deltas (thinking field and inline <think>), ollama/httpx errors → dsollama errors."""

from __future__ import annotations

import json
from typing import Literal

import httpx
import ollama
import pydantic
import pytest

from dsollama._delta import ToolCall
from dsollama._exceptions import (
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    DaemonUnreachableError,
    IncompleteResponseError,
    ModelNotFoundError,
    ServerError,
)
from dsollama._wire.local import (
    LOCAL_ERRORS,
    ContextOverflowError,
    NdjsonLines,
    ShapeError,
    classify_local_error,
    local_chunk_to_delta,
    parse_local_line,
    to_ollama_messages,
)
from dsollama._wire.reasoning import ThinkSplitter

HOST = "http://127.0.0.1:11434"

FINAL_METRICS = {
    "done": True,
    "done_reason": "stop",
    "total_duration": 912000000,
    "load_duration": 31000000,
    "prompt_eval_count": 160,
    "prompt_eval_duration": 25000000,
    "eval_count": 21,
    "eval_duration": 120000000,
}


def chat_chunk(**message: object) -> dict[str, object]:
    return {
        "model": "qwen3:8b",
        "created_at": "2026-08-20T10:00:00Z",
        "message": {"role": "assistant", "content": "", **message},
        "done": False,
    }


# -- chunks --------------------------------------------------------------------------------------


def test_chat_stream_with_thinking_and_tools() -> None:
    # The reference's streaming example (Ollama API §3.3).
    thinking = local_chunk_to_delta(chat_chunk(thinking="Need weather"), None)
    assert (thinking.thinking, thinking.content, thinking.done) == ("Need weather", "", False)
    tools = local_chunk_to_delta(
        chat_chunk(
            tool_calls=[
                {
                    "id": "call_k3j9x0qa",
                    "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Tokyo"}},
                }
            ]
        ),
        None,
    )
    assert tools.tool_calls == [
        ToolCall(name="get_weather", arguments={"city": "Tokyo"}, id="call_k3j9x0qa")
    ]
    final_chunk = {
        "model": "qwen3:8b",
        "created_at": "...",
        "message": {"role": "assistant", "content": ""},
        **FINAL_METRICS,
    }
    final = local_chunk_to_delta(final_chunk, None)
    assert final.done
    assert final.done_reason == "stop"
    assert final.model == "qwen3:8b"
    assert (final.prompt_tokens, final.completion_tokens) == (160, 21)
    assert (final.total_duration_ns, final.load_duration_ns) == (912000000, 31000000)
    assert (final.prompt_eval_duration_ns, final.eval_duration_ns) == (25000000, 120000000)
    assert final.context is None


def test_generate_chunks_with_thinking_and_context() -> None:
    # The reference's generate example (Ollama API §3.2).
    first = {"model": "deepseek-r1:8b", "response": "", "thinking": "The user", "done": False}
    answer = {"model": "deepseek-r1:8b", "response": "4", "done": False}
    last = {
        "model": "deepseek-r1:8b",
        "response": "",
        "context": [151644, 17, 10, 17],
        **FINAL_METRICS,
    }
    deltas = [local_chunk_to_delta(c, None, operation="generate") for c in (first, answer, last)]
    assert [(d.thinking, d.content) for d in deltas[:2]] == [("The user", ""), ("", "4")]
    assert deltas[2].context == [151644, 17, 10, 17]
    assert deltas[2].done
    assert deltas[2].prompt_tokens == 160


def test_non_final_chunk_has_no_counters() -> None:
    chunk = {"model": "m", "response": "x", "done": False, "eval_count": 3}
    delta = local_chunk_to_delta(chunk, None, operation="generate")
    assert not delta.done
    assert delta.completion_tokens is None


def test_inline_think_from_an_old_server_is_split_across_chunks() -> None:
    splitter = ThinkSplitter(thinking_model=True)
    pieces = ["<thi", "nk>\nCount", " the r's.\n</th", "ink>\n\nThree."]
    deltas = [local_chunk_to_delta(chat_chunk(content=p), splitter) for p in pieces]
    last = {"model": "m", "message": {"role": "assistant", "content": ""}, **FINAL_METRICS}
    deltas.append(local_chunk_to_delta(last, splitter))
    assert "".join(d.thinking for d in deltas) == "Count the r's."
    assert "".join(d.content for d in deltas) == "Three."
    assert deltas[-1].done


def test_held_partial_tag_is_flushed_on_the_final_chunk() -> None:
    splitter = ThinkSplitter()
    first = local_chunk_to_delta(chat_chunk(content="Answer: a <"), splitter)
    assert first.content == "Answer: a <"  # no block at the start: nothing is held
    splitter = ThinkSplitter()
    held = local_chunk_to_delta(chat_chunk(content="<thi"), splitter)
    assert held.content == ""
    last = {"model": "m", "message": {"role": "assistant", "content": ""}, **FINAL_METRICS}
    assert local_chunk_to_delta(last, splitter).content == "<thi"


def test_server_separated_thinking_switches_the_splitter_off() -> None:
    # A thinking model on a new server: reasoning in the field, then plain answer text,
    # which an implicit-<think> splitter must not take for reasoning.
    splitter = ThinkSplitter(thinking_model=True)
    a = local_chunk_to_delta(chat_chunk(thinking="Reasoning"), splitter)
    b = local_chunk_to_delta(chat_chunk(content="The answer"), splitter)
    assert (a.thinking, a.content) == ("Reasoning", "")
    assert (b.thinking, b.content) == ("", "The answer")


# -- NDJSON lines and their shapes ------------------------------------------------------------


def test_ndjson_lines_are_whole_however_the_bytes_arrive() -> None:
    stream = b'{"a": 1}\n{"b": "x\xc3\xa9"}\r\n\n{"c": 3}'
    for size in (1, 2, 3, 7, len(stream)):
        lines = NdjsonLines()
        out: list[bytes] = []
        for i in range(0, len(stream), size):
            out += lines.feed(stream[i : i + size])
        last = lines.finish()
        assert out == [b'{"a": 1}', b'{"b": "x\xc3\xa9"}\r', b""]
        assert last == b'{"c": 3}'


def test_a_line_is_parsed_as_the_official_client_reads_it() -> None:
    assert parse_local_line(b'{"response": "caf\xc3\xa9"}\r') == {"response": "café"}
    assert parse_local_line(b'{"response": "\xff"}') == {"response": "\ufffd"}
    assert parse_local_line(b'  {"done": true}  ') == {"done": True}
    for broken in (b"", b"{", b'{"done": true} {"done": true}', b'{"done": true}x'):
        with pytest.raises(json.JSONDecodeError):
            parse_local_line(broken)
    with pytest.raises(ollama.ResponseError) as caught:
        parse_local_line(b'{"error": "model runner crashed"}')
    assert (caught.value.error, caught.value.status_code) == ("model runner crashed", -1)


@pytest.mark.parametrize(
    ("line", "operation", "field"),
    [
        (b'["not", "an", "object"]', "chat", "the line"),
        (b'"text"', "chat", "the line"),
        (b'{"done": false}', "chat", "message"),
        (b'{"message": "hi", "done": false}', "chat", "message"),
        (b'{"message": {"content": 42}, "done": false}', "chat", "message.content"),
        (b'{"message": {"thinking": []}, "done": false}', "chat", "message.thinking"),
        (b'{"message": {"tool_calls": {}}, "done": false}', "chat", "message.tool_calls"),
        (
            b'{"message": {"tool_calls": [{"function": {"arguments": {}}}]}, "done": false}',
            "chat",
            "message.tool_calls[0].function.name",
        ),
        (b'{"message": {"content": ""}, "done": "yes"}', "chat", "done"),
        (b'{"response": 1, "done": false}', "generate", "response"),
        (b'{"response": "", "context": ["a"], "done": true}', "generate", "context"),
        (b'{"response": "", "done": true, "eval_count": "many"}', "generate", "eval_count"),
    ],
)
def test_a_chunk_of_the_wrong_shape_is_a_server_error_naming_the_field(
    line: bytes, operation: Literal["chat", "generate"], field: str
) -> None:
    with pytest.raises(ShapeError) as caught:
        local_chunk_to_delta(parse_local_line(line), None, operation=operation)
    assert caught.value.path == field
    error = classify(caught.value)
    assert type(error) is ServerError
    assert "unexpected shape" in str(error)
    assert field in str(error)


def test_fields_the_decoder_does_not_read_are_not_checked() -> None:
    chunk = {
        "message": {"role": "assistant", "content": "hi", "images": 3},
        "done": False,
        "created_at": 1,
        "logprobs": "x",
    }
    assert local_chunk_to_delta(chunk).content == "hi"
    whole = {"response": "", "done": True, "eval_count": 21.0, "total_duration": None}
    final = local_chunk_to_delta(whole, operation="generate")
    assert (final.completion_tokens, final.total_duration_ns) == (21, None)


# -- messages ------------------------------------------------------------------------------------


def test_to_ollama_messages_normalises_models_and_dicts() -> None:
    messages = [
        ollama.Message(
            role="assistant",
            content="",
            tool_calls=[
                ollama.Message.ToolCall(
                    function=ollama.Message.ToolCall.Function(name="f", arguments={"x": 1})
                )
            ],
        ),
        {"role": "TOOL", "content": "ok", "tool_name": "f", "thinking": None},
    ]
    assert to_ollama_messages(messages) == [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
        },
        {"role": "tool", "content": "ok", "tool_name": "f"},
    ]
    assert to_ollama_messages(None) == []


# -- errors --------------------------------------------------------------------------------------


def classify(exc: BaseException, **kwargs: object) -> object:
    error = classify_local_error(exc, host=HOST, **kwargs)  # type: ignore[arg-type]
    assert error.__cause__ is exc
    return error


def test_404_model_not_found() -> None:
    error = classify(ollama.ResponseError("model 'deepseek-r1:99b' not found", 404))
    assert isinstance(error, ModelNotFoundError)
    assert error.model == "deepseek-r1:99b"
    assert "dsollama pull deepseek-r1:99b" in (error.hint or "")


def test_404_model_not_found_uses_the_requested_name() -> None:
    error = classify(
        ollama.ResponseError('{"error":"model \\"x\\" not found, try pulling it first"}', 404),
        model="x:latest",
    )
    assert isinstance(error, ModelNotFoundError)
    assert error.model == "x:latest"


def test_503_is_busy() -> None:
    error = classify(
        ollama.ResponseError(
            "server busy, please try again.  maximum pending requests exceeded", 503
        )
    )
    assert isinstance(error, BusyError)
    assert error.status_code == 503


def test_500_is_a_server_error() -> None:
    error = classify(
        ollama.ResponseError("llama-server process has terminated: exit status 2", 500)
    )
    assert type(error) is ServerError
    assert error.status_code == 500


def test_error_line_mid_stream_is_a_server_error() -> None:
    error = classify(ollama.ResponseError("model runner has unexpectedly stopped"))
    assert type(error) is ServerError
    assert "mid-answer" in str(error)


@pytest.mark.parametrize(
    ("message", "hint_word"),
    [
        ('"llama3.2" does not support thinking', "think"),
        ("registry.ollama.ai/library/gemma:2b does not support tools", "tools"),
        ("registry.ollama.ai/library/llama3.2:latest does not support insert", "suffix"),
    ],
)
def test_capability_400s_are_bad_requests_with_a_hint(message: str, hint_word: str) -> None:
    error = classify(ollama.ResponseError(message, 400))
    assert type(error) is BadRequestError
    assert hint_word in (error.hint or "")


def test_prompt_longer_than_context_is_a_context_overflow() -> None:
    message = (
        "the prompt is longer than the context length currently available to the model; shorten the "
        "prompt, adjust the context length in settings, or use a model with a longer context length"
    )
    error = classify(ollama.ResponseError(message, 400), model="deepseek-v2:16b")
    assert isinstance(error, ContextOverflowError)
    assert isinstance(error, BadRequestError)  # still a bad request for this route
    assert error.model == "deepseek-v2:16b"
    # The router's policy also recognises it by the server's words: keep them.
    assert "longer than the context length" in error.message


def test_other_400_is_a_plain_bad_request() -> None:
    error = classify(ollama.ResponseError("top_logprobs must be between 0 and 20", 400))
    assert type(error) is BadRequestError
    assert error.hint is None


def test_builtin_connection_error_is_unreachable() -> None:
    error = classify(
        ConnectionError(
            "Failed to connect to Ollama. Please check that Ollama is downloaded, running and accessible."
        )
    )
    assert isinstance(error, DaemonUnreachableError)
    assert error.host == HOST


def test_httpx_connect_error_is_unreachable() -> None:
    error = classify(httpx.ConnectError("All connection attempts failed"))
    assert isinstance(error, DaemonUnreachableError)


def test_connection_reset_is_incomplete_not_unreachable() -> None:
    error = classify(ConnectionResetError(104, "Connection reset by peer"), partial_text="abc")
    assert isinstance(error, IncompleteResponseError)
    assert error.partial_text == "abc"


@pytest.mark.parametrize(
    ("exc", "phase"),
    [
        (httpx.PoolTimeout("timed out"), "connect"),
        (httpx.ReadTimeout("timed out"), "first_token"),
    ],
)
def test_timeouts_name_their_phase(exc: httpx.TimeoutException, phase: str) -> None:
    error = classify(exc, read_phase="first_token")
    assert isinstance(error, BackendTimeoutError)
    assert error.phase == phase


def test_a_connect_timeout_is_a_daemon_nobody_answers_for() -> None:
    error = classify(httpx.ConnectTimeout("timed out"))
    assert isinstance(error, DaemonUnreachableError)
    assert "connection timed out" in str(error)


def test_read_timeout_defaults_to_the_gap_phase() -> None:
    error = classify(httpx.ReadTimeout("timed out"))
    assert isinstance(error, BackendTimeoutError)
    assert error.phase == "gap"


@pytest.mark.parametrize(
    "exc", [httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("reset")]
)
def test_broken_streams_are_incomplete_with_the_partial_text(exc: httpx.HTTPError) -> None:
    error = classify(exc, partial_text="The answer is")
    assert isinstance(error, IncompleteResponseError)
    assert error.partial_text == "The answer is"


def test_blank_ndjson_line_is_a_malformed_line() -> None:
    try:
        json.loads("")
    except json.JSONDecodeError as exc:
        error = classify(exc)
    assert type(error) is ServerError
    assert "malformed line" in str(error)


def test_validation_error_is_a_server_error() -> None:
    try:
        ollama.ChatResponse.model_validate({"model": "m", "done": False})
    except pydantic.ValidationError as exc:
        error = classify(exc)
    assert type(error) is ServerError
    assert "unexpected shape" in str(error)


def test_every_local_error_class_is_mapped_to_something_specific() -> None:
    samples = [
        ollama.ResponseError("x", 500),
        ConnectionError("x"),
        httpx.ConnectError("x"),
        json.JSONDecodeError("Expecting value", "", 0),
    ]
    for sample in samples:
        assert isinstance(sample, LOCAL_ERRORS)
        assert "unexpected" not in str(classify(sample))


def test_unknown_exceptions_still_become_backend_errors() -> None:
    error = classify(RuntimeError("boom"))
    assert type(error) is ServerError
    assert "RuntimeError" in str(error)


def test_messages_are_redacted() -> None:
    error = classify(ollama.ResponseError("bad header Bearer sk-secret-123456", 500))
    assert "sk-secret" not in str(error)


def test_to_ollama_messages_keeps_images_for_the_client_to_encode() -> None:
    image = ollama.Image(value="aGVsbG8=")
    plain = to_ollama_messages([ollama.Message(role="user", content="look", images=[image])])
    assert plain[0]["images"] == [image]
