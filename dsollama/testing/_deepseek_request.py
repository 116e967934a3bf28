"""The DeepSeek double's requests: checks and errors, the way DeepSeek answers them.

Pure (no I/O). `parse_chat` / `parse_fim` check a body in the order the real service seems
to (type errors while deserialising, then values, then model-specific rules) and raise
`ApiError`, which carries DeepSeek's status and error envelope.

Section numbers (§n) refer to the project's DeepSeek reference. Where DeepSeek's exact text
is not known the message is an assumption, and the comment next to it says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._server import Response

__all__ = [
    "ApiError",
    "ChatRequest",
    "FimRequest",
    "ToolSpec",
    "auth_error",
    "concurrency_message",
    "error_event",
    "error_response",
    "parse_chat",
    "parse_fim",
    "text_of",
]

# -- errors -------------------------------------------------------------------------------

# §3.1: every error is {"error": {message, type, param, code}}; `code` is
# "invalid_request_error" in every capture, even for 401/402, so it is kept everywhere.
_DEFAULT_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Invalid Format", "invalid_request_error"),  # assumption: the docs' table name
    401: ("Authentication Fails (no such user)", "authentication_error"),  # observed, §1.2
    402: ("Insufficient Balance", "unknown_error"),  # observed, §3.1
    422: ("Invalid Parameters", "invalid_request_error"),  # assumption: the docs' table name
    # 429/500/503 bodies were never captured verbatim (§3.2): the docs' table names, and
    # a `type` borrowed from OpenAI's vocabulary. Assumptions.
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    503: ("Server Overloaded", "server_error"),
}

MODEL_NOT_EXIST = "Model Not Exist"  # observed, §1.3
AUTH_HEADER_FORMAT = "Authentication Fails (auth header format should be Bearer sk-...)"
REASONING_PASSBACK = "The reasoning_content in the thinking mode must be passed back to the API."
# Observed error text: Axum/serde rejections. Captures from late 2025 on show them as 400
# with the envelope (earlier ones were 422), so type errors are 400 here.
_DESERIALIZE = "Failed to deserialize the JSON body into the target type: "
_PARSE = "Failed to parse the request body as JSON: "
_MAX_TOKENS_CHAT = 393_216  # 384K, §1.3 (V4)
_MAX_TOKENS_FIM = 4_096  # §5.2


class ApiError(Exception):
    """An error answer: HTTP status plus DeepSeek's error envelope."""

    def __init__(self, status: int, message: str | None = None, type_: str | None = None) -> None:
        default_message, default_type = _DEFAULT_ERRORS.get(
            status, ("Unknown Error", "unknown_error")
        )
        self.status = status
        self.message = message if message is not None else default_message
        self.type = type_ or default_type
        super().__init__(f"{status} {self.message}")

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": None,
                "code": "invalid_request_error",
            }
        }

    def response(self) -> Response:
        # No Retry-After and no rate-limit headers: DeepSeek sends none (§3.1).
        return Response.json(self.payload(), status=self.status)


def error_response(status: int, message: str | None = None) -> Response:
    return ApiError(status, message).response()


def concurrency_message(current: int, limit: int) -> str:
    """The 429 text captured in 2026-09 (§3.2)."""
    return (
        f"Your current concurrency is {current}, which exceeds your concurrency limit of "
        f"{limit} based on your remaining balance. Please top up your balance to restore "
        "your concurrency."
    )


def auth_error(header: str | None, api_keys: Sequence[str]) -> ApiError | None:
    """None when ``header`` carries an accepted key, else the 401 DeepSeek sends (§1.2)."""
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return ApiError(401, AUTH_HEADER_FORMAT, "authentication_error")
    if token in api_keys:
        return None
    return ApiError(
        401,
        f"Authentication Fails, Your api key: ****{token[-4:]} is invalid",
        "authentication_error",
    )


# -- serde-like type checks ---------------------------------------------------------------


def _unexpected(value: Any) -> str:
    """How serde names a JSON value in "invalid type" errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def _type_error(path: str, problem: str) -> ApiError:
    # Real messages end with "at line L column C"; positions are left out here because
    # Python's parser does not report where a value sits. Clients match on the prefix.
    return ApiError(400, f"{_DESERIALIZE}{path + ': ' if path else ''}{problem}")


def _missing(path: str, name: str) -> ApiError:
    return _type_error(path, f"missing field `{name}`")


def _invalid(path: str, value: Any, expected: str) -> ApiError:
    return _type_error(path, f"invalid type: {_unexpected(value)}, expected {expected}")


def _variant(path: str, value: Any, variants: Sequence[str]) -> ApiError:
    if not isinstance(value, str):
        return _invalid(path, value, "a string")
    names = ", ".join(f"`{v}`" for v in variants)
    expected = f"one of {names}" if len(variants) > 1 else names
    return _type_error(path, f"unknown variant `{value}`, expected {expected}")


def _opt_bool(body: Mapping[str, Any], key: str, path: str = "") -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _invalid(path + key, value, "a boolean")


def _opt_int(body: Mapping[str, Any], key: str, path: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(path + key, value, "u32")
    return value


def _opt_number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(key, value, "f32")
    return float(value)


def _load_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        # Assumption: Axum's syntax rejection (400); the detail is Python's wording.
        line = getattr(exc, "lineno", 1)
        column = getattr(exc, "colno", 1)
        detail = getattr(exc, "msg", str(exc))
        raise ApiError(400, f"{_PARSE}{detail} at line {line} column {column}") from None
    if not isinstance(body, dict):
        raise _invalid("", body, "a map")
    return body


def _model(body: Mapping[str, Any]) -> str:
    if "model" not in body:
        raise _missing("", "model")
    model = body["model"]
    if not isinstance(model, str):
        raise _invalid("model", model, "a string")
    return model


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _type_error("stop", "data did not match any variant of untagged enum Stop")
    if len(value) > 16:
        # §2.1 allows at most 16; the 422 text is an assumption.
        raise ApiError(422, "Invalid stop value, at most 16 stop sequences are allowed")
    return tuple(value)


def _range_checks(
    temperature: float | None, top_p: float | None, max_tokens: int | None, max_allowed: int
) -> None:
    if max_tokens is not None and not 1 <= max_tokens <= max_allowed:
        # Observed, 400: "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]".
        raise ApiError(
            400,
            f"Invalid max_tokens value, the valid range of max_tokens is [1, {max_allowed}]",
        )
    # 422 "Invalid Parameters" (§3.2); the wording copies the observed max_tokens message
    # and is an assumption.
    if temperature is not None and not 0 <= temperature <= 2:
        raise ApiError(422, "Invalid temperature value, the valid range of temperature is [0, 2]")
    if top_p is not None and not 0 < top_p <= 1:
        raise ApiError(422, "Invalid top_p value, the valid range of top_p is (0, 1]")


def _stream_options(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise _invalid("stream_options", options, "struct StreamOptions")
    return bool(_opt_bool(options, "include_usage", "stream_options."))


def _thinking(body: Mapping[str, Any]) -> bool | None:
    value = body.get("thinking")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid("thinking", value, "struct Thinking")
    kind = value.get("type")
    if kind not in ("enabled", "disabled"):
        raise _variant("thinking.type", kind, ("enabled", "disabled"))
    return bool(kind == "enabled")


# §2.1: low/high/max, with medium/xhigh → high and minimal → low, ultra → max accepted.
_EFFORTS = ("low", "high", "max", "minimal", "medium", "xhigh", "ultra")

# -- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    thinking: bool = True
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "none"
    "none, auto, required, or the name of the one function to call."
    json_mode: bool = False
    prefix: str | None = None
    "The content of a final ``prefix: true`` assistant message (beta prefix completion)."
    prefix_reasoning: str | None = None
    top_logprobs: int | None = None
    "Set (possibly 0) when ``logprobs`` was requested."


@dataclass(frozen=True)
class FimRequest:
    model: str
    prompt: str
    suffix: str = ""
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    echo: bool = False
    logprobs: int | None = None


def _check_model(model: str, models: Sequence[str], retired: Sequence[str]) -> None:
    # Retired names fail exactly like unknown ones (§0, §7.7).
    if model not in models or model in retired:
        raise ApiError(400, MODEL_NOT_EXIST)


_ROLES = ("system", "user", "assistant", "tool")


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    if "messages" not in body:
        raise _missing("", "messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid("messages", messages, "a sequence")
    for index, message in enumerate(messages):
        path = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid(path, message, "internally tagged enum")
        if "role" not in message:
            raise _missing(path, "role")
        role = message["role"]
        if role not in _ROLES:
            raise _variant(path, role, _ROLES)
        content = message.get("content")
        if role != "assistant" and "content" not in message:
            raise _missing(path, "content")
        if content is None and role != "assistant":
            raise _invalid(path + ".content", content, "a string")
        if content is not None and not isinstance(content, (str, list)):
            # Lists are content parts (image input on flash, §1.3).
            raise _invalid(path + ".content", content, "a string")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _missing(path, "tool_call_id")
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise _invalid(path + ".tool_calls", calls, "a sequence")
    if not messages:
        # Assumption: an empty list is rejected; the wording is not known.
        raise ApiError(400, "Invalid messages: at least one message is required")
    return messages


def _tools(body: Mapping[str, Any]) -> tuple[ToolSpec, ...]:
    tools = body.get("tools")
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise _invalid("tools", tools, "a sequence")
    specs = []
    for index, tool in enumerate(tools):
        path = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _invalid(path, tool, "struct Tool")
        if tool.get("type") != "function":
            # Observed via LiteLLM: "unknown variant '<type>', expected 'function'".
            raise _variant(path + ".type", tool.get("type"), ("function",))
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _missing(path, "function")
        name = function.get("name")
        if not isinstance(name, str):
            raise _missing(path + ".function", "name")
        parameters = function.get("parameters") or {}
        specs.append(ToolSpec(name, parameters if isinstance(parameters, dict) else {}))
    if len(specs) > 128:
        # §2.1: at most 128 tools; the 422 text is an assumption.
        raise ApiError(422, "Invalid tools value, at most 128 tools are allowed")
    return tuple(specs)


def _tool_choice(body: Mapping[str, Any], has_tools: bool) -> str:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto" if has_tools else "none"  # §2.1 defaults
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise _variant("tool_choice", choice, ("none", "auto", "required"))
        return choice
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return "=" + str(function["name"])
    raise _type_error("tool_choice", "data did not match any variant of untagged enum ToolChoice")


def _json_mode(body: Mapping[str, Any]) -> bool:
    fmt = body.get("response_format")
    if fmt is None:
        return False
    if not isinstance(fmt, dict):
        raise _invalid("response_format", fmt, "struct ResponseFormat")
    kind = fmt.get("type")
    if kind == "json_schema":
        # Observed (2025), verbatim apart from the position.
        raise _type_error(
            "response_format", "response_format.type `json_schema` is unavailable now"
        )
    if kind not in ("text", "json_object"):
        raise _variant("response_format.type", kind, ("text", "json_object"))
    return bool(kind == "json_object")


def _check_reasoning_passback(messages: Sequence[Mapping[str, Any]]) -> None:
    """§2.2: in thinking mode every assistant message of a turn with tool calls needs its
    ``reasoning_content`` back (an empty string counts as missing, §2.2 [obs])."""
    turn: list[Mapping[str, Any]] = []

    def check(turn: list[Mapping[str, Any]]) -> None:
        assistants = [m for m in turn if m.get("role") == "assistant" and not m.get("prefix")]
        if any(m.get("tool_calls") for m in assistants):
            for message in assistants:
                reasoning = message.get("reasoning_content")
                if not isinstance(reasoning, str) or reasoning == "":
                    raise ApiError(400, REASONING_PASSBACK)

    for message in messages:
        if message.get("role") == "user":
            check(turn)
            turn = []
        turn.append(message)
    check(turn)


def parse_chat(
    raw: bytes, *, beta: bool, models: Sequence[str], retired: Sequence[str]
) -> ChatRequest:
    """Check a chat request the way DeepSeek does; raise `ApiError` on the first problem."""
    body = _load_object(raw)
    # Type errors first (the server deserialises the whole body before it checks values).
    model = _model(body)
    messages = _messages(body)
    stream = bool(_opt_bool(body, "stream"))
    include_usage = _stream_options(body)
    thinking = _thinking(body)
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in _EFFORTS:
        raise _variant("reasoning_effort", effort, ("low", "high", "max"))
    max_tokens = _opt_int(body, "max_tokens")
    temperature = _opt_number(body, "temperature")
    top_p = _opt_number(body, "top_p")
    # Deprecated, accepted, no effect (§2.1); only their type is checked.
    _opt_number(body, "presence_penalty")
    _opt_number(body, "frequency_penalty")
    logprobs = _opt_bool(body, "logprobs")
    top_logprobs = _opt_int(body, "top_logprobs")
    stop = _stop(body)
    tools = _tools(body)
    tool_choice = _tool_choice(body, bool(tools))
    json_mode = _json_mode(body)

    _check_model(model, models, retired)
    _range_checks(temperature, top_p, max_tokens, _MAX_TOKENS_CHAT)
    if top_logprobs is not None and not 0 <= top_logprobs <= 20:
        # §2.1: at most 20; the 422 text is an assumption.
        raise ApiError(
            422, "Invalid top_logprobs value, the valid range of top_logprobs is [0, 20]"
        )
    last = messages[-1]
    prefix: str | None = None
    prefix_reasoning: str | None = None
    if last.get("role") == "assistant" and last.get("prefix"):
        if not beta:
            # §5.1: prefix completion needs the /beta base. The status (400) and the text
            # are assumptions (§ test-relevant fact 17).
            raise ApiError(
                400,
                "Chat prefix completion is a beta feature: use base_url "
                "https://api.deepseek.com/beta",
            )
        prefix = text_of(last.get("content"))
        reasoning = last.get("reasoning_content")
        prefix_reasoning = reasoning if isinstance(reasoning, str) else None
    on = True if thinking is None else thinking  # V4: thinking is the default (§1.3)
    if on:
        _check_reasoning_passback(messages)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        thinking=on,
        max_tokens=max_tokens,
        stop=stop,
        tools=tools,
        tool_choice=tool_choice,
        json_mode=json_mode,
        prefix=prefix,
        prefix_reasoning=prefix_reasoning,
        top_logprobs=(top_logprobs or 0) if logprobs else None,
    )


def parse_fim(raw: bytes, *, models: Sequence[str], retired: Sequence[str]) -> FimRequest:
    """Check a FIM (``/beta/completions``) request; raise `ApiError` on the first problem."""
    body = _load_object(raw)
    model = _model(body)
    if "prompt" not in body:
        raise _missing("", "prompt")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise _invalid("prompt", prompt, "a string")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _invalid("suffix", suffix, "a string")
    stream = bool(_opt_bool(body, "stream"))
    include_usage = _stream_options(body)
    thinking = _thinking(body)
    max_tokens = _opt_int(body, "max_tokens")
    temperature = _opt_number(body, "temperature")
    top_p = _opt_number(body, "top_p")
    echo = bool(_opt_bool(body, "echo"))
    logprobs = _opt_int(body, "logprobs")
    stop = _stop(body)

    _check_model(model, models, retired)
    if thinking:
        # §5.2: FIM is non-thinking only. Status and text are assumptions.
        raise ApiError(400, "FIM completion is not supported in thinking mode")
    _range_checks(temperature, top_p, max_tokens, _MAX_TOKENS_FIM)
    if logprobs is not None and not 0 <= logprobs <= 20:
        raise ApiError(422, "Invalid logprobs value, the valid range of logprobs is [0, 20]")
    return FimRequest(
        model=model,
        prompt=prompt,
        suffix=suffix or "",
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
        stop=stop,
        echo=echo,
        logprobs=logprobs,
    )


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "".join(str(p) for p in parts)
    return str(content)


def error_event(message: str | None) -> bytes:
    """An in-band error as a ``data:`` event. Not documented for DeepSeek (§2.5); the shape
    is the error envelope, which openai-python turns into an ``APIError``."""
    payload = ApiError(500, message or "Server Error").payload()
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
