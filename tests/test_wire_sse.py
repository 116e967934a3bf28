"""SSE framing: data events, [DONE], keep-alive comments, malformed and error payloads."""

from __future__ import annotations

import doctest
import json

import pytest

from dsollama._exceptions import BadRequestError, BusyError, ServerError
from dsollama._wire import sse
from dsollama._wire.hosted_response import HostedStreamDecoder
from dsollama._wire.sse import Comment, Data, Done, SSEParser

META = '"id":"1f63","object":"chat.completion.chunk","created":1718345013,"model":"deepseek-v4-pro","system_fingerprint":"fp_a49d71b8a1"'

# The thinking-mode example of the DeepSeek reference (§2.5), queued first, as lines.
THINKING_STREAM = [
    ": keep-alive",
    "",
    ": keep-alive",
    "",
    "data: {"
    + META
    + ',"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}],"usage":null}',
    "",
    "data: {"
    + META
    + ',"choices":[{"index":0,"delta":{"content":null,"reasoning_content":"9.11 vs 9.8 …"},"logprobs":null,"finish_reason":null}],"usage":null}',
    "",
    "data: {"
    + META
    + ',"choices":[{"index":0,"delta":{"content":"9.8 is greater."},"logprobs":null,"finish_reason":null}],"usage":null}',
    "",
    "data: {"
    + META
    + ',"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":120,"total_tokens":137,"prompt_tokens_details":{"cached_tokens":0},"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":17,"completion_tokens_details":{"reasoning_tokens":110}}}',
    "",
    "data: [DONE]",
    "",
]


def test_doctests() -> None:
    assert doctest.testmod(sse).failed == 0


def test_reference_stream_events() -> None:
    parser = SSEParser()
    events = parser.feed_lines(THINKING_STREAM)
    assert events[:2] == [Comment("keep-alive"), Comment("keep-alive")]
    assert [type(e) for e in events[2:]] == [Data, Data, Data, Data, Done]
    first = events[2]
    assert isinstance(first, Data)
    assert first.payload["choices"][0]["delta"]["role"] == "assistant"
    assert parser.keepalives_before_data == 2
    assert parser.comments == 2
    assert parser.data_events == 4
    assert parser.done


def test_reference_stream_decodes_end_to_end() -> None:
    parser = SSEParser()
    decoder = HostedStreamDecoder()
    deltas = []
    for event in parser.feed_lines(THINKING_STREAM):
        if isinstance(event, Data):
            deltas.extend(decoder.feed(event.payload))
        elif isinstance(event, Done):
            deltas.extend(decoder.finish(keepalives=parser.keepalives_before_data))
    assert "".join(d.thinking for d in deltas) == "9.11 vs 9.8 …"
    assert "".join(d.content for d in deltas) == "9.8 is greater."
    assert deltas[-1].done
    assert deltas[-1].done_reason == "stop"
    assert deltas[-1].completion_tokens == 120


def test_keepalives_after_data_are_not_counted_as_queueing() -> None:
    parser = SSEParser()
    parser.feed_lines([": keep-alive", 'data: {"choices": []}', ": keep-alive"])
    assert parser.keepalives_before_data == 1
    assert parser.comments == 2


def test_data_without_space_and_crlf() -> None:
    parser = SSEParser()
    assert parser.feed_line('data:{"a":1}\r') == Data({"a": 1})
    assert parser.feed_line("data:[DONE]") == Done()


def test_blank_lines_and_other_fields_give_no_event() -> None:
    parser = SSEParser()
    for line in ("", "id: 7", "event: message", "retry: 1000", "\r", "unknownfield: x"):
        assert parser.feed_line(line) is None
    assert parser.data_events == 0


def test_byte_order_mark_on_first_line() -> None:
    assert SSEParser().feed_line('\ufeffdata: {"a": 2}') == Data({"a": 2})


@pytest.mark.parametrize("payload", ["{not json", "{'single': 'quotes'}", ""])
def test_data_that_is_not_json_is_malformed(payload: str) -> None:
    with pytest.raises(ServerError, match="malformed hosted stream"):
        SSEParser(route="hosted").feed_line(f"data: {payload}")


@pytest.mark.parametrize("payload", ["[1, 2]", '"text"', "42"])
def test_data_that_is_json_but_not_an_object_is_malformed(payload: str) -> None:
    with pytest.raises(ServerError, match="not an object"):
        SSEParser().feed_line(f"data: {payload}")


def test_malformed_message_is_redacted() -> None:
    with pytest.raises(ServerError) as info:
        SSEParser(secrets=["hunter2secret"]).feed_line("data: oops sk-abcdefghijkl hunter2secret")
    assert "sk-abcdefghijkl" not in str(info.value)
    assert "hunter2secret" not in str(info.value)


def test_error_object_with_a_status_code_is_classified_like_the_status() -> None:
    line = "data: " + json.dumps({"error": {"message": "Server Overloaded", "code": 503}})
    with pytest.raises(BusyError) as info:
        SSEParser().feed_line(line)
    assert info.value.status_code == 503
    assert "Server Overloaded" in str(info.value)


def test_error_object_with_a_400_code_is_a_bad_request() -> None:
    line = "data: " + json.dumps({"error": {"message": "bad", "code": "400"}})
    with pytest.raises(BadRequestError):
        SSEParser().feed_line(line)


def test_error_object_without_a_status_is_a_server_error() -> None:
    line = "data: " + json.dumps(
        {"error": {"message": "upstream died", "type": "api_error", "code": None}}
    )
    with pytest.raises(ServerError, match="upstream died") as info:
        SSEParser().feed_line(line)
    assert not isinstance(info.value, BusyError)


def test_error_object_of_overload_type_is_busy() -> None:
    line = "data: " + json.dumps({"error": {"message": "slow down", "type": "overloaded_error"}})
    with pytest.raises(BusyError):
        SSEParser().feed_line(line)


def test_bare_json_error_line_is_classified() -> None:
    # A server that answers an error as plain JSON where SSE was expected.
    with pytest.raises(BusyError):
        SSEParser().feed_line(json.dumps({"error": {"message": "busy", "code": 429}}))


@pytest.mark.parametrize(
    "payload",
    [
        {"error": {}},  # an empty error object is still an error, not a chunk to skip
        {"error": ""},
        {"object": "error", "message": "boom", "type": "InternalServerError", "code": 500},
    ],
)
def test_every_error_shape_on_a_data_line_is_raised(payload: dict[str, object]) -> None:
    with pytest.raises(ServerError):
        SSEParser().feed_line("data: " + json.dumps(payload))


def test_a_vllm_bare_error_object_is_classified_by_its_code() -> None:
    line = "data: " + json.dumps({"object": "error", "message": "busy", "code": 503})
    with pytest.raises(BusyError) as info:
        SSEParser().feed_line(line)
    assert info.value.status_code == 503


def test_an_error_line_mid_stream_ends_the_stream() -> None:
    # Nothing after an in-band error counts: the parser raises on the error line itself.
    parser = SSEParser()
    lines = [
        'data: {"choices": [{"index": 0, "delta": {"content": "Part"}}]}',
        "",
        'data: {"error": {"message": "Too many requests", "code": 429}}',
        "",
        'data: {"choices": [{"index": 0, "delta": {"content": "more"}, "finish_reason": "stop"}]}',
    ]
    with pytest.raises(BusyError):
        parser.feed_lines(lines)
    assert parser.data_events == 1
