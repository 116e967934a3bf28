"""Ollama-shaped arguments → requests in the plain OpenAI dialect, driven by each route's
capabilities and extra options; and the route fields that configure it."""

from __future__ import annotations

import base64
import doctest
from pathlib import Path
from typing import Any

import ollama
import pytest

from dsollama._exceptions import BadRequestError, ConfigError, UnsupportedRequestError
from dsollama._routes import RouteConfig
from dsollama._wire import openai_request
from dsollama._wire.hosted_request import CHAT_PATH, build_chat_request
from dsollama._wire.openai_request import (
    COMPLETIONS_PATH,
    build_openai_chat_request,
    build_openai_continuation_request,
    build_openai_generate_request,
)
from tests.route_backends import route

USER = [{"role": "user", "content": "hi"}]
MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def vllm(**fields: Any) -> RouteConfig:
    return route({"preset": "vllm", **fields})


def chat(config: RouteConfig | None = None, messages: Any = None, **kwargs: Any) -> Any:
    return build_openai_chat_request(
        USER if messages is None else messages,
        route=config or vllm(),
        model=MODEL,
        **kwargs,
    )


def test_docstring_examples() -> None:
    result = doctest.testmod(openai_request)
    assert result.attempted > 0
    assert result.failed == 0


def test_a_plain_chat_has_openai_fields_only() -> None:
    request = chat(stream=True)
    assert request.path == CHAT_PATH
    assert request.body == {
        "model": MODEL,
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert request.unsupported == []


def test_deepseek_dialect_is_unchanged_by_the_openai_one() -> None:
    """The same arguments on DeepSeek's dialect still carry the thinking switch."""
    deepseek = build_chat_request(USER, hosted_model="deepseek-flash", thinking_default=False)
    assert deepseek.body["thinking"] == {"type": "disabled"}
    assert "thinking" not in chat().body


# -- think ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("switch", "think", "note"),
    [
        ("always", False, "think: this route's model always reasons; cannot switch it off"),
        ("always", "high", "think: this route has no reasoning effort levels; 'high' not sent"),
        ("never", True, "think: this route's model does not reason; cannot switch it on"),
        ("never", "low", "think: this route's model does not reason; cannot switch it on"),
    ],
)
def test_a_think_the_route_cannot_switch_is_reported(switch: str, think: Any, note: str) -> None:
    request = chat(vllm(capabilities={"thinking": switch}), think=think)
    assert request.unsupported == [note]
    assert "thinking" not in request.body
    assert "reasoning_effort" not in request.body


@pytest.mark.parametrize(
    ("switch", "think"), [("always", True), ("never", False), ("always", None)]
)
def test_a_think_the_route_already_honours_is_silent(switch: str, think: Any) -> None:
    assert chat(vllm(capabilities={"thinking": switch}), think=think).unsupported == []


def test_a_route_with_deepseeks_switch_gets_it_only_when_asked() -> None:
    config = vllm(capabilities={"thinking": "deepseek"})
    assert "thinking" not in chat(config).body
    body = chat(config, think="max").body
    assert (body["thinking"], body["reasoning_effort"]) == ({"type": "enabled"}, "max")
    assert chat(config, think=False).body["thinking"] == {"type": "disabled"}


def test_an_invalid_think_is_refused_on_every_route() -> None:
    with pytest.raises(BadRequestError, match="invalid think value"):
        chat(think="extreme")


# -- options -------------------------------------------------------------------------------


def test_openai_options_keep_their_names() -> None:
    options = {
        "temperature": 0.3,
        "top_p": 0.9,
        "num_predict": 50,
        "stop": ["\n\n", ""],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }
    request = chat(options=options)
    assert {k: v for k, v in request.body.items() if k not in ("model", "messages")} == {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "stream": False,
    }
    assert request.unsupported == []  # nothing about thinking mode or deprecated penalties


def test_out_of_range_values_are_clamped_and_noted() -> None:
    request = chat(options={"temperature": 3.5})
    assert request.body["temperature"] == 2.0
    assert request.unsupported == ["temperature: 3.5 is outside the OpenAI range 0–2; sent 2"]


def test_many_stops_are_all_sent() -> None:
    """The 16-string limit is DeepSeek's, not every server's."""
    assert len(chat(options={"stop": [f"s{i}" for i in range(20)]}).body["stop"]) == 20


def test_extra_options_go_out_under_the_servers_names() -> None:
    """vLLM says repetition_penalty for Ollama's repeat_penalty; llama-server keeps it."""
    options = {"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1}
    on_vllm = chat(options=options).body
    assert (on_vllm["top_k"], on_vllm["min_p"], on_vllm["repetition_penalty"]) == (20, 0.05, 1.1)
    on_llama = chat(route({"preset": "llamacpp"}), options=options).body
    assert (on_llama["top_k"], on_llama["repeat_penalty"]) == (20, 1.1)
    assert "repetition_penalty" not in on_llama


def test_a_wire_name_given_directly_goes_out_when_listed() -> None:
    assert chat(options={"repetition_penalty": 1.2}).body["repetition_penalty"] == 1.2


def test_options_the_route_does_not_take_are_reported_with_the_fix() -> None:
    request = chat(route({"preset": "lmstudio"}), options={"top_k": 5, "num_ctx": 8192, "x": 1})
    assert "top_k" not in request.body
    assert request.unsupported == [
        "top_k: not sent; this route does not take it (add its name to the route's extra_options if the server does)",
        "num_ctx: a local-daemon setting with no equivalent on this route",
        "x: unknown option, not sent",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": "7"}, "option seed must be an integer"),
        ({"temperature": "hot"}, "option temperature must be a number"),
        ({"top_k": [1]}, "option top_k must be a number"),
        ({"num_predict": "lots"}, "option num_predict must be an integer"),
    ],
)
def test_bad_option_values_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        chat(options=options)


def test_zero_num_predict_is_noted() -> None:
    request = chat(options={"num_predict": 0})
    assert "max_tokens" not in request.body
    assert request.unsupported == [
        "num_predict: 0 has no OpenAI equivalent (max_tokens must be ≥ 1); not sent"
    ]


# -- format --------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_schema_is_enforced_by_a_server_that_can() -> None:
    request = chat(format=SCHEMA)
    assert request.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA},
    }
    assert request.body["messages"] == USER  # nothing added to the prompt
    assert request.schema is None  # and nothing to check afterwards


def test_a_schema_on_a_server_that_cannot_is_json_mode_and_checked() -> None:
    request = chat(vllm(capabilities={"json_schema": False}), format=SCHEMA)
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.body["messages"][0]["role"] == "system"
    assert "conforms to this JSON schema" in request.body["messages"][0]["content"]
    assert request.schema == SCHEMA


def test_json_mode() -> None:
    assert chat(format="json").body["response_format"] == {"type": "json_object"}
    assert chat(format="json").body["messages"] == USER
    with pytest.raises(BadRequestError, match="invalid format"):
        chat(format="yaml")


# -- images --------------------------------------------------------------------------------


def test_images_become_image_url_parts_on_a_vision_route(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    path.write_bytes(PNG)
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\x00" * 8).decode()
    messages = [{"role": "user", "content": "what is this", "images": [str(path), jpeg]}]
    request = chat(vllm(capabilities={"images": True}), messages)
    assert request.body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
        },
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + jpeg}},
    ]


def test_images_from_ollama_models_and_bytes() -> None:
    message = ollama.Message(role="user", content="", images=[ollama.Image(value=PNG)])
    request = chat(vllm(capabilities={"images": True}), [message])
    [part] = request.body["messages"][0]["content"]
    assert part["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


def test_images_on_a_route_without_vision_are_refused() -> None:
    messages = [{"role": "user", "content": "x", "images": [base64.b64encode(PNG).decode()]}]
    with pytest.raises(UnsupportedRequestError, match="images cannot go to the route"):
        chat(messages=messages)


def test_images_on_other_roles_are_noted() -> None:
    image = base64.b64encode(PNG).decode()
    messages = [*USER, {"role": "assistant", "content": "ok", "images": [image]}]
    request = chat(vllm(capabilities={"images": True}), messages)
    assert request.body["messages"][1] == {"role": "assistant", "content": "ok"}
    assert request.unsupported == [
        "messages[1]: only user messages carry images in OpenAI format; not sent"
    ]


def test_an_image_that_is_not_one_is_a_bad_request() -> None:
    messages = [{"role": "user", "content": "x", "images": ["missing.png"]}]
    with pytest.raises(BadRequestError, match=r"messages\[0\]\.images\[0\] is not an image"):
        chat(vllm(capabilities={"images": True}), messages)


# -- tools ---------------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def test_tools_go_out_as_functions() -> None:
    assert chat(tools=[TOOL]).body["tools"] == [TOOL]


def test_tools_on_a_route_without_tool_calling_are_refused() -> None:
    with pytest.raises(UnsupportedRequestError, match="has no tool calling"):
        chat(vllm(capabilities={"tools": False}), tools=[TOOL])


def test_tool_call_history_has_no_deepseek_reasoning_echo() -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": "",
            "thinking": "need the weather",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "rain", "tool_name": "weather"},
    ]
    wire = chat(messages=messages, tools=[TOOL]).body["messages"]
    assert "reasoning_content" not in wire[1]
    assert wire[2]["tool_call_id"] == wire[1]["tool_calls"][0]["id"]


# -- generate ------------------------------------------------------------------------------


def generate(config: RouteConfig | None = None, **kwargs: Any) -> Any:
    return build_openai_generate_request(route=config or vllm(), model=MODEL, **kwargs)


def test_generate_is_a_chat_with_images_when_the_route_sees() -> None:
    image = base64.b64encode(PNG).decode()
    request = generate(
        vllm(capabilities={"images": True}), prompt="describe", system="be brief", images=[image]
    )
    assert request.body["messages"][0] == {"role": "system", "content": "be brief"}
    assert request.body["messages"][1]["content"][1]["type"] == "image_url"


def test_generate_notes_what_has_no_equivalent() -> None:
    request = generate(prompt="hi", template="{{ .Prompt }}", context=[1, 2], raw=True)
    assert [n.split(":")[0] for n in request.unsupported] == ["template", "context", "raw"]


def test_fim_uses_completions_when_the_route_can() -> None:
    config = vllm(capabilities={"fim": True})
    request = generate(config, prompt="def f(", suffix="\n    return x", think=True, system="s")
    assert request.path == COMPLETIONS_PATH
    assert request.body["prompt"] == "def f("
    assert request.body["suffix"] == "\n    return x"
    assert [n.split(":")[0] for n in request.unsupported] == ["think", "system"]
    big = generate(config, prompt="a", suffix="b", options={"num_predict": 9000})
    assert big.body["max_tokens"] == 9000  # DeepSeek's 4K FIM cap is not applied


def test_fim_on_a_route_that_cannot_is_refused_never_sent_to_beta() -> None:
    with pytest.raises(UnsupportedRequestError, match="no fill-in-the-middle"):
        generate(prompt="a", suffix="b")


# -- continuation --------------------------------------------------------------------------


def test_vllm_continues_a_final_assistant_message_with_its_flags() -> None:
    original = chat(stream=True, options={"temperature": 0.5})
    request = build_openai_continuation_request(original, "The sky", "thought", route=vllm())
    assert request.path == CHAT_PATH
    assert request.body["messages"] == [*USER, {"role": "assistant", "content": "The sky"}]
    assert request.body["continue_final_message"] is True
    assert request.body["add_generation_prompt"] is False
    assert request.body["temperature"] == 0.5
    assert request.continues_answer
    assert "continue_final_message" not in original.body  # the original is untouched


def test_llamacpp_continues_a_final_assistant_message_as_it_is() -> None:
    config = route({"preset": "llamacpp"})
    original = build_openai_chat_request(USER, route=config, model="m")
    request = build_openai_continuation_request(original, "The sky", route=config)
    assert request.body["messages"][-1] == {"role": "assistant", "content": "The sky"}
    assert set(request.body) == set(original.body)


def test_continuing_a_continuation_replaces_the_partial() -> None:
    first = build_openai_continuation_request(chat(), "The", route=vllm())
    second = build_openai_continuation_request(first, "The sky is", route=vllm())
    assert second.body["messages"] == [*USER, {"role": "assistant", "content": "The sky is"}]


def test_an_answer_broken_inside_its_reasoning_cannot_be_continued() -> None:
    with pytest.raises(UnsupportedRequestError, match="inside its reasoning"):
        build_openai_continuation_request(chat(), "", "half a thought", route=vllm())


def test_a_route_without_continuation_refuses() -> None:
    config = route({"preset": "lmstudio"})
    original = build_openai_chat_request(USER, route=config, model="m")
    with pytest.raises(UnsupportedRequestError, match="cannot continue"):
        build_openai_continuation_request(original, "The", route=config)


def test_fim_continuation_extends_the_prompt() -> None:
    config = vllm(capabilities={"fim": True})
    original = generate(config, prompt="def f(", suffix=")")
    request = build_openai_continuation_request(original, "x, y", route=config)
    assert (request.path, request.body["prompt"]) == (COMPLETIONS_PATH, "def f(x, y")


# -- route fields --------------------------------------------------------------------------


def test_presets_carry_the_new_fields() -> None:
    config = vllm()
    assert config.dialect == "openai"
    assert config.extra_options == ("top_k", "min_p", "repetition_penalty")
    assert config.continuation_fields == {
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    assert config.capabilities.continuation
    assert (config.load_ttl, config.load_timeout) == (0.25, 0.2)
    assert route({"preset": "deepseek"}).extra_options == ()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"extra_options": "top_k"}, "extra_options must be a list of option names"),
        ({"extra_options": ["top k"]}, "extra_options holds 'top k', not option names"),
        ({"load_ttl": 0}, "load_ttl = 0 must be a number of seconds above 0"),
        ({"load_ttl": "fast"}, "load_ttl = 'fast' must be a number of seconds"),
        ({"load_timeout": 600}, "load_timeout = 600 must be a number of seconds"),
        ({"metrics_url": "ftp://box/metrics"}, "metrics_url: the URL must start with https://"),
        ({"continuation_fields": {"x": [1]}}, "continuation_fields must be a table"),
        ({"extra_options": ["top_k", "model"]}, "extra_options names model, which dsollama sets"),
        ({"continuation_fields": {"messages": "x"}}, "continuation_fields names messages"),
        ({"dialect": "ollama"}, "dialect 'ollama' needs api 'ollama'"),
        ({"capabilities": {"reasoning_field": "elsewhere"}}, "capabilities.reasoning_field"),
    ],
)
def test_bad_route_fields_are_named(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        vllm(**fields)


def test_good_route_fields_are_kept() -> None:
    config = vllm(
        extra_options=["top_k"],
        load_ttl=1,
        load_timeout=0.5,
        metrics_url="http://127.0.0.1:9/metrics",
        capabilities={"reasoning_field": "inline"},
    )
    assert config.extra_options == ("top_k",)
    assert (config.load_ttl, config.load_timeout) == (1.0, 0.5)
    assert config.metrics_url == "http://127.0.0.1:9/metrics"
    assert config.capabilities.reasoning_field == "inline"
