"""Ollama-shaped requests → DeepSeek requests, answers → Deltas, HTTP errors → dsollama errors."""

from __future__ import annotations

import copy
import datetime as dt
import doctest
import json
from typing import Any

import ollama
import pytest

from dsollama._delta import Delta, ToolCall
from dsollama._exceptions import (
    BadRequestError,
    BusyError,
    HostedAuthError,
    HostedBalanceError,
    IncompleteResponseError,
    InsufficientResourceError,
    ServerError,
    UnsupportedRequestError,
)
from dsollama._routing.policy import Action, classify
from dsollama._wire import hosted_errors, hosted_request, hosted_response, hosted_shapes
from dsollama._wire.hosted_errors import classify_hosted_error
from dsollama._wire.hosted_request import (
    BETA_CHAT_PATH,
    CHAT_PATH,
    FIM_PATH,
    HostedRequest,
    build_chat_request,
    build_continuation_request,
    build_generate_request,
)
from dsollama._wire.hosted_response import (
    HostedStreamDecoder,
    answer_framing,
    decode_hosted_response,
    parse_hosted_body,
)
from dsollama._wire.reasoning import ThinkSplitter

USER = [{"role": "user", "content": "hi"}]


def chat(messages: Any = None, **kwargs: Any) -> HostedRequest:
    kwargs.setdefault("hosted_model", "deepseek-flash")
    kwargs.setdefault("thinking_default", False)
    return build_chat_request(USER if messages is None else messages, **kwargs)


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "1f63",
        "object": "chat.completion.chunk",
        "created": 1718345013,
        "model": "deepseek-v4-pro",
        "choices": choices,
        "usage": usage,
    }


USAGE = {
    "prompt_tokens": 17,
    "completion_tokens": 120,
    "total_tokens": 137,
    "prompt_tokens_details": {"cached_tokens": 0},
    "prompt_cache_hit_tokens": 0,
    "prompt_cache_miss_tokens": 17,
    "completion_tokens_details": {"reasoning_tokens": 110},
}


def run(decoder: HostedStreamDecoder, chunks: list[dict[str, Any]]) -> list[Delta]:
    out: list[Delta] = []
    for c in chunks:
        out.extend(decoder.feed(c))
    out.extend(decoder.finish())
    return out


def test_doctests() -> None:
    for module in (hosted_errors, hosted_request, hosted_response):
        assert doctest.testmod(module).failed == 0


# -- think ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("think", "default", "thinking", "effort"),
    [
        (None, False, "disabled", None),  # a non-thinking local model says so explicitly
        (None, True, "enabled", None),
        (True, False, "enabled", None),
        (False, True, "disabled", None),
        ("low", False, "enabled", "low"),
        ("medium", False, "enabled", "high"),
        ("high", False, "enabled", "high"),
        ("max", False, "enabled", "max"),
    ],
)
def test_think_maps_to_the_thinking_switch(
    think: Any, default: bool, thinking: str, effort: str | None
) -> None:
    request = chat(think=think, thinking_default=default)
    assert request.body["thinking"] == {"type": thinking}
    assert request.body.get("reasoning_effort") == effort
    assert request.thinking == (thinking == "enabled")
    assert request.path == CHAT_PATH


def test_medium_effort_is_noted() -> None:
    assert any(n.startswith("think:") for n in chat(think="medium").unsupported)


def test_invalid_think_value() -> None:
    with pytest.raises(BadRequestError, match="invalid think value"):
        chat(think="extreme")


# -- options -------------------------------------------------------------------------------


def test_honoured_options() -> None:
    request = chat(
        options={"temperature": 0.3, "top_p": 0.9, "num_predict": 256, "stop": ["\n\n", "END"]}
    )
    body = request.body
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.3, 0.9, 256)
    assert body["stop"] == ["\n\n", "END"]
    assert request.unsupported == []


@pytest.mark.parametrize("num_predict", [-1, -2])
def test_unlimited_num_predict_is_omitted(num_predict: int) -> None:
    assert "max_tokens" not in chat(options={"num_predict": num_predict}).body


def test_ollama_options_object_is_accepted() -> None:
    request = chat(options=ollama.Options(temperature=0.2, seed=42, num_ctx=8192))
    assert request.body["temperature"] == 0.2
    assert "seed" not in request.body
    assert "num_ctx" not in request.body
    names = {n.split(":")[0] for n in request.unsupported}
    assert names == {"seed", "num_ctx"}


def test_options_without_hosted_equivalent_are_listed_never_dropped_silently() -> None:
    local_only = {
        "seed": 1,
        "top_k": 40,
        "min_p": 0.05,
        "typical_p": 1.0,
        "repeat_penalty": 1.1,
        "repeat_last_n": 64,
        "num_ctx": 32768,
        "num_keep": 4,
        "num_batch": 512,
        "num_gpu": 99,
        "num_thread": 8,
        "use_mmap": True,
        "mystery_knob": 3,
    }
    request = chat(options=local_only)
    listed = {n.split(":")[0] for n in request.unsupported}
    assert listed == set(local_only)
    assert not set(local_only) & set(request.body)


def test_penalties_are_sent_but_noted() -> None:
    request = chat(options={"presence_penalty": 0.5, "frequency_penalty": 0.1})
    assert request.body["presence_penalty"] == 0.5
    assert request.body["frequency_penalty"] == 0.1
    assert all("no effect" in n for n in request.unsupported)
    assert len(request.unsupported) == 2


def test_sampling_knobs_are_noted_as_ignored_in_thinking_mode() -> None:
    thinking = chat(think=True, options={"temperature": 0.1, "top_p": 0.5})
    assert thinking.body["temperature"] == 0.1  # still sent; DeepSeek accepts it
    assert "temperature: ignored in thinking mode" in thinking.unsupported
    assert "top_p: ignored in thinking mode" in thinking.unsupported
    assert chat(think=False, options={"temperature": 0.1}).unsupported == []


def test_out_of_range_values_are_clamped_and_noted() -> None:
    request = chat(options={"temperature": 3.5})
    assert request.body["temperature"] == 2.0
    assert any("temperature" in n and "2" in n for n in request.unsupported)


def test_at_most_sixteen_stop_strings() -> None:
    request = chat(options={"stop": [f"s{i}" for i in range(20)]})
    assert request.body["stop"] == [f"s{i}" for i in range(16)]
    assert any(n.startswith("stop:") for n in request.unsupported)


def test_stream_asks_for_usage() -> None:
    assert chat(stream=True).body["stream_options"] == {"include_usage": True}
    body = chat(stream=False).body
    assert body["stream"] is False
    assert "stream_options" not in body


# -- format ----------------------------------------------------------------------------------


def test_json_format_adds_the_word_json_when_missing() -> None:
    request = chat(format="json")
    assert request.body["response_format"] == {"type": "json_object"}
    first = request.body["messages"][0]
    assert first["role"] == "system"
    assert "json" in first["content"].lower()
    assert request.schema is None


def test_json_format_leaves_a_prompt_that_mentions_json_alone() -> None:
    messages = [{"role": "user", "content": "Reply in JSON please"}]
    assert chat(messages, format="json").body["messages"] == messages


def test_schema_format_goes_in_a_system_instruction_and_is_returned() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "count"}]
    request = chat(messages, format=schema)
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.schema == schema
    system = request.body["messages"][0]
    assert system["content"].startswith("Be terse.")
    assert json.dumps(schema) in system["content"]
    assert len(request.body["messages"]) == 2  # merged into the existing system message
    assert messages[0]["content"] == "Be terse."  # the caller's messages are untouched


def test_invalid_format_string() -> None:
    with pytest.raises(BadRequestError, match="invalid format"):
        chat(format="yaml")


def test_empty_format_does_nothing() -> None:
    assert "response_format" not in chat(format="").body


# -- messages ------------------------------------------------------------------------------


def test_images_cannot_go_to_the_hosted_route() -> None:
    with pytest.raises(UnsupportedRequestError, match="images"):
        chat([{"role": "user", "content": "what is this?", "images": ["aGVsbG8="]}])
    with pytest.raises(UnsupportedRequestError, match="images"):
        chat(
            [
                ollama.Message(
                    role="user", content="and this?", images=[ollama.Image(value=b"\x89PNG")]
                )
            ]
        )


def test_no_messages_is_not_a_hosted_request() -> None:
    with pytest.raises(UnsupportedRequestError):
        chat([])


TOOL_TURN = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {
        "role": "assistant",
        "content": "",
        "thinking": "Two cities, two calls.",
        "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {"tz": "Europe/Rome"}}},
        ],
    },
    # Results answer in a different order than the calls; tool_name pairs them.
    {"role": "tool", "content": "12:00", "tool_name": "get_time"},
    {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
]


def test_tool_calls_get_json_arguments_and_ids_and_results_are_paired() -> None:
    body = chat(TOOL_TURN).body
    assistant = body["messages"][1]
    calls = assistant["tool_calls"]
    assert [c["type"] for c in calls] == ["function", "function"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert isinstance(calls[1]["function"]["arguments"], str)
    ids = [c["id"] for c in calls]
    assert all(i.startswith("call_") for i in ids)
    assert len(set(ids)) == 2
    time_result, weather_result = body["messages"][2], body["messages"][3]
    assert time_result == {"role": "tool", "content": "12:00", "tool_call_id": ids[1]}
    assert weather_result == {"role": "tool", "content": "sunny", "tool_call_id": ids[0]}


def test_ollama_message_objects_are_accepted() -> None:
    messages = [
        ollama.Message(role="user", content="weather?"),
        ollama.Message(
            role="assistant",
            content="",
            tool_calls=[
                ollama.Message.ToolCall(
                    function=ollama.Message.ToolCall.Function(
                        name="get_weather", arguments={"city": "Oslo"}
                    )
                )
            ],
        ),
        ollama.Message(role="tool", content="snow", tool_name="get_weather"),
    ]
    body = chat(messages).body
    call_id = body["messages"][1]["tool_calls"][0]["id"]
    assert body["messages"][2]["tool_call_id"] == call_id


def test_existing_ids_are_kept() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_00_abc", "function": {"name": "f", "arguments": {}}}],
        },
        {"role": "tool", "content": "ok", "tool_call_id": "call_00_abc"},
    ]
    body = chat(messages).body
    assert body["messages"][1]["tool_calls"][0]["id"] == "call_00_abc"
    assert body["messages"][2]["tool_call_id"] == "call_00_abc"


def test_tool_result_without_a_call_travels_as_a_user_message() -> None:
    request = chat(
        [{"role": "user", "content": "x"}, {"role": "tool", "content": "42", "tool_name": "calc"}]
    )
    assert request.body["messages"][1] == {"role": "user", "content": "[result of tool calc]\n42"}
    assert any("no matching assistant tool call" in n for n in request.unsupported)


def test_reasoning_goes_back_only_on_tool_call_turns_in_thinking_mode() -> None:
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b", "thinking": "plain turn reasoning"},
        *TOOL_TURN,
    ]
    thinking = chat(messages, think=True).body["messages"]
    assert "reasoning_content" not in thinking[1]  # ignored by DeepSeek there: dropped
    assert thinking[3]["reasoning_content"] == "Two cities, two calls."
    plain = chat(messages, think=False).body["messages"]
    assert all("reasoning_content" not in m for m in plain)


def test_tool_call_turn_without_reasoning_gets_a_placeholder_in_thinking_mode() -> None:
    messages = copy.deepcopy(TOOL_TURN)
    del messages[1]["thinking"]
    request = chat(messages, think=True)
    reasoning = request.body["messages"][1]["reasoning_content"]
    assert reasoning.strip() == ""
    assert reasoning != ""
    assert any("placeholder" in n for n in request.unsupported)


def test_roles_are_lower_cased_and_content_none_is_empty() -> None:
    body = chat([{"role": "User", "content": None}]).body
    assert body["messages"] == [{"role": "user", "content": ""}]


# -- tools ---------------------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},
            "required": ["city"],
        },
    },
}


def test_tool_dicts_pass_through_in_openai_shape() -> None:
    assert chat(tools=[WEATHER_TOOL]).body["tools"] == [WEATHER_TOOL]


def test_ollama_tool_objects_and_functions_are_converted() -> None:
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: first
            b: second
        """
        return a + b

    tool = ollama.Tool.model_validate(WEATHER_TOOL)
    tools = chat(tools=[tool, add]).body["tools"]
    assert tools[0]["function"]["name"] == "get_weather"
    assert tools[0]["function"]["parameters"]["required"] == ["city"]
    assert tools[1]["type"] == "function"
    assert tools[1]["function"]["name"] == "add"
    assert set(tools[1]["function"]["parameters"]["properties"]) == {"a", "b"}


def test_non_function_tools_are_refused() -> None:
    with pytest.raises(UnsupportedRequestError, match="only 'function'"):
        chat(tools=[{"type": "retrieval", "function": {"name": "x"}}])


# -- generate -------------------------------------------------------------------------------


def gen(**kwargs: Any) -> HostedRequest:
    kwargs.setdefault("hosted_model", "deepseek-flash")
    kwargs.setdefault("thinking_default", False)
    return build_generate_request(**kwargs)


def test_generate_becomes_a_chat() -> None:
    request = gen(prompt="Why is the sky blue?", system="Be brief.", think=True, stream=True)
    assert request.path == CHAT_PATH
    assert request.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    assert request.body["thinking"] == {"type": "enabled"}
    assert request.body["stream_options"] == {"include_usage": True}


def test_generate_with_suffix_is_fim_on_the_beta_base() -> None:
    request = gen(
        prompt="def add(a, b):\n",
        suffix="\n\nprint(add(1, 2))",
        options={"num_predict": 9000, "temperature": 0.2},
        think=True,
    )
    assert request.path == FIM_PATH
    assert request.kind == "completion"
    assert request.body["prompt"] == "def add(a, b):\n"
    assert request.body["suffix"] == "\n\nprint(add(1, 2))"
    assert request.body["max_tokens"] == 4096
    assert request.body["temperature"] == 0.2
    assert "thinking" not in request.body
    assert "messages" not in request.body
    assert any(n.startswith("num_predict") for n in request.unsupported)
    assert any(n.startswith("think:") for n in request.unsupported)


def test_generate_notes_what_cannot_be_honoured() -> None:
    request = gen(prompt="go on", template="{{ .Prompt }}", context=[1, 2, 3], raw=True)
    names = [n.split(":")[0] for n in request.unsupported]
    assert names[:3] == ["template", "context", "raw"]


def test_generate_with_images_is_refused() -> None:
    with pytest.raises(UnsupportedRequestError):
        gen(prompt="describe", images=["aGVsbG8="])


def test_generate_with_empty_prompt_is_refused() -> None:
    with pytest.raises(UnsupportedRequestError, match="loads a local model"):
        gen(prompt="")


# -- continuation -----------------------------------------------------------------------------


def test_continuation_uses_chat_prefix_completion() -> None:
    original = chat(think=True, stream=True, options={"stop": ["```"]})
    before = copy.deepcopy(original.body)
    cont = build_continuation_request(original, "The answer is", "Let me think")
    assert cont.path == BETA_CHAT_PATH
    assert cont.body["messages"][:-1] == original.body["messages"]
    assert cont.body["messages"][-1] == {
        "role": "assistant",
        "content": "The answer is",
        "prefix": True,
        "reasoning_content": "Let me think",
    }
    assert cont.body["stop"] == ["```"]
    assert cont.body["stream"] is True
    assert original.body == before


def test_continuation_without_thinking_has_no_reasoning_content() -> None:
    cont = build_continuation_request(chat(think=False), "Hello", "ignored")
    assert "reasoning_content" not in cont.body["messages"][-1]


def test_continuation_past_reasoning_without_any_turns_thinking_off() -> None:
    cont = build_continuation_request(chat(think="high"), "Partial answer", "")
    assert cont.body["thinking"] == {"type": "disabled"}
    assert "reasoning_effort" not in cont.body
    assert "reasoning_content" not in cont.body["messages"][-1]


def test_continuation_of_a_continuation_replaces_the_prefix() -> None:
    first = build_continuation_request(chat(), "Hel")
    second = build_continuation_request(first, "Hello wor")
    assert [m.get("prefix") for m in second.body["messages"]].count(True) == 1
    assert second.body["messages"][-1]["content"] == "Hello wor"


def test_fim_continuation_extends_the_prompt() -> None:
    original = gen(prompt="def f():\n", suffix="\nf()")
    cont = build_continuation_request(original, "    return 1")
    assert cont.path == FIM_PATH
    assert cont.body["prompt"] == "def f():\n    return 1"
    assert cont.body["suffix"] == "\nf()"


# -- stream decoding ----------------------------------------------------------------------------


def test_thinking_stream_with_usage_on_the_finish_chunk() -> None:
    decoder = HostedStreamDecoder()
    deltas = run(
        decoder,
        [
            chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
            chunk({"content": None, "reasoning_content": "9.11 vs 9.8 …"}),
            chunk({"content": "9.8 is greater."}),
            chunk({"content": ""}, finish="stop", usage=USAGE),
        ],
    )
    assert [(d.thinking, d.content) for d in deltas[:-1]] == [
        ("9.11 vs 9.8 …", ""),
        ("", "9.8 is greater."),
    ]
    final = deltas[-1]
    assert final.done
    assert final.done_reason == "stop"
    assert not final.has_output
    assert (
        final.prompt_tokens,
        final.completion_tokens,
        final.reasoning_tokens,
        final.cached_tokens,
    ) == (17, 120, 110, 0)
    assert final.model == "deepseek-v4-pro"
    assert decoder.done


def test_final_delta_is_emitted_as_soon_as_finish_and_usage_are_known() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"content": "x"}))
    emitted = decoder.feed(chunk({"content": ""}, finish="stop", usage=USAGE))
    assert emitted[-1].done  # no need to wait for [DONE]
    assert decoder.finish() == []


def test_usage_in_a_separate_choices_empty_chunk() -> None:
    # The documented variant: finish chunk with usage null, then choices [] + usage.
    decoder = HostedStreamDecoder()
    assert decoder.feed(chunk({"content": "Hi"})) == [Delta(content="Hi")]
    assert decoder.feed(chunk({"content": ""}, finish="stop", usage=None)) == []
    final = decoder.feed(
        chunk(
            None,
            usage={
                "prompt_tokens": 5,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 3},
            },
        )
    )
    assert len(final) == 1
    assert final[0].done
    assert (final[0].prompt_tokens, final[0].completion_tokens, final[0].cached_tokens) == (5, 2, 3)


def test_null_usage_never_replaces_a_real_one() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 1}))
    deltas = decoder.feed(chunk({"content": "ok"}, finish="length", usage=None))
    assert deltas[-1].done
    assert deltas[-1].done_reason == "length"
    assert deltas[-1].prompt_tokens == 9


def test_stream_without_usage_ends_at_done() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"content": "ok"}, finish="stop"))
    final = decoder.finish()
    assert final[0].done
    assert final[0].prompt_tokens is None


def test_tool_call_fragments_are_assembled_by_index() -> None:
    decoder = HostedStreamDecoder()
    frags = [
        chunk({"role": "assistant", "content": ""}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_00_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_01_b",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]}),
        chunk({"content": ""}, finish="tool_calls", usage=USAGE),
    ]
    deltas = run(decoder, frags)
    calls = [c for d in deltas for c in d.tool_calls]
    assert calls == [
        ToolCall(name="get_weather", arguments={"city": "Paris"}, id="call_00_a"),
        ToolCall(name="get_time", arguments={}, id="call_01_b"),
    ]
    assert deltas[-1].done_reason == "tool_calls"


def test_invalid_tool_arguments_are_kept_raw_and_round_trip() -> None:
    decoder = HostedStreamDecoder()
    deltas = run(
        decoder,
        [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_00_x",
                            "function": {"name": "f", "arguments": '{"a": 1,'},
                        }
                    ]
                }
            ),
            chunk({}, finish="tool_calls"),
        ],
    )
    call = deltas[0].tool_calls[0]
    assert call.arguments == {"_raw": '{"a": 1,'}
    # Sent back in the next turn, the exact string goes out again.
    history = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": call.id, "function": {"name": call.name, "arguments": call.arguments}}
            ],
        },
    ]
    sent = chat(history).body["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"a": 1,'


def test_tool_call_round_trip() -> None:
    original = {
        "name": "get_weather",
        "arguments": {"city": "Zürich", "days": 3, "units": ["C"], "deep": {"x": None}},
    }
    request = chat(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "", "tool_calls": [{"function": original}]},
        ]
    )
    wire = request.body["messages"][1]["tool_calls"][0]
    # The server answers with exactly that call (non-streaming and streaming).
    body = {
        "model": "deepseek-flash",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "", "tool_calls": [wire]},
                "finish_reason": "tool_calls",
            }
        ],
    }
    decoded = decode_hosted_response(body)[0].tool_calls[0]
    assert (decoded.name, decoded.arguments) == (original["name"], original["arguments"])
    streamed = run(
        HostedStreamDecoder(),
        [chunk({"tool_calls": [{"index": 0, **wire}]}), chunk({}, finish="tool_calls")],
    )
    assert streamed[0].tool_calls[0] == decoded


def test_insufficient_system_resource_is_a_transient_error_with_the_partial_text() -> None:
    decoder = HostedStreamDecoder(route="hosted")
    decoder.feed(chunk({"reasoning_content": "Thinking…"}))
    decoder.feed(chunk({"content": "Part"}))
    with pytest.raises(InsufficientResourceError) as info:
        decoder.feed(chunk({"content": "ial"}, finish="insufficient_system_resource", usage=USAGE))
    error = info.value
    assert isinstance(error, ServerError)
    assert error.partial_text == "Partial"
    assert error.partial_thinking == "Thinking…"
    assert error.route == "hosted"


def test_content_filter_is_a_done_reason() -> None:
    deltas = run(HostedStreamDecoder(), [chunk({"content": "Sorry"}, finish="content_filter")])
    assert deltas[-1].done_reason == "content_filter"


def test_stream_cut_without_finish_reason_is_incomplete() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"reasoning_content": "hmm"}))
    decoder.feed(chunk({"content": "The ans"}))
    with pytest.raises(IncompleteResponseError, match="without a finish_reason") as info:
        decoder.finish()
    assert info.value.partial_text == "The ans"
    assert decoder.partial_thinking == "hmm"


def test_stream_of_only_keepalives_says_it_was_queued() -> None:
    with pytest.raises(IncompleteResponseError, match="3 keep-alive"):
        HostedStreamDecoder().finish(keepalives=3)


def test_error_payload_fed_to_the_decoder_is_classified() -> None:
    with pytest.raises(BusyError):
        HostedStreamDecoder().feed({"error": {"message": "Server Overloaded", "code": 503}})


def test_fim_stream_chunks() -> None:
    text_chunks = [
        {
            "object": "text_completion",
            "model": "deepseek-v4-pro",
            "choices": [{"index": 0, "text": "    return a", "finish_reason": None}],
        },
        {
            "object": "text_completion",
            "model": "deepseek-v4-pro",
            "choices": [{"index": 0, "text": " + b", "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4},
        },
    ]
    deltas = run(HostedStreamDecoder(), text_chunks)
    assert "".join(d.content for d in deltas) == "    return a + b"
    assert deltas[-1].done
    assert deltas[-1].completion_tokens == 4


# -- non-streaming bodies -----------------------------------------------------------------------

# The wire sample of the DeepSeek reference, §2.3.
REFERENCE_BODY = {
    "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
    "object": "chat.completion",
    "created": 1754359388,
    "model": "deepseek-v4-flash",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Final answer text",
                "reasoning_content": "Chain of thought text",
                "tool_calls": [
                    {
                        "id": "call_00_kw66qNnNto11bSfJVIdlV5Oo",
                        "type": "function",
                        "function": {"name": "get_date", "arguments": "{}"},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 80,
        "total_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 64},
        "prompt_cache_hit_tokens": 64,
        "prompt_cache_miss_tokens": 56,
        "completion_tokens_details": {"reasoning_tokens": 60},
    },
    "system_fingerprint": "fp_8802369eaa_prod0623_fp8_kvcache",
}


def test_reference_body_decodes() -> None:
    text, final = decode_hosted_response(REFERENCE_BODY)
    assert (text.content, text.thinking) == ("Final answer text", "Chain of thought text")
    assert text.tool_calls == [
        ToolCall(name="get_date", arguments={}, id="call_00_kw66qNnNto11bSfJVIdlV5Oo")
    ]
    assert final.done
    assert final.done_reason == "tool_calls"
    assert final.model == "deepseek-v4-flash"
    assert (
        final.prompt_tokens,
        final.completion_tokens,
        final.reasoning_tokens,
        final.cached_tokens,
    ) == (120, 80, 60, 64)


def test_body_with_only_a_finish_gives_only_the_final_delta() -> None:
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "length"}
        ]
    }
    deltas = decode_hosted_response(body)
    assert len(deltas) == 1
    assert deltas[0].done_reason == "length"


def test_body_with_insufficient_system_resource_is_never_success() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    body["choices"][0]["finish_reason"] = "insufficient_system_resource"
    with pytest.raises(InsufficientResourceError) as info:
        decode_hosted_response(body)
    assert info.value.partial_text == "Final answer text"


def test_body_without_finish_reason_is_incomplete() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    body["choices"][0]["finish_reason"] = None
    with pytest.raises(IncompleteResponseError):
        decode_hosted_response(body)


def test_body_without_choices_is_a_server_error() -> None:
    with pytest.raises(ServerError, match="no choices"):
        decode_hosted_response({"choices": []})


def test_fim_body_decodes() -> None:
    body = {
        "object": "text_completion",
        "model": "deepseek-v4-pro",
        "choices": [{"index": 0, "text": "return 1", "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    text, final = decode_hosted_response(body)
    assert text.content == "return 1"
    assert final.done_reason == "stop"


def test_body_after_keepalive_newlines_parses() -> None:
    assert parse_hosted_body("\n\n\n" + json.dumps(REFERENCE_BODY)) == REFERENCE_BODY
    assert parse_hosted_body(b"\n" + json.dumps({"a": 1}).encode()) == {"a": 1}


@pytest.mark.parametrize("body", ["", "\n", "\n\n\n\n", b"  \n"])
def test_whitespace_only_body_is_incomplete_not_junk(body: str | bytes) -> None:
    with pytest.raises(IncompleteResponseError, match="only keep-alive filler"):
        parse_hosted_body(body)


def test_cut_off_body_is_incomplete() -> None:
    with pytest.raises(IncompleteResponseError, match="cut off"):
        parse_hosted_body('\n\n{"id": "x", "choices": [')


@pytest.mark.parametrize("body", ["<html>502 Bad Gateway</html>", "[1, 2]"])
def test_junk_body_is_a_server_error(body: str) -> None:
    with pytest.raises(ServerError) as info:
        parse_hosted_body(body)
    assert not isinstance(info.value, IncompleteResponseError)


# -- errors -------------------------------------------------------------------------------------


def envelope(message: str, type_: str = "invalid_request_error") -> str:
    return json.dumps(
        {
            "error": {
                "message": message,
                "type": type_,
                "param": None,
                "code": "invalid_request_error",
            }
        }
    )


def test_400_and_422_are_bad_requests() -> None:
    for status in (400, 422):
        error = classify_hosted_error(status, envelope("Invalid temperature"), {})
        assert type(error) is BadRequestError
        assert error.status_code == status
        assert "Invalid temperature" in str(error)


def test_model_not_exist_names_the_fix_and_the_retired_names() -> None:
    error = classify_hosted_error(
        400, envelope("Model Not Exist"), {}, hosted_model="deepseek-chat"
    )
    assert isinstance(error, BadRequestError)
    assert "'deepseek-chat'" in error.message
    assert "retired" in error.message
    assert error.hint is not None
    assert "hosted_model" in error.hint
    assert "hosted_model_map" in error.hint
    assert "deepseek-reasoner" in error.hint
    assert "deepseek-flash" in error.hint
    assert "model not exist" in error.message.lower()  # what the routing policy matches


def test_reasoning_content_400_has_a_hint() -> None:
    error = classify_hosted_error(
        400,
        envelope("The reasoning_content in the thinking mode must be passed back to the API."),
        {},
    )
    assert isinstance(error, BadRequestError)
    assert error.hint


def test_401_is_an_auth_error_and_the_key_fragment_is_redacted() -> None:
    error = classify_hosted_error(
        401,
        envelope(
            "Authentication Fails, Your api key: ****abcd is invalid", "authentication_error"
        ).encode(),
        {},
    )
    assert isinstance(error, HostedAuthError)
    assert error.status_code == 401
    assert "abcd" not in str(error)


def test_secrets_are_redacted_from_messages() -> None:
    error = classify_hosted_error(
        400, envelope("bad key sk-live-0123456789"), {}, secrets=["0123456789"]
    )
    assert "0123456789" not in str(error)


def test_402_is_a_balance_error() -> None:
    error = classify_hosted_error(402, envelope("Insufficient Balance", "unknown_error"), {})
    assert isinstance(error, HostedBalanceError)
    assert error.status_code == 402


def test_429_is_busy_with_retry_after() -> None:
    error = classify_hosted_error(429, envelope("Rate Limit Reached"), {"Retry-After": "12"})
    assert isinstance(error, BusyError)
    assert error.status_code == 429
    assert error.retry_after == 12.0
    assert classify_hosted_error(429, envelope("x"), {}).retry_after is None  # DeepSeek sends none


def test_retry_after_as_an_http_date() -> None:
    now = dt.datetime(2026, 11, 2, 12, 0, 0, tzinfo=dt.timezone.utc)
    error = classify_hosted_error(
        503, "", {"retry-after": "Mon, 02 Nov 2026 12:00:45 GMT"}, now=now
    )
    assert isinstance(error, BusyError)
    assert error.retry_after == 45.0
    # Without a clock reading the date cannot be used (this module reads no clock).
    error = classify_hosted_error(503, "", {"retry-after": "Mon, 02 Nov 2026 12:00:45 GMT"})
    assert isinstance(error, BusyError)
    assert error.retry_after is None


def test_balance_based_concurrency_429_hints_at_top_up() -> None:
    message = "Your current concurrency is 40, which exceeds your concurrency limit of 39 based on your remaining balance. Please top up your balance to restore your concurrency."
    error = classify_hosted_error(429, envelope(message), {})
    assert isinstance(error, BusyError)
    assert error.hint
    assert "top up" in error.hint


@pytest.mark.parametrize("status", [500, 502, 504])
def test_500_class_are_server_errors(status: int) -> None:
    error = classify_hosted_error(status, envelope("Server Error", "api_error"), {})
    assert type(error) is ServerError
    assert error.status_code == status


def test_503_is_busy() -> None:
    error = classify_hosted_error(503, envelope("Server Overloaded", "api_error"), {})
    assert isinstance(error, BusyError)
    assert error.status_code == 503


def test_404_points_at_the_base_url() -> None:
    error = classify_hosted_error(404, "404 page not found", {})
    assert isinstance(error, BadRequestError)
    assert "hosted_base_url" in (error.hint or "")


def test_non_json_and_empty_bodies() -> None:
    assert "Bad Gateway" in str(classify_hosted_error(502, "<html>Bad Gateway</html>", {}))
    assert "(empty body)" in str(classify_hosted_error(500, b"", {}))


def test_route_is_carried() -> None:
    assert classify_hosted_error(500, "", {}, route="hosted").route == "hosted"


def test_non_integer_num_predict_is_a_bad_request() -> None:
    with pytest.raises(BadRequestError, match="num_predict"):
        chat(options={"num_predict": "lots"})


# -- type rules: a wrong type is a malformed answer, never a skipped chunk ----------------------


def choice(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, **fields}]}


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"choices": "x"}, "choices must be a list of objects, got a string"),
        ({"choices": [1]}, "choices[0] must be an object, got a number"),
        ({"choices": None}, "choices must be a list of objects, got null"),
        ({"id": "no choices, no usage"}, "choices must be a list of objects, got nothing"),
        (choice(index="0"), "choices[0].index must be a non-negative integer"),
        (choice(delta="Hi"), "choices[0].delta must be an object or null, got a string"),
        (choice(delta={"content": 42}), "choices[0].delta.content must be a string or null"),
        (choice(delta={"content": ["Hi"]}), "got a list"),
        (choice(delta={"reasoning_content": 1}), "choices[0].delta.reasoning_content"),
        (choice(delta={"reasoning": True}), "choices[0].delta.reasoning must be a string or null"),
        (choice(message={"content": 42}), "choices[0].message.content"),
        (choice(text=7), "choices[0].text must be a string or null"),
        (choice(finish_reason=1), "choices[0].finish_reason must be a string or null"),
        (choice(delta={"tool_calls": "f"}), "choices[0].delta.tool_calls must be a list"),
        (choice(delta={"tool_calls": ["f"]}), "choices[0].delta.tool_calls[0] must be an object"),
        (
            choice(delta={"tool_calls": [{"index": 0, "function": "f"}]}),
            "tool_calls[0].function must be an object or null",
        ),
        (
            choice(delta={"tool_calls": [{"index": 0, "function": {"name": 5}}]}),
            "tool_calls[0].function.name must be a string or null",
        ),
        (
            choice(delta={"tool_calls": [{"index": 0, "function": {"arguments": {"a": 1}}}]}),
            "tool_calls[0].function.arguments must be a string or null, got an object",
        ),
        (
            choice(delta={"tool_calls": [{"index": 0, "id": 3, "function": {}}]}),
            "tool_calls[0].id must be a string or null",
        ),
        (
            choice(delta={"tool_calls": [{"index": -1, "function": {}}]}),
            "tool_calls[0].index must be a non-negative integer",
        ),
        ({"choices": [], "usage": "x"}, "usage must be an object or null"),
        ({"choices": [], "usage": {"prompt_tokens": "17"}}, "usage.prompt_tokens"),
        ({"choices": [], "usage": {"completion_tokens": -1}}, "usage.completion_tokens"),
        ({"choices": [], "usage": {"total_tokens": True}}, "got a boolean"),
        ({"choices": [], "usage": {"completion_tokens": 2.5}}, "usage.completion_tokens"),
        (
            {"choices": [], "usage": {"prompt_tokens_details": 3}},
            "usage.prompt_tokens_details must be an object or null",
        ),
        (
            {"choices": [], "usage": {"completion_tokens_details": {"reasoning_tokens": "8"}}},
            "usage.completion_tokens_details.reasoning_tokens",
        ),
    ],
)
def test_a_wrong_type_is_a_malformed_answer_naming_the_field(
    bad: dict[str, Any], path: str
) -> None:
    with pytest.raises(ServerError, match="malformed hosted answer") as info:
        HostedStreamDecoder(route="hosted").feed(bad)
    error = info.value
    assert path in str(error)
    assert not isinstance(error, IncompleteResponseError)
    assert error.route == "hosted"
    assert error.hint
    # The router retries it (and then moves on), as it does a malformed local chunk.
    assert classify(error, kind="hosted").action is Action.RETRY


def test_a_wrong_typed_chunk_mid_answer_says_how_much_arrived() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"reasoning_content": "Hmm"}))
    decoder.feed(chunk({"content": "The ans"}))
    with pytest.raises(ServerError, match=r"chunk 3 after 7 characters of answer and 3 of") as info:
        decoder.feed(chunk({"content": 42}))
    assert "content must be a string or null, got a number" in str(info.value)
    # Nothing after the bad chunk can turn the answer into a success.
    assert not decoder.done


def test_fields_nobody_reads_and_integral_floats_pass() -> None:
    # OpenRouter adds a float cost and a boolean to usage; logprobs and role are not read.
    usage = {
        "prompt_tokens": 5.0,
        "completion_tokens": 2,
        "cost": 0.00014,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": None},
        "cost_details": {"upstream_inference_cost": None},
    }
    deltas = run(
        HostedStreamDecoder(),
        [
            chunk({"role": None, "content": "ok"}),
            {**chunk({"content": None}, finish="stop"), "usage": usage, "model": 7},
        ],
    )
    assert deltas[-1].done
    assert (deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == (5, 2)


def test_a_usage_only_chunk_may_have_no_choices() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"content": "ok"}, finish="stop"))
    final = decoder.feed({"usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert final[-1].done
    assert final[-1].completion_tokens == 1


def test_a_streamed_tool_call_that_never_gets_a_name_is_malformed() -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    with pytest.raises(ServerError, match="tool call 0 never got a function name"):
        decoder.feed(chunk({}, finish="tool_calls"))


def test_a_whole_tool_call_without_a_name_is_malformed() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    del body["choices"][0]["message"]["tool_calls"][0]["function"]["name"]
    with pytest.raises(ServerError, match=r"tool_calls\[0\] has no function name"):
        decode_hosted_response(body)


def test_a_whole_message_may_carry_decoded_arguments() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = {"day": 1}
    assert decode_hosted_response(body)[0].tool_calls[0].arguments == {"day": 1}


# -- reasoning field names ------------------------------------------------------------------------


def test_reasoning_is_read_from_either_field_name() -> None:
    deltas = run(
        HostedStreamDecoder(),
        [
            chunk({"reasoning": "OpenRouter and newer vLLM. "}),
            chunk({"reasoning_content": "DeepSeek and llama-server."}),
            chunk({"content": "Done."}, finish="stop"),
        ],
    )
    assert (
        "".join(d.thinking for d in deltas)
        == "OpenRouter and newer vLLM. DeepSeek and llama-server."
    )


def test_reasoning_sent_under_both_names_is_not_doubled() -> None:
    # vLLM during the rename fills both fields with the same text.
    deltas = run(
        HostedStreamDecoder(),
        [
            chunk({"reasoning": "think", "reasoning_content": "think"}),
            chunk({"content": "ok"}, finish="stop"),
        ],
    )
    assert "".join(d.thinking for d in deltas) == "think"


def test_a_whole_message_with_reasoning_decodes() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    message = body["choices"][0]["message"]
    message["reasoning"] = message.pop("reasoning_content")
    assert decode_hosted_response(body)[0].thinking == "Chain of thought text"


# -- inline <think> on OpenAI-format routes ------------------------------------------------------


def texts(deltas: list[Delta]) -> tuple[str, str]:
    return "".join(d.thinking for d in deltas), "".join(d.content for d in deltas)


def test_inline_think_is_split_across_chunks_with_a_splitter() -> None:
    """vLLM without a reasoning parser: the block arrives in pieces, tags cut anywhere."""
    pieces = ["<thi", "nk>\nWhy? Light", " scatters.\n</th", "ink>\n\nBecause", " of Rayleigh."]
    decoder = HostedStreamDecoder(splitter=ThinkSplitter())
    deltas = run(
        decoder,
        [chunk({"content": p}) for p in pieces] + [chunk({}, finish="stop", usage=USAGE)],
    )
    assert texts(deltas) == ("Why? Light scatters.", "Because of Rayleigh.")
    assert (decoder.partial_thinking, decoder.partial_content) == texts(deltas)
    assert deltas[-1].done
    assert not any(d.content or d.thinking for d in deltas[-1:])


def test_without_a_splitter_inline_think_stays_content() -> None:
    """DeepSeek's dialect: the answer is exactly what the server sent."""
    deltas = run(HostedStreamDecoder(), [chunk({"content": "<think>x</think>y"}, finish="stop")])
    assert texts(deltas) == ("", "<think>x</think>y")


def test_a_reasoning_field_turns_the_splitter_off() -> None:
    """A server that separates reasoning: a later literal <think> is answer text."""
    deltas = run(
        HostedStreamDecoder(splitter=ThinkSplitter()),
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "plan"}),
            chunk({"content": "<think> is a tag"}, finish="stop"),
        ],
    )
    assert texts(deltas) == ("plan", "<think> is a tag")


def test_held_text_comes_out_before_the_final_delta() -> None:
    """An answer that ends inside what could be a tag: the splitter's held text is
    flushed before done=True, with the tool calls after it."""
    deltas = run(
        HostedStreamDecoder(splitter=ThinkSplitter()),
        [chunk({"content": "  "}), chunk({"content": "<thi"}, finish="stop", usage=USAGE)],
    )
    assert texts(deltas) == ("", "  <thi")
    assert [d.done for d in deltas] == [False, True]


def test_a_template_that_opens_the_block_itself() -> None:
    """reasoning_field "inline": no opening tag, the answer starts inside the reasoning."""
    deltas = run(
        HostedStreamDecoder(splitter=ThinkSplitter(thinking_model=True)),
        [chunk({"content": "hmm, blue\n</think>\n\nBlue."}, finish="stop")],
    )
    assert texts(deltas) == ("hmm, blue", "Blue.")


def test_a_whole_body_is_split_too() -> None:
    body = copy.deepcopy(REFERENCE_BODY)
    message = body["choices"][0]["message"]
    del message["reasoning_content"]
    message["content"] = "<think>\nChain\n</think>\n\nAnswer"
    deltas = decode_hosted_response(body, splitter=ThinkSplitter())
    assert texts(deltas) == ("Chain", "Answer")


# -- a whole completion where a stream was expected -------------------------------------------------


def test_a_whole_completion_gives_what_its_stream_gives() -> None:
    message = REFERENCE_BODY["choices"][0]["message"]
    call = message["tool_calls"][0]
    streamed = run(
        HostedStreamDecoder(),
        [
            chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
            chunk({"reasoning_content": message["reasoning_content"]}),
            chunk({"content": message["content"]}),
            chunk({"tool_calls": [{"index": 0, **call}]}),
            {
                **chunk({}, finish="tool_calls", usage=REFERENCE_BODY["usage"]),
                "model": REFERENCE_BODY["model"],
            },
        ],
    )
    whole = decode_hosted_response(REFERENCE_BODY)

    def summary(deltas: list[Delta]) -> tuple[Any, ...]:
        final = deltas[-1]
        return (
            "".join(d.content for d in deltas),
            "".join(d.thinking for d in deltas),
            [c for d in deltas for c in d.tool_calls],
            final.done,
            final.done_reason,
            final.model,
            (
                final.prompt_tokens,
                final.completion_tokens,
                final.reasoning_tokens,
                final.cached_tokens,
            ),
        )

    assert summary(whole) == summary(streamed)


def test_a_completion_object_inside_a_stream_is_decoded_not_skipped() -> None:
    # A server that sends the whole completion as one data event.
    deltas = run(HostedStreamDecoder(), [REFERENCE_BODY])
    assert "".join(d.content for d in deltas) == "Final answer text"
    assert deltas[-1].done_reason == "tool_calls"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (chunk({"content": "Hi"}, finish="stop"), "neither a message nor a text"),
        ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "neither a message nor a text"),
        ({"object": "chat.completion"}, "no choices"),
        ({"choices": [{"index": 1, "message": {"content": "x"}}]}, "neither a message nor a text"),
    ],
)
def test_a_body_that_is_not_a_completion_is_malformed_never_empty(
    body: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ServerError, match="not a chat or text completion") as info:
        decode_hosted_response(body)
    assert problem in str(info.value)


def test_a_fim_completion_body_decodes_through_the_same_path() -> None:
    body = {
        "object": "text_completion",
        "choices": [{"index": 0, "text": "return 1", "finish_reason": "stop"}],
    }
    assert [d.content for d in decode_hosted_response(body)] == ["return 1", ""]


# -- in-band errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"error": {"message": "Too many requests", "code": 429}}, BusyError),
        ({"error": {"message": "Server Overloaded", "status": 503}}, BusyError),
        ({"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, BusyError),
        ({"object": "error", "message": "overloaded", "type": "x", "code": 503}, BusyError),
        (
            {"object": "error", "message": "bad", "type": "BadRequestError", "code": 400},
            BadRequestError,
        ),
        ({"error": {}}, ServerError),
        ({"error": ""}, ServerError),
        ({"error": "runner died"}, ServerError),
    ],
)
def test_an_error_object_mid_stream_is_raised_never_skipped(
    payload: dict[str, Any], expected: type[Exception]
) -> None:
    decoder = HostedStreamDecoder()
    decoder.feed(chunk({"content": "Part"}))
    with pytest.raises(expected):
        decoder.feed(payload)
    assert not decoder.done


def test_an_error_body_is_raised_as_classified() -> None:
    with pytest.raises(BusyError):
        decode_hosted_response({"error": {"message": "Server Overloaded", "code": 503}})


# -- framing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "framing"),
    [
        ("text/event-stream", "sse"),
        ("Text/Event-Stream; charset=utf-8", "sse"),
        (None, "sse"),
        ("", "sse"),
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
    ],
)
def test_answer_framing(content_type: str | None, framing: str) -> None:
    assert answer_framing(content_type) == framing


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "text/plain", "image/png"])
def test_an_unexpected_content_type_is_a_server_error_that_names_it(content_type: str) -> None:
    with pytest.raises(ServerError, match="Content-Type") as info:
        answer_framing(content_type, route="hosted:x")
    assert repr(content_type.split(";")[0]) in str(info.value)
    assert info.value.route == "hosted:x"
    assert classify(info.value, kind="hosted").action is Action.RETRY


def test_a_long_content_type_is_bounded_in_the_message() -> None:
    with pytest.raises(ServerError) as info:
        answer_framing("x/" + "y" * 5000)
    assert len(str(info.value)) < 200


def test_shape_doctests() -> None:
    assert doctest.testmod(hosted_shapes).failed == 0
    assert doctest.testmod(hosted_response).failed == 0
