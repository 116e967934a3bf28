"""FakeDeepSeek at the byte level: routes, errors, framing, answers, busy behaviour, control.

Raw httpx where the official client would hide the bytes (keep-alive lines, SSE framing,
whitespace-only bodies); `test_double_deepseek_openai.py` drives the same double with the
official openai client. Numbers in comments (§n) refer to the project's DeepSeek reference.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dsollama._catalogue import load_catalogue
from dsollama.testing._faults import Fault
from dsollama.testing._text import answer_tokens, conversation_key, thinking_tokens
from dsollama.testing.deepseek import FakeDeepSeek, main

QUESTION = "why is the sky blue"
MESSAGES = [{"role": "user", "content": QUESTION}]
ANSWER = "".join(answer_tokens(QUESTION, 12))
THOUGHT = "".join(thinking_tokens(QUESTION, 8))
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}


@pytest.fixture
def fake() -> Iterator[FakeDeepSeek]:
    # Unpaced so the suite stays fast; pacing has its own test.
    with FakeDeepSeek(tokens_per_second=0) as double:
        yield double


@pytest.fixture
def client(fake: FakeDeepSeek) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    # Plain http on loopback: verify=False only skips loading the CA bundle (slow).
    with httpx.Client(base_url=fake.url, headers=headers, timeout=10, verify=False) as http:
        yield http


@pytest.fixture
def anon(fake: FakeDeepSeek) -> Iterator[httpx.Client]:
    """A client that sends no credentials (control routes, auth checks, refused ports)."""
    with httpx.Client(base_url=fake.url, timeout=10, verify=False) as http:
        yield http


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "deepseek-flash", "messages": MESSAGES, **extra}


def events(raw: bytes) -> list[Any]:
    """The data events of an SSE body, checking the framing on the way."""
    assert raw.endswith(b"\n\n")
    out: list[Any] = []
    for block in raw.decode().split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        assert "\n" not in block  # one line per event, no id:/event:/retry: lines (§2.5)
        data = block[len("data: ") :]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def deltas(items: list[Any], field: str) -> str:
    return "".join(
        e["choices"][0]["delta"].get(field) or ""
        for e in items
        if isinstance(e, dict) and e["choices"]
    )


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] is None
    assert body["error"]["code"] == "invalid_request_error"
    return dict(body["error"])


# -- routes, auth, models, balance ------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/chat/completions", "/v1/chat/completions", "/beta/chat/completions"]
)
def test_chat_route_answers_at_root_v1_and_beta(client: httpx.Client, path: str) -> None:
    """Chat completions are served at the root, /v1 and /beta bases (§1.1)."""
    response = client.post(path, json=chat())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("path", ["/models", "/v1/models"])
def test_models_lists_current_names_in_openai_shape(client: httpx.Client, path: str) -> None:
    """GET /models is an OpenAI list of the served (not retired) names (§1.4)."""
    body = client.get(path).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "deepseek-flash",
        "deepseek-v4-pro",
        "deepseek-v4-flash",
    ]
    assert all(
        m == {"id": m["id"], "object": "model", "owned_by": "deepseek"} for m in body["data"]
    )


def test_default_names_follow_the_catalogue() -> None:
    """The double serves the catalogue's hosted names and refuses its retired ones."""
    catalogue = load_catalogue()
    fake = FakeDeepSeek()
    assert set(fake.models) == set(catalogue.hosted)
    assert set(fake.retired) == set(catalogue.retired_hosted)


def test_balance_has_string_amounts_and_tracks_availability(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """GET /user/balance: is_available + balance_infos with amounts as strings (§1.5)."""
    body = client.get("/user/balance").json()
    assert body["is_available"] is True
    info = body["balance_infos"][0]
    assert set(info) == {"currency", "total_balance", "granted_balance", "topped_up_balance"}
    assert all(isinstance(v, str) for v in info.values())
    fake.balance_available = False
    assert client.get("/user/balance").json()["is_available"] is False


def test_missing_or_malformed_auth_header_gets_the_format_message(
    fake: FakeDeepSeek, anon: httpx.Client
) -> None:
    """No header or a non-Bearer one: 401 with the auth-header-format text (§1.2)."""
    for headers in ({}, {"Authorization": fake.api_key}, {"Authorization": "Basic abc"}):
        response = anon.post("/chat/completions", json=chat(), headers=headers)
        assert response.status_code == 401
        assert error(response) | {} == {
            "message": "Authentication Fails (auth header format should be Bearer sk-...)",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_request_error",
        }


def test_invalid_key_is_named_by_its_last_four_characters(anon: httpx.Client) -> None:
    """A wrong key: 401 'Your api key: ****abcd is invalid', exactly as captured (§1.2)."""
    response = anon.get("/models", headers={"Authorization": "Bearer sk-wrong-abcd"})
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "message": "Authentication Fails, Your api key: ****abcd is invalid",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_request_error",
        }
    }


def test_any_configured_key_is_accepted() -> None:
    """Several keys can be accepted; api_key is the first."""
    with FakeDeepSeek(api_keys=["sk-one", "sk-two"]) as fake:
        assert fake.api_key == "sk-one"
        response = httpx.get(fake.url + "/models", headers={"Authorization": "Bearer sk-two"})
        assert response.status_code == 200


def test_unknown_route_is_404_in_the_envelope(client: httpx.Client) -> None:
    """Unknown paths, and FIM off the beta base, answer 404 in the usual envelope."""
    for path in ("/nope", "/completions", "/v1/completions"):
        response = client.post(path, json={})
        assert response.status_code == 404
        error(response)


def test_insufficient_balance_is_402(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """balance_available=False: 402 Insufficient Balance with type unknown_error (§3)."""
    fake.balance_available = False
    response = client.post("/chat/completions", json=chat())
    assert response.status_code == 402
    assert error(response)["message"] == "Insufficient Balance"
    assert error(response)["type"] == "unknown_error"


@pytest.mark.parametrize(
    "model", ["deepseek-chat", "deepseek-reasoner", "deepseek-r1", "deepseek-v3"]
)
def test_unknown_and_retired_models_do_not_exist(client: httpx.Client, model: str) -> None:
    """Unknown names and the retired deepseek-chat/-reasoner: 400 Model Not Exist (§1.3)."""
    response = client.post("/chat/completions", json=chat(model=model))
    assert response.status_code == 400
    assert error(response)["message"] == "Model Not Exist"


# -- request checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"stop": [f"s{i}" for i in range(17)]}, "stop"),
        ({"tools": [WEATHER_TOOL] * 129}, "tools"),
    ],
)
def test_invalid_parameter_values_are_422(
    client: httpx.Client, extra: dict[str, Any], name: str
) -> None:
    """Out-of-range values: 422 Invalid Parameters in the envelope (§3.2)."""
    response = client.post("/chat/completions", json=chat(**extra))
    assert response.status_code == 422
    assert name in error(response)["message"]


def test_limits_themselves_are_accepted(client: httpx.Client) -> None:
    """The documented maxima are allowed: temperature 2, 16 stops, 128 tools, 20 logprobs."""
    body = chat(
        temperature=2,
        stop=[f"zz{i}" for i in range(16)],
        tools=[WEATHER_TOOL] * 128,
        tool_choice="none",
        logprobs=True,
        top_logprobs=20,
    )
    assert client.post("/chat/completions", json=body).status_code == 200


def test_max_tokens_out_of_range_uses_the_captured_message(client: httpx.Client) -> None:
    """max_tokens outside [1, 384K]: 400 with the observed 'valid range' text."""
    response = client.post("/chat/completions", json=chat(max_tokens=0))
    assert response.status_code == 400
    assert error(response)["message"] == (
        "Invalid max_tokens value, the valid range of max_tokens is [1, 393216]"
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"model": "deepseek-flash"}, "missing field `messages`"),
        ({"messages": MESSAGES}, "missing field `model`"),
        (chat(temperature="1.3"), 'temperature: invalid type: string "1.3", expected f32'),
        (
            {"model": "deepseek-flash", "messages": [{"role": "user"}]},
            "messages[0]: missing field `content`",
        ),
        (
            {"model": "deepseek-flash", "messages": [{"role": "robot", "content": "x"}]},
            "unknown variant `robot`",
        ),
        (chat(response_format={"type": "json_schema"}), "`json_schema` is unavailable now"),
        (chat(tools=[{"type": "retrieval"}]), "unknown variant `retrieval`, expected `function`"),
        (chat(thinking={"type": "auto"}), "unknown variant `auto`"),
    ],
)
def test_malformed_bodies_get_serde_style_messages(
    client: httpx.Client, body: dict[str, Any], detail: str
) -> None:
    """Type errors: 400 'Failed to deserialize the JSON body into the target type: …'."""
    response = client.post("/chat/completions", json=body)
    assert response.status_code == 400
    message = error(response)["message"]
    assert message.startswith("Failed to deserialize the JSON body into the target type: ")
    assert detail in message


def test_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    """A body that does not parse: 400 'Failed to parse the request body as JSON'."""
    response = client.post("/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert error(response)["message"].startswith("Failed to parse the request body as JSON: ")


def test_sampling_knobs_are_accepted_and_change_nothing(client: httpx.Client) -> None:
    """Thinking mode ignores temperature/top_p/penalties without error (§2.1, fact 18)."""
    plain = client.post("/chat/completions", json=chat()).json()
    tuned = client.post(
        "/chat/completions",
        json=chat(temperature=0.1, top_p=0.2, presence_penalty=1, frequency_penalty=-1),
    ).json()
    assert tuned["choices"][0]["message"] == plain["choices"][0]["message"]


TOOL_TURN = [
    {"role": "user", "content": "weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call_00_x",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_00_x", "content": "sunny"},
]


@pytest.mark.parametrize("reasoning", [None, ""])
def test_thinking_mode_needs_reasoning_content_back_after_tool_calls(
    client: httpx.Client, reasoning: str | None
) -> None:
    """Thinking on + a tool-call turn whose assistant message lacks reasoning_content
    (or has it empty): 400 with the documented message (§2.2)."""
    messages = json.loads(json.dumps(TOOL_TURN))
    if reasoning is not None:
        messages[1]["reasoning_content"] = reasoning
    response = client.post("/chat/completions", json=chat(messages=messages, tools=[WEATHER_TOOL]))
    assert response.status_code == 400
    assert error(response)["message"] == (
        "The reasoning_content in the thinking mode must be passed back to the API."
    )


def test_reasoning_content_rule_is_met_or_not_applicable(client: httpx.Client) -> None:
    """Passing reasoning_content back, or thinking disabled, is accepted."""
    messages = json.loads(json.dumps(TOOL_TURN))
    disabled = chat(messages=messages, tools=[WEATHER_TOOL], thinking={"type": "disabled"})
    assert client.post("/chat/completions", json=disabled).status_code == 200
    messages[1]["reasoning_content"] = "I should call the tool."
    answered = client.post("/chat/completions", json=chat(messages=messages, tools=[WEATHER_TOOL]))
    assert answered.status_code == 200
    # The tool result came back: now the model answers in text.
    assert answered.json()["choices"][0]["finish_reason"] == "stop"


def test_prefix_completion_is_refused_off_the_beta_base(client: httpx.Client) -> None:
    """A prefix assistant message on the root base: 400 (beta-only feature, §5.1)."""
    messages = [*MESSAGES, {"role": "assistant", "content": "The", "prefix": True}]
    response = client.post("/chat/completions", json=chat(messages=messages))
    assert response.status_code == 400
    assert "beta" in error(response)["message"]


# -- answers and framing ----------------------------------------------------------------


def test_sse_framing_is_exact(client: httpx.Client) -> None:
    """data: {json}\\n\\n events, [DONE] last, shared id/created, role first, usage only on
    the finish chunk, system_fingerprint everywhere (§2.5, facts 11–13, 20)."""
    raw = client.post("/chat/completions", json=chat(stream=True)).content
    assert raw.endswith(b"data: [DONE]\n\n")
    items = events(raw)
    assert items[-1] == "[DONE]"
    chunks = items[:-1]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert {c["created"] for c in chunks} == {chunks[0]["created"]}
    for c in chunks:
        assert list(c) == [
            "id",
            "object",
            "created",
            "model",
            "system_fingerprint",
            "choices",
            "usage",
        ]
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == "deepseek-flash"
        assert c["system_fingerprint"].startswith("fp_")
        assert c["choices"][0]["index"] == 0
        assert c["choices"][0]["logprobs"] is None
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "",
    }
    assert all(c["usage"] is None and c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 20


def test_thinking_streams_reasoning_first_then_content(client: httpx.Client) -> None:
    """reasoning_content chunks (content null) come before any content chunk (§2.5)."""
    chunks = events(client.post("/chat/completions", json=chat(stream=True)).content)[:-1]
    kinds = []
    for c in chunks[1:-1]:
        delta = c["choices"][0]["delta"]
        if "reasoning_content" in delta:
            assert delta["content"] is None
            kinds.append("r")
        else:
            kinds.append("c")
    assert kinds == ["r"] * 8 + ["c"] * 12
    assert deltas(chunks, "reasoning_content") == THOUGHT
    assert deltas(chunks, "content") == ANSWER


def test_non_thinking_mode_has_no_reasoning_anywhere(client: httpx.Client) -> None:
    """thinking disabled: first delta {role, content ""}, no reasoning_content key (§2.5)."""
    body = chat(thinking={"type": "disabled"}, reasoning_effort="max")
    raw = client.post("/chat/completions", json=body | {"stream": True}).content
    assert b"reasoning_content" not in raw
    chunks = events(raw)[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    message = client.post("/chat/completions", json=body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": ANSWER}


def test_non_streaming_answer_matches_the_stream(client: httpx.Client) -> None:
    """The JSON answer holds exactly what the stream sends, with the same usage."""
    answer = client.post("/chat/completions", json=chat()).json()
    assert list(answer) == [
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "system_fingerprint",
    ]
    assert answer["object"] == "chat.completion"
    choice = answer["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": ANSWER,
        "reasoning_content": THOUGHT,
    }
    assert choice["finish_reason"] == "stop"
    chunks = events(client.post("/chat/completions", json=chat(stream=True)).content)[:-1]
    assert chunks[-1]["usage"] == answer["usage"]


@pytest.mark.parametrize("thinking", ["enabled", "disabled"])
def test_usage_invariants_and_cache_counts(
    fake: FakeDeepSeek, client: httpx.Client, thinking: str
) -> None:
    """prompt = hit + miss, total = prompt + completion, reasoning <= completion, and
    cached_tokens mirrors the hit count (§2.3, fact 13)."""
    fake.cache_hit_tokens = 3
    usage = client.post("/chat/completions", json=chat(thinking={"type": thinking})).json()["usage"]
    assert usage["prompt_cache_hit_tokens"] == 3
    assert (
        usage["prompt_tokens"]
        == usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"]
    )
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 3}
    if thinking == "enabled":
        assert usage["completion_tokens_details"] == {"reasoning_tokens": 8}
        assert usage["completion_tokens"] == 20
    else:
        assert "completion_tokens_details" not in usage
        assert usage["completion_tokens"] == 12


def test_usage_on_separate_chunk_is_the_documented_variant(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """usage_on_separate_chunk: with include_usage every chunk has usage null and a
    choices: [] chunk carries it before [DONE]; without include_usage no usage at all."""
    fake.usage_on_separate_chunk = True
    body = chat(stream=True, stream_options={"include_usage": True})
    chunks = events(client.post("/chat/completions", json=body).content)[:-1]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 20
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    plain = events(client.post("/chat/completions", json=chat(stream=True)).content)[:-1]
    assert all("usage" not in c for c in plain)


def test_max_tokens_can_end_inside_reasoning(client: httpx.Client) -> None:
    """max_tokens counts the thought too: 3 tokens end mid-reasoning, content null,
    finish_reason length (§7.2)."""
    answer = client.post("/chat/completions", json=chat(max_tokens=3)).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == "".join(thinking_tokens(QUESTION, 8)[:3])
    assert answer["usage"]["completion_tokens"] == 3


def test_max_tokens_cuts_the_answer_with_length(client: httpx.Client) -> None:
    """Non-thinking, max_tokens=5: the first five tokens and finish_reason length."""
    body = chat(max_tokens=5, thinking={"type": "disabled"})
    choice = client.post("/chat/completions", json=body).json()["choices"][0]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "".join(answer_tokens(QUESTION, 12)[:5])},
        "logprobs": None,
        "finish_reason": "length",
    }


def test_stop_sequence_ends_the_answer_before_it(client: httpx.Client) -> None:
    """A stop string cuts the content where it starts; finish_reason stop."""
    word = answer_tokens(QUESTION, 12)[4]
    cut = ANSWER[: ANSWER.index(word)]
    for stream in (False, True):
        body = chat(stop=[word, "never-appears"], stream=stream)
        response = client.post("/chat/completions", json=body)
        if stream:
            chunks = events(response.content)[:-1]
            assert deltas(chunks, "content") == cut
            assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        else:
            assert response.json()["choices"][0]["message"]["content"] == cut


def test_logprobs_only_when_requested(client: httpx.Client) -> None:
    """logprobs null unless asked; with top_logprobs=2 each content token has 2 entries."""
    answer = client.post("/chat/completions", json=chat(logprobs=True, top_logprobs=2)).json()
    content = answer["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in content) == ANSWER
    assert all(len(t["top_logprobs"]) == 2 and t["logprob"] < 0 for t in content)


def test_json_mode_answers_json(client: httpx.Client) -> None:
    """response_format json_object with "json" in the prompt: content parses as JSON,
    also when streamed."""
    messages = [{"role": "system", "content": "Reply in JSON."}, *MESSAGES]
    body = chat(messages=messages, response_format={"type": "json_object"})
    content = client.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"answer": ANSWER}
    streamed = events(client.post("/chat/completions", json=body | {"stream": True}).content)
    assert json.loads(deltas(streamed, "content")) == {"answer": ANSWER}


def test_json_mode_without_json_in_the_prompt_emits_whitespace(client: httpx.Client) -> None:
    """The documented pitfall (§5.3): no JSON instruction → whitespace up to max_tokens."""
    body = chat(
        response_format={"type": "json_object"}, max_tokens=30, thinking={"type": "disabled"}
    )
    choice = client.post("/chat/completions", json=body).json()["choices"][0]
    assert choice["message"]["content"] == "\n" * 30
    assert choice["finish_reason"] == "length"


def test_json_mode_empty_content_is_injectable(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """json_empty_content=1: the next JSON-mode answer has empty content (§5.3), once."""
    fake.json_empty_content = 1
    messages = [{"role": "user", "content": "json please"}]
    body = chat(messages=messages, response_format={"type": "json_object"})
    first = client.post("/chat/completions", json=body).json()["choices"][0]
    assert first["message"]["content"] == ""
    assert first["finish_reason"] == "stop"
    assert first["message"]["reasoning_content"]
    second = client.post("/chat/completions", json=body).json()["choices"][0]
    assert json.loads(second["message"]["content"])


def test_tool_call_answer_shape(client: httpx.Client) -> None:
    """With tools: tool_calls with call_00_ ids, arguments a JSON string, content "",
    finish_reason tool_calls; the tool named in the prompt is the one called (§2.3)."""
    other = {"type": "function", "function": {"name": "get_time"}}
    messages = [{"role": "user", "content": "what is get_weather for Paris"}]
    answer = client.post(
        "/chat/completions", json=chat(messages=messages, tools=[other, WEATHER_TOOL])
    ).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == ""
    assert message["reasoning_content"]
    (call,) = message["tool_calls"]
    assert call["id"].startswith("call_00_")
    assert len(call["id"]) == len("call_00_") + 24
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    arguments = json.loads(call["function"]["arguments"])
    assert set(arguments) == {"city", "unit"}
    assert arguments["unit"] == "c"


def test_tool_calls_stream_as_indexed_fragments(client: httpx.Client) -> None:
    """Streamed tool calls: one fragment with id/type/name, then argument pieces keyed by
    index that concatenate to the JSON string (§2.5)."""
    body = chat(
        tools=[WEATHER_TOOL], tool_choice="required", stream=True, thinking={"type": "disabled"}
    )
    chunks = events(client.post("/chat/completions", json=body).content)[:-1]
    fragments = [f for c in chunks for f in c["choices"][0]["delta"].get("tool_calls") or []]
    assert fragments[0]["index"] == 0
    assert fragments[0]["id"].startswith("call_00_")
    assert fragments[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert all(set(f) == {"index", "function"} for f in fragments[1:])
    assert len(fragments) > 2
    arguments = "".join(f["function"]["arguments"] for f in fragments)
    assert set(json.loads(arguments)) == {"city", "unit"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_choice_none_answers_in_text(client: httpx.Client) -> None:
    """tool_choice none: a text answer even with tools given."""
    choice = client.post(
        "/chat/completions", json=chat(tools=[WEATHER_TOOL], tool_choice="none")
    ).json()
    assert choice["choices"][0]["message"]["content"] == ANSWER


@pytest.mark.parametrize("cut", [0, 7, len(ANSWER) // 2, len(ANSWER)])
def test_prefix_completion_continues_the_canonical_answer(client: httpx.Client, cut: int) -> None:
    """/beta prefix completion: prefix + continuation == the uninterrupted answer, even
    when the prefix ends inside a token; no new reasoning once text exists (§5.1)."""
    messages = [*MESSAGES, {"role": "assistant", "content": ANSWER[:cut], "prefix": True}]
    message = client.post("/beta/chat/completions", json=chat(messages=messages)).json()["choices"][
        0
    ]["message"]
    assert ANSWER[:cut] + message["content"] == ANSWER
    assert message["reasoning_content"] == ("" if cut else THOUGHT)


def test_prefix_completion_can_continue_the_thought(client: httpx.Client) -> None:
    """A prefix with reasoning_content only continues the chain of thought, then answers."""
    prefix = {"role": "assistant", "content": "", "reasoning_content": THOUGHT[:10], "prefix": True}
    message = client.post("/beta/chat/completions", json=chat(messages=[*MESSAGES, prefix])).json()
    message = message["choices"][0]["message"]
    assert THOUGHT[:10] + message["reasoning_content"] == THOUGHT
    assert message["content"] == ANSWER


def test_fim_completion_on_beta(client: httpx.Client) -> None:
    """POST /beta/completions: a text_completion object; echo puts the prompt first (§5.2)."""
    body = {"model": "deepseek-v4-pro", "prompt": "def fib(n):", "suffix": "    return a"}
    answer = client.post("/beta/completions", json=body).json()
    assert answer["object"] == "text_completion"
    text = "".join(answer_tokens(conversation_key(prompt=body["prompt"] + body["suffix"]), 12))
    assert answer["choices"] == [
        {"text": text, "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert "completion_tokens_details" not in answer["usage"]
    echoed = client.post("/beta/completions", json=body | {"echo": True}).json()
    assert echoed["choices"][0]["text"] == body["prompt"] + text
    chunks = events(client.post("/beta/completions", json=body | {"stream": True}).content)[:-1]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == text
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_fim_refuses_thinking_and_long_outputs(client: httpx.Client) -> None:
    """FIM is non-thinking only and capped at 4K tokens (§5.2)."""
    body = {"model": "deepseek-v4-pro", "prompt": "x"}
    thinking = client.post("/beta/completions", json=body | {"thinking": {"type": "enabled"}})
    assert thinking.status_code == 400
    too_long = client.post("/beta/completions", json=body | {"max_tokens": 4097})
    assert error(too_long)["message"].endswith("[1, 4096]")


def test_pacing_follows_tokens_per_second(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """20 tokens at 400 tokens/s plus 30 ms to the first token take ≥ 75 ms."""
    fake.tokens_per_second = 400
    fake.first_token_seconds = 0.03
    started = time.perf_counter()
    client.post("/chat/completions", json=chat(stream=True)).read()
    assert time.perf_counter() - started >= 0.075


# -- busy behaviour and faults ------------------------------------------------------------


def _start_stream(
    client: httpx.Client, body: dict[str, Any]
) -> tuple[httpx.Response, Iterator[bytes]]:
    request = client.build_request("POST", "/chat/completions", json=body)
    response = client.send(request, stream=True)
    return response, response.iter_raw()


def test_keepalive_non_streaming_sends_200_then_blank_lines_then_json(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """Queued non-streaming request: 200 + application/json at once, newlines while held,
    then the JSON object, which a parser accepts despite the leading blank lines (§4)."""
    fake.add_fault(Fault("keepalive", seconds=0, interval=0.005))
    response, body = _start_stream(client, chat())
    try:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        filler = b""
        while filler.count(b"\n") < 3:
            filler += next(body)
        assert filler.strip() == b""
        fake.release()
        rest = filler + b"".join(body)
    finally:
        response.close()
    assert rest.startswith(b"\n\n\n")
    assert json.loads(rest)["choices"][0]["message"]["content"] == ANSWER


def test_keepalive_streaming_sends_comments_then_data(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """Queued stream: 200 + text/event-stream at once, ': keep-alive' comments while held,
    then the normal events and [DONE] (§4, fact 10)."""
    fake.add_fault(Fault("keepalive", seconds=0, interval=0.005))
    response, body = _start_stream(client, chat(stream=True))
    try:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        filler = b""
        while filler.count(b": keep-alive\n\n") < 3:
            filler += next(body)
        assert filler == b": keep-alive\n\n" * (filler.count(b"\n\n"))
        assert fake.in_flight() == 1
        fake.release()
        rest = filler + b"".join(body)
    finally:
        response.close()
    data = rest[rest.index(b"data: ") :]
    assert b"keep-alive" not in data
    assert deltas(events(data), "content") == ANSWER


def test_keepalive_then_close_non_streaming_is_whitespace_only(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """The 'Expecting value' case (§7.1): 200, only newlines, then the body ends and the
    connection closes."""
    fake.add_fault(Fault("keepalive_then_close", seconds=0.02, interval=0.005))
    response = client.post("/chat/completions", json=chat())
    assert response.status_code == 200
    assert response.headers["connection"] == "close"
    assert response.content
    assert response.content.strip() == b""
    with pytest.raises(json.JSONDecodeError, match="Expecting value"):
        json.loads(response.content)


def test_keepalive_then_close_streaming_sends_no_data(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """Stream closed before inference started: keep-alive comments only, no data, no [DONE]."""
    fake.add_fault(Fault("keepalive_then_close", seconds=0.02, interval=0.005))
    response = client.post("/chat/completions", json=chat(stream=True))
    assert response.status_code == 200
    assert response.content.startswith(b": keep-alive\n\n")
    assert response.content.replace(b": keep-alive\n\n", b"") == b""


def test_stall_mid_reasoning_keeps_the_socket_open_until_released(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """stall_after 3 events in thinking mode: role + two reasoning chunks, then silence
    (no keep-alive either) until released, then the rest (§7.4)."""
    fake.add_fault(Fault("stall_after", after_chunks=3, seconds=0))
    response, body = _start_stream(client, chat(stream=True))
    try:
        seen = b""
        while seen.count(b"\n\n") < 3:
            seen += next(body)
        chunks = events(seen)
        assert len(chunks) == 3
        assert all("reasoning_content" in c["choices"][0]["delta"] for c in chunks)
        assert fake.in_flight() == 1
        fake.release()
        seen += b"".join(body)
    finally:
        response.close()
    assert deltas(events(seen), "content") == ANSWER


@pytest.mark.parametrize("after", [0, 4])
def test_close_without_done_ends_cleanly_without_finish(
    fake: FakeDeepSeek, client: httpx.Client, after: int
) -> None:
    """close_without_done: the body ends after N events, no finish_reason, no [DONE]."""
    fake.add_fault(Fault("close_without_done", after_chunks=after))
    raw = client.post("/chat/completions", json=chat(stream=True)).content
    assert b"[DONE]" not in raw
    assert b'"finish_reason":"stop"' not in raw
    assert raw.count(b"data: ") == after


def test_drop_cuts_the_connection_mid_stream(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """drop: some events, then the connection is cut (the client sees a broken body)."""
    fake.add_fault(Fault("drop", after_chunks=2))
    with pytest.raises(httpx.HTTPError):
        client.post("/chat/completions", json=chat(stream=True))
    assert fake.wait_for_in_flight(0)


def test_error_line_is_an_in_band_error_event(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """error_line: a data event with the error envelope after N events, then the end."""
    fake.add_fault(Fault("error_line", after_chunks=2, message="Server Overloaded"))
    items = events(client.post("/chat/completions", json=chat(stream=True)).content)
    assert len(items) == 3
    assert items[-1]["error"]["message"] == "Server Overloaded"


def test_malformed_and_blank_lines_go_into_the_stream(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """malformed_line puts a non-JSON data line in; blank_line an empty line; both go on."""
    fake.add_fault(Fault("malformed_line", after_chunks=1), Fault("blank_line", after_chunks=1))
    malformed = client.post("/chat/completions", json=chat(stream=True)).content
    assert b"\n\ndata: {this is not json\n\n" in malformed
    assert malformed.endswith(b"data: [DONE]\n\n")
    blank = client.post("/chat/completions", json=chat(stream=True)).content
    first = blank.index(b"\n\n") + 2
    assert blank[first : first + 1] == b"\n"
    assert blank.endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
def test_insufficient_system_resource_with_partial_content(
    fake: FakeDeepSeek, client: httpx.Client, stream: bool
) -> None:
    """finish_reason fault: the answer stops after N events with that reason, partial text
    and matching usage, streaming or not (§2.4, fact 14)."""
    fake.add_fault(
        Fault("finish_reason", after_chunks=12, finish_reason="insufficient_system_resource")
    )
    body = chat(stream=stream)
    if stream:
        chunks = events(client.post("/chat/completions", json=body).content)
        assert chunks[-1] == "[DONE]"
        final = chunks[-2]
        assert final["choices"][0]["finish_reason"] == "insufficient_system_resource"
        content, usage = deltas(chunks, "content"), final["usage"]
        assert len(chunks) == 12 + 2
    else:
        answer = client.post("/chat/completions", json=body).json()
        assert answer["choices"][0]["finish_reason"] == "insufficient_system_resource"
        content, usage = answer["choices"][0]["message"]["content"], answer["usage"]
    # 12 events = role chunk + 8 reasoning + 3 answer tokens.
    assert content == "".join(answer_tokens(QUESTION, 12)[:3])
    assert usage["completion_tokens"] == 11
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 8


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        (Fault("close_without_done", after_chunks=1), "half"),
        (Fault("close_without_done"), "empty"),
        (Fault("blank_line"), "blank"),
        (Fault("malformed_line"), "not json"),
        (Fault("error_line", message="boom"), "error"),
    ],
)
def test_stream_faults_shape_a_non_streaming_body(
    fake: FakeDeepSeek, client: httpx.Client, fault: Fault, check: str
) -> None:
    """Non-streaming, the stream faults change the JSON body: cut in half, empty,
    whitespace only (§7.1), not JSON, or an in-band error object — all with status 200."""
    whole = client.post("/chat/completions", json=chat()).content
    fake.add_fault(fault)
    response = client.post("/chat/completions", json=chat())
    assert response.status_code == 200
    body = response.content
    if check == "half":
        assert body.startswith(b'{"id":')
        assert len(body) == len(whole) // 2  # ids differ, their lengths do not
    elif check == "empty":
        assert body == b""
    elif check == "blank":
        assert body == b"\n"
    elif check == "not json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(body)
    else:
        assert json.loads(body)["error"]["message"] == "Server Error"


def test_non_streaming_stall_and_drop(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """stall_after holds a non-streaming body halfway until released; drop cuts it."""
    fake.add_fault(Fault("stall_after", after_chunks=1, seconds=0))
    response, body = _start_stream(client, chat())
    try:
        first = next(body)
        assert first.startswith(b'{"id":')
        fake.release()
        whole = first + b"".join(body)
    finally:
        response.close()
    assert json.loads(whole)["choices"][0]["message"]["content"] == ANSWER
    fake.add_fault(Fault("drop", after_chunks=1))
    with pytest.raises(httpx.TransportError):
        client.post("/chat/completions", json=chat())


def test_refuse_for_a_while_reopens_by_itself(fake: FakeDeepSeek, anon: httpx.Client) -> None:
    """refuse with seconds > 0 listens again on the same port afterwards."""
    fake.add_fault(Fault("refuse", seconds=0.05, path="/models"))
    with pytest.raises(httpx.TransportError):
        anon.get("/models")
    deadline = time.monotonic() + 5
    while True:  # wait for the condition "port open again", bounded
        try:
            assert anon.get("/models").status_code == 401
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline


@pytest.mark.parametrize(
    ("status", "message"), [(500, "Server Error"), (503, "Server Overloaded"), (429, None)]
)
def test_status_faults_use_the_envelope(
    fake: FakeDeepSeek, client: httpx.Client, status: int, message: str | None
) -> None:
    """Injected 500/503/429: the envelope, no Retry-After or rate-limit headers (§3)."""
    fake.add_fault(Fault("status", status=status))
    response = client.post("/chat/completions", json=chat(stream=True))
    assert response.status_code == status
    text = error(response)["message"]
    if message is None:
        assert "exceeds your concurrency limit" in text
    else:
        assert text == message
    assert not any(h.startswith(("retry-after", "x-ratelimit")) for h in response.headers)
    fake.add_fault(Fault("status", status=503, message="busy now"))
    assert error(client.post("/chat/completions", json=chat()))["message"] == "busy now"


def test_concurrency_cap_answers_429_at_once(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """Above concurrency_limit: an immediate 429 with the balance-style message (§3.2, §4.1)."""
    fake.concurrency_limit = 1
    fake.add_fault(Fault("stall_before", seconds=0))
    with ThreadPoolExecutor(1) as pool:
        held: Future[httpx.Response] = pool.submit(client.post, "/chat/completions", json=chat())
        assert fake.wait_for_in_flight(1)
        over = client.post("/chat/completions", json=chat())
        assert over.status_code == 429
        assert error(over)["message"] == (
            "Your current concurrency is 2, which exceeds your concurrency limit of 1 based on "
            "your remaining balance. Please top up your balance to restore your concurrency."
        )
        assert "retry-after" not in over.headers
        fake.release()
        assert held.result(timeout=10).status_code == 200
    assert fake.wait_for_in_flight(0)


def test_slow_first_token_sends_headers_first(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """slow_first_token: status and headers arrive while the first event is held."""
    fake.add_fault(Fault("slow_first_token", seconds=0))
    response, body = _start_stream(client, chat(stream=True))
    try:
        assert response.status_code == 200
        assert fake.in_flight() == 1
        fake.release()
        assert deltas(events(b"".join(body)), "content") == ANSWER
    finally:
        response.close()


def test_reset_and_refuse_faults(
    fake: FakeDeepSeek, client: httpx.Client, anon: httpx.Client
) -> None:
    """reset cuts the connection before any status; refuse also closes the port until
    accept_connections()."""
    fake.add_fault(Fault("reset"))
    with pytest.raises(httpx.TransportError):
        client.post("/chat/completions", json=chat())
    assert client.post("/chat/completions", json=chat()).status_code == 200
    fake.add_fault(Fault("refuse", seconds=0))
    with pytest.raises(httpx.TransportError):
        client.post("/chat/completions", json=chat())
    with pytest.raises(httpx.ConnectError):
        anon.get("/models")
    fake.accept_connections()
    assert client.post("/chat/completions", json=chat()).status_code == 200


def test_client_leaving_frees_its_slot(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """A client that disconnects mid-stream frees its in-flight slot."""
    fake.add_fault(Fault("stall_after", after_chunks=2, seconds=0))
    response, body = _start_stream(client, chat(stream=True))
    next(body)
    assert fake.in_flight() == 1
    response.close()
    assert fake.wait_for_in_flight(0)


def test_fault_path_limits_where_it_applies(fake: FakeDeepSeek, client: httpx.Client) -> None:
    """A fault with a path applies only there; a models request does not consume it."""
    fake.add_fault(Fault("status", status=503, path="/v1/chat/completions"))
    assert client.get("/models").status_code == 200
    assert client.post("/chat/completions", json=chat()).status_code == 200
    assert client.post("/v1/chat/completions", json=chat()).status_code == 503


@pytest.mark.anyio
async def test_async_clients_and_the_async_context_manager() -> None:
    """The double runs on its own thread, so an async client works against it too."""
    async with FakeDeepSeek(tokens_per_second=0) as fake:
        fake.add_fault(Fault("keepalive", seconds=0.01, interval=0.002))
        headers = {"Authorization": f"Bearer {fake.api_key}"}
        async with httpx.AsyncClient(base_url=fake.url, headers=headers) as http:
            response = await http.post("/chat/completions", json=chat(stream=True))
    assert response.content.startswith(b": keep-alive\n\n")
    assert response.content.endswith(b"data: [DONE]\n\n")


# -- records, settings, control routes, command line -------------------------------------


def test_requests_are_recorded_without_control_traffic(
    fake: FakeDeepSeek, client: httpx.Client, anon: httpx.Client
) -> None:
    """Serving requests are recorded in order; control routes never are."""
    client.post("/chat/completions", json=chat())
    client.get("/models")
    anon.get("/_dsollama/requests")
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/chat/completions"),
        ("GET", "/models"),
    ]
    assert fake.recorded("/chat/completions")[0].json["messages"] == MESSAGES
    assert fake.recorded(method="GET")[0].path == "/models"
    fake.clear_requests()
    assert fake.requests == []


def test_control_routes_steer_a_double_over_http(
    fake: FakeDeepSeek, client: httpx.Client, anon: httpx.Client
) -> None:
    """Faults, release, requests, config and refuse over /_dsollama/* (no auth needed)."""
    control = httpx.Client(base_url=fake.url + "/_dsollama")
    faults = [{"kind": "status", "status": 503}, {"kind": "reset", "path": "/models"}]
    assert len(control.post("/faults", json=faults).json()["faults"]) == 2
    assert control.get("/faults").json()["faults"][0] == {
        "kind": "status",
        "times": 1,
        "status": 503,
        "after_chunks": 0,
        "seconds": 0.0,
    }
    assert control.delete("/faults").json() == {"faults": []}
    assert control.post("/faults", json={"kind": "bogus"}).status_code == 400
    client.post("/chat/completions", json=chat())
    recorded = control.get("/requests", params={"path": "/chat/completions"}).json()["requests"]
    assert recorded[0]["json"]["model"] == "deepseek-flash"
    assert control.delete("/requests").json() == {"requests": []}
    config = control.post("/config", json={"answer_tokens": 3, "thinking_tokens": 0}).json()
    assert config["answer_tokens"] == 3
    assert client.post("/chat/completions", json=chat()).json()["usage"]["completion_tokens"] == 3
    assert control.post("/config", json={"answer_tokens": -1}).status_code == 400
    assert control.post("/config", json={"nope": 1}).status_code == 400
    assert control.post("/release").json() == {"released": True}
    refused = control.post("/refuse", json={"seconds": 0})
    assert refused.status_code == 200
    assert refused.headers["connection"] == "close"
    with pytest.raises(httpx.ConnectError):
        anon.get("/models")
    fake.accept_connections()
    assert client.get("/models").status_code == 200
    control.close()


def test_configure_checks_names_and_values(fake: FakeDeepSeek) -> None:
    """configure() rejects unknown names and bad values before changing anything."""
    with pytest.raises(ValueError, match="unknown setting"):
        fake.configure(speed=3)
    with pytest.raises(ValueError, match="api_keys"):
        fake.configure(answer_tokens=3, api_keys=[])
    assert fake.answer_tokens == 12
    assert fake.configure(models=["m1"])["models"] == ["m1"]


def test_command_line_serves_until_sigterm() -> None:
    """`python -m dsollama.testing deepseek` prints the URL, serves, stops on SIGTERM."""
    command = [sys.executable, "-m", "dsollama.testing", "deepseek", "--port", "0"]
    with subprocess.Popen(
        [*command, "--api-key", "sk-cli", "--no-balance"], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            headers = {"Authorization": "Bearer sk-cli"}
            response = httpx.post(url + "/chat/completions", json=chat(), headers=headers)
            assert response.status_code == 402
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


def test_main_accepts_the_subcommand_name_and_reports_bad_ports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """main() takes argv with or without 'deepseek' first; a busy port is exit status 1."""
    with FakeDeepSeek() as busy:
        assert main(["deepseek", "--port", str(busy.port)]) == 1
    assert "cannot start" in capsys.readouterr().err


def test_stop_ends_held_requests() -> None:
    """stop() while a request is held returns promptly (stalls are released)."""
    fake = FakeDeepSeek().start()
    fake.add_fault(Fault("stall_before", seconds=0))
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(
                httpx.post(
                    fake.url + "/models", headers={"Authorization": "Bearer sk-test"}
                ).status_code
            )
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    fake.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


# -- answers a client must not take for a stream: JSON bodies, wrong types, HTML pages -----


def test_json_body_answers_a_streaming_request_with_the_whole_completion(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    """json_body: stream=true, yet one application/json completion (a server or proxy that
    ignored the flag), the same answer a non-streaming request gets."""
    fake.add_fault(Fault("json_body"))
    response = client.post("/chat/completions", json=chat(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == (ANSWER, THOUGHT)
    assert body["choices"][0]["finish_reason"] == "stop"
    # Used up: the next streaming request streams again.
    again = client.post("/chat/completions", json=chat(stream=True))
    assert again.headers["content-type"].startswith("text/event-stream")


def test_json_body_on_fim_and_on_a_non_streaming_request(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    fake.add_fault(Fault("json_body"), Fault("json_body"))
    fim = {"model": "deepseek-v4-pro", "prompt": "def f(", "stream": True}
    answer = client.post(fake.beta_url + "/completions", json=fim)
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["object"] == "text_completion"
    whole = client.post("/chat/completions", json=chat())
    assert whole.json()["choices"][0]["message"]["content"] == ANSWER  # unchanged


@pytest.mark.parametrize(("after", "field"), [(3, "reasoning_content"), (10, "content")])
def test_wrong_type_puts_a_number_where_the_text_was_and_goes_on(
    fake: FakeDeepSeek, client: httpx.Client, after: int, field: str
) -> None:
    """wrong_type: the event after N events carries its text as 42; the text it held is
    missing from the stream, which still ends with a finish chunk and [DONE]."""
    clean = events(client.post("/chat/completions", json=chat(stream=True)).content)
    fake.add_fault(Fault("wrong_type", after_chunks=after))
    items = events(client.post("/chat/completions", json=chat(stream=True)).content)
    assert len(items) == len(clean)
    assert items[after]["choices"][0]["delta"][field] == 42
    assert items[-1] == "[DONE]"
    assert items[-2]["choices"][0]["finish_reason"] == "stop"
    lost = clean[after]["choices"][0]["delta"][field]
    assert lost

    def text(stream: list[Any]) -> str:
        values = (e["choices"][0]["delta"].get(field) for e in stream if isinstance(e, dict))
        return "".join(v for v in values if isinstance(v, str))

    assert text(items) == text(clean[:after]) + text(clean[after + 1 :])


def test_wrong_type_past_the_end_retypes_the_finish_chunk(
    fake: FakeDeepSeek, client: httpx.Client
) -> None:
    fake.add_fault(Fault("wrong_type", after_chunks=10_000))
    items = events(client.post("/chat/completions", json=chat(stream=True)).content)
    assert items[-2]["choices"][0]["delta"]["content"] == 42
    assert items[-2]["choices"][0]["finish_reason"] == "stop"


def test_wrong_type_non_streaming_and_fim(fake: FakeDeepSeek, client: httpx.Client) -> None:
    fake.add_fault(Fault("wrong_type"), Fault("wrong_type", path="/beta/completions"))
    message = client.post("/chat/completions", json=chat()).json()["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == (42, 42)
    fim = {"model": "deepseek-v4-pro", "prompt": "def f(", "stream": True}
    items = events(client.post(fake.beta_url + "/completions", json=fim).content)
    assert items[0]["choices"][0]["text"] == 42


@pytest.mark.parametrize("stream", [False, True])
def test_html_body_is_a_proxy_page_with_status_200(
    fake: FakeDeepSeek, anon: httpx.Client, stream: bool
) -> None:
    """html_body: a 200 text/html page before anything else (auth included), as a proxy
    or captive portal answers in the API's place."""
    fake.add_fault(Fault("html_body"))
    response = anon.post("/chat/completions", json=chat(stream=stream))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert b"502 Bad Gateway" in response.content
    assert fake.wait_for_in_flight(0)


@pytest.mark.parametrize("kind", ["json_body", "wrong_type", "html_body"])
def test_the_ollama_double_refuses_the_openai_format_faults(kind: str) -> None:
    from dsollama.testing import FakeOllama

    with pytest.raises(ValueError, match="belongs to the DeepSeek double"):
        FakeOllama().add_fault(Fault(kind))  # type: ignore[arg-type]
