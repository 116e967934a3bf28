"""OpenAI format ⇄ the library's arguments and results: pure translation, no I/O.

Requests to ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` become the
keyword arguments of `AsyncClient.chat` / ``generate`` / ``embed``; their results become
OpenAI objects and SSE events. Fields OpenAI defines and the library cannot honour are
refused with a 400 naming them (``n`` > 1, remote image URLs, token-array prompts) rather
than ignored; fields with no effect anywhere (``user``, ``metadata``) are accepted.

Reasoning is sent as ``reasoning_content`` (``message.reasoning_content`` and
``delta.reasoning_content``): DeepSeek's own API spells it so, and the clients people use
with DeepSeek (Cherry Studio, Open WebUI, LibreChat, most SDK wrappers) read that field.
Ollama's ``/v1`` spells it ``reasoning``; sending both would show the reasoning twice in
clients that read both.

Extensions over OpenAI's schema, for clients that can send extra body fields:
``options`` (Ollama's runtime options, e.g. ``num_ctx``), ``keep_alive``, ``think``, and
DeepSeek's ``thinking: {"type": "enabled"|"disabled"}``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import struct
import time
from typing import Any

from .chunk_bytes import string
from .errors import ApiError
from .info import call_extras
from .validate import Body, decode_image, describe, dumps

__all__ = [
    "ChatStreamEncoder",
    "CompletionStreamEncoder",
    "chat_kwargs",
    "completion_kwargs",
    "embedding_kwargs",
    "embedding_list",
    "finish_reason",
    "usage",
]

FINGERPRINT = "fp_dsollama"
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
DONE = b"data: [DONE]\n\n"

# OpenAI's reasoning_effort → the library's think. "none" switches reasoning off.
_EFFORT: dict[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "max",
    "max": "max",
}
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


def _event(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


# The fixed parts of a streamed chunk around its model name and its text, for the parts
# written from a template (the events' JSON as `dumps` writes it, keys in its order).
_CHUNK_MIDDLE = f',"system_fingerprint":"{FINGERPRINT}","choices":[{{"index":0,"delta":'
_CHUNK_TAIL = ',"logprobs":null,"finish_reason":null}]}\n\n'
_TEXT_MIDDLE = f',"system_fingerprint":"{FINGERPRINT}","choices":[{{"text":'
_TEXT_TAIL = ',"index":0,"logprobs":null,"finish_reason":null'


def _string_members(mapping: dict[str, Any]) -> str | None:
    """``"key":"value",…`` for a mapping of strings to strings (else None)."""
    members = []
    for key, value in mapping.items():
        if type(value) is not str:
            return None
        members.append(f"{string(key)}:{string(value)}")
    return ",".join(members)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# -- requests ---------------------------------------------------------------------------


def _model(body: Body) -> str:
    return body.required_str("model", "you must provide a model parameter (a name from /v1/models)")


def _image(url: Any, where: str) -> bytes:
    """A base64 data: URL's image bytes; remote URLs are refused (nothing here fetches them)."""
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str):
        raise ApiError(400, f"invalid field '{where}': expected an image URL", param="messages")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        if not data:
            raise ApiError(400, f"invalid field '{where}': empty data URL", param="messages")
        if not header.endswith(";base64"):
            raise ApiError(
                400,
                f"invalid field '{where}': send the image as a base64 data: URL "
                "(data:image/png;base64,...)",
                param="messages",
            )
        return decode_image(data, where, param="messages")
    raise ApiError(
        400,
        f"invalid field '{where}': image URLs are not fetched; send the image inline as a "
        "base64 data: URL (data:image/png;base64,...)",
        param="messages",
    )


def _content(content: Any, where: str) -> tuple[str, list[bytes]]:
    """A message's text and images from OpenAI's string-or-parts content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise ApiError(
            400,
            f"invalid field '{where}.content': expected a string or a list of parts, got {describe(content)}",
            param="messages",
        )
    texts: list[str] = []
    images: list[bytes] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text") and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images.append(_image(part.get("image_url"), f"{where}.content[{j}]"))
        else:
            raise ApiError(
                400,
                f"invalid field '{where}.content[{j}]': unsupported part {describe(kind)}; "
                "send text and image_url parts",
                param="messages",
            )
    return "\n".join(texts), images


def _arguments(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str) or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"_raw": text}  # kept byte for byte for the hosted route (see _wire)
    return value if isinstance(value, dict) else {"_raw": text}


def _messages(body: Body) -> list[dict[str, Any]]:
    raw = body.array("messages")
    if not raw:
        raise ApiError(
            400, "messages must be a non-empty list of {role, content} objects", param="messages"
        )
    out: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise ApiError(400, f"invalid field '{where}': expected an object", param="messages")
        role = message.get("role")
        if role not in _ROLES:
            raise ApiError(
                400,
                f"invalid field '{where}.role': {describe(role)}; use system, user, assistant or tool",
                param="messages",
            )
        text, images = _content(message.get("content"), where)
        converted: dict[str, Any] = {
            "role": {"developer": "system", "function": "tool"}.get(role, role),
            "content": text,
        }
        if images:
            converted["images"] = images
        if role == "assistant":
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                converted["thinking"] = reasoning
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise ApiError(400, f"invalid field '{where}.tool_calls'", param="messages")
            converted_calls = []
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise ApiError(
                        400,
                        f"invalid field '{where}.tool_calls': each needs function.name",
                        param="messages",
                    )
                entry: dict[str, Any] = {
                    "function": {
                        "name": function["name"],
                        "arguments": _arguments(function.get("arguments")),
                    }
                }
                if isinstance(call.get("id"), str):
                    entry["id"] = call["id"]
                converted_calls.append(entry)
            if converted_calls:
                converted["tool_calls"] = converted_calls
        elif role in ("tool", "function"):
            if isinstance(message.get("tool_call_id"), str):
                converted["tool_call_id"] = message["tool_call_id"]
            if isinstance(message.get("name"), str):
                converted["tool_name"] = message["name"]
        elif isinstance(message.get("name"), str):
            converted["name"] = message["name"]
        out.append(converted)
    return out


def _think(body: Body) -> bool | str | None:
    effort = body.raw("reasoning_effort")
    reasoning = body.raw("reasoning")
    if effort is None and isinstance(reasoning, dict):
        effort = reasoning.get("effort")
    if effort is not None:
        if not isinstance(effort, str) or effort not in _EFFORT:
            raise ApiError(
                400,
                f"invalid reasoning_effort {describe(effort)}; use " + ", ".join(_EFFORT),
                param="reasoning_effort",
            )
        return _EFFORT[str(effort)]
    thinking = body.raw("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"):
        return bool(thinking["type"] == "enabled")
    think = body.raw("think")
    if think is None or isinstance(think, bool):
        return think
    if think in ("low", "medium", "high", "max"):
        return str(think)
    raise ApiError(400, f"invalid think {describe(think)}; use true or false", param="think")


def _stop(body: Body) -> list[str] | None:
    stop = body.raw("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise ApiError(
        400, "invalid field 'stop': expected a string or a list of strings", param="stop"
    )


def _options(body: Body) -> dict[str, Any] | None:
    options = dict(body.mapping("options") or {})
    numbers = {
        "temperature": body.number("temperature", 0, 2),
        "top_p": body.number("top_p", 0, 1),
        "frequency_penalty": body.number("frequency_penalty", -2, 2),
        "presence_penalty": body.number("presence_penalty", -2, 2),
    }
    for name, value in numbers.items():
        if value is not None:
            options[name] = value
    seed = body.integer("seed")
    if seed is not None:
        options["seed"] = seed
    max_tokens = body.integer("max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = body.integer("max_tokens", 1)
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    stop = _stop(body)
    if stop is not None:
        options["stop"] = stop
    return options or None


def _single_choice(body: Body) -> None:
    n = body.integer("n", 1)
    if n is not None and n > 1:
        raise ApiError(400, "n > 1 is not supported: request one choice per call", param="n")


def _format(body: Body) -> str | dict[str, Any] | None:
    response_format = body.mapping("response_format")
    if response_format is None:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return schema
        raise ApiError(
            400,
            "response_format json_schema needs json_schema.schema (a JSON Schema object)",
            param="response_format",
        )
    raise ApiError(
        400,
        f"invalid response_format type {describe(kind)}; use text, json_object or json_schema",
        param="response_format",
    )


def _tools(body: Body) -> list[dict[str, Any]] | None:
    tools = body.array("tools")
    if not tools:
        return None
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ApiError(
                400,
                f"invalid field 'tools[{i}]': expected {{type: function, function: {{name, parameters}}}}",
                param="tools",
            )
    if body.raw("tool_choice") == "none":
        return None  # the caller forbids tool calls: the model never sees the tools
    return tools


def _include_usage(body: Body) -> bool:
    stream_options = body.mapping("stream_options") or {}
    return stream_options.get("include_usage") is True


def _keep_alive(body: Body) -> float | str | None:
    value = body.raw("keep_alive")
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise ApiError(400, "invalid field 'keep_alive': use seconds or a duration like \"5m\"")


def chat_kwargs(body: Body) -> tuple[dict[str, Any], bool, bool]:
    """``/v1/chat/completions`` → (`AsyncClient.chat` keywords, stream, include_usage)."""
    _single_choice(body)
    kwargs: dict[str, Any] = {
        "model": _model(body),
        "messages": _messages(body),
        "tools": _tools(body),
        "think": _think(body),
        "format": _format(body),
        "options": _options(body),
        "keep_alive": _keep_alive(body),
        "logprobs": body.flag("logprobs"),
        "top_logprobs": body.integer("top_logprobs", 0, 20),
    }
    return kwargs, bool(body.flag("stream")), _include_usage(body)


def completion_kwargs(body: Body) -> tuple[dict[str, Any], bool, bool, str | None]:
    """``/v1/completions`` → (`generate` keywords, stream, include_usage, echoed prompt)."""
    _single_choice(body)
    if (body.integer("best_of", 1) or 1) > 1:
        raise ApiError(400, "best_of > 1 is not supported", param="best_of")
    prompt = body.raw("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise ApiError(
            400,
            "invalid field 'prompt': send one string (batches and token arrays are not supported)",
            param="prompt",
        )
    kwargs: dict[str, Any] = {
        "model": _model(body),
        "prompt": prompt,
        "suffix": body.text("suffix"),
        "think": _think(body),
        "format": _format(body),
        "options": _options(body),
        "keep_alive": _keep_alive(body),
    }
    echo = prompt if body.flag("echo") else None
    return kwargs, bool(body.flag("stream")), _include_usage(body), echo


def embedding_kwargs(body: Body) -> tuple[dict[str, Any], str]:
    """``/v1/embeddings`` → (`embed` keywords, encoding_format)."""
    value = body.raw("input")
    if isinstance(value, str):
        inputs: str | list[str] = value
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        inputs = value
    else:
        raise ApiError(
            400,
            "invalid field 'input': send a string or a non-empty list of strings (token arrays are not supported)",
            param="input",
        )
    encoding = body.text("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "invalid encoding_format: use float or base64", param="encoding_format")
    kwargs = {"model": _model(body), "input": inputs, "dimensions": body.integer("dimensions", 1)}
    return kwargs, encoding


# -- results ----------------------------------------------------------------------------


def finish_reason(done_reason: str | None, tool_calls: bool = False) -> str:
    """OpenAI's finish_reason for the library's done_reason.

    >>> finish_reason("stop"), finish_reason("length"), finish_reason(None, True), finish_reason("load")
    ('stop', 'length', 'tool_calls', 'stop')
    """
    if tool_calls:
        return "tool_calls"
    return {"length": "length", "content_filter": "content_filter"}.get(done_reason or "", "stop")


def usage(response: Any) -> dict[str, Any]:
    """OpenAI's usage object; hosted answers add cached and reasoning token detail."""
    prompt = response.prompt_eval_count or 0
    completion = response.eval_count or 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    hosted = getattr(response, "usage", None)
    if hosted is not None:
        out["prompt_tokens_details"] = {"cached_tokens": hosted.cached_tokens}
        out["completion_tokens_details"] = {"reasoning_tokens": hosted.reasoning_tokens}
    return out


def _tool_calls(calls: Any, first_index: int) -> list[dict[str, Any]]:
    return [
        {
            "index": first_index + i,
            "id": f"call_{secrets.token_hex(8)}",
            "type": "function",
            "function": {
                "name": call.function.name,
                "arguments": json.dumps(dict(call.function.arguments or {}), ensure_ascii=False),
            },
        }
        for i, call in enumerate(calls)
    ]


class ChatStreamEncoder:
    """Chat completions: a whole ``chat.completion`` or ``chat.completion.chunk`` events."""

    stream_media_type = SSE_MEDIA_TYPE

    def __init__(self, *, include_usage: bool = False) -> None:
        self.id = _new_id("chatcmpl")
        self.created = int(time.time())  # one `created` for every chunk, as OpenAI does
        self.include_usage = include_usage
        self._role_sent = False
        self._tools_sent = 0
        self._prefix = (
            f'data: {{"id":{string(self.id)},"object":"chat.completion.chunk",'
            f'"created":{self.created},"model":'
        )

    def whole(self, response: Any) -> bytes:
        message = response.message
        calls = _tool_calls(message.tool_calls or [], 0)
        out_message: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if message.thinking:
            out_message["reasoning_content"] = message.thinking
        if calls:
            out_message["tool_calls"] = [
                {k: v for k, v in c.items() if k != "index"} for c in calls
            ]
        return dumps(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": response.model,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {
                        "index": 0,
                        "message": out_message,
                        "logprobs": None,
                        "finish_reason": finish_reason(response.done_reason, bool(calls)),
                    }
                ],
                "usage": usage(response),
                "dsollama": call_extras(response),
            }
        )

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def _delta(self, part: Any) -> dict[str, Any] | None:
        message = part.message
        content, thinking = message.content or "", message.thinking or ""
        calls = message.tool_calls or []
        if self._role_sent and not (content or thinking or calls):
            return None
        delta: dict[str, Any] = {}
        if not self._role_sent:
            delta["role"] = "assistant"
            delta["content"] = content
            self._role_sent = True
        elif content:
            delta["content"] = content
        if thinking:
            delta["reasoning_content"] = thinking
        if calls:
            delta["tool_calls"] = _tool_calls(calls, self._tools_sent)
            self._tools_sent += len(calls)
        return delta

    def part(self, part: Any) -> bytes:
        delta = self._delta(part)
        if delta is None:
            return b""
        model = part.model
        if type(model) is str and "tool_calls" not in delta:
            # Text only (the common part): the event's bytes from a template, as
            # `_event(self._chunk(model, delta, None))` writes them.
            members = _string_members(delta)
            if members is not None:
                text = f"{self._prefix}{string(model)}{_CHUNK_MIDDLE}{{{members}}}{_CHUNK_TAIL}"
                with contextlib.suppress(UnicodeEncodeError):  # else the general way says why
                    return text.encode()
        return _event(self._chunk(model, delta, None))

    def last(self, part: Any) -> bytes:
        out = self.part(part)
        finish = self._chunk(part.model, {}, finish_reason(part.done_reason, self._tools_sent > 0))
        finish["dsollama"] = call_extras(part)
        out += _event(finish)
        if self.include_usage:
            out += _event(
                {**self._chunk(part.model, {}, None), "choices": [], "usage": usage(part)}
            )
        return out + DONE

    def failure(self, error: ApiError) -> bytes:
        # openai-python (and openai-node) raise APIError on a data event with an "error"
        # key; no [DONE] follows, so no client can take the partial answer as complete.
        return _event(error.body("openai"))


class CompletionStreamEncoder:
    """Legacy completions: ``text_completion`` objects, whole or as SSE events."""

    stream_media_type = SSE_MEDIA_TYPE

    def __init__(self, *, include_usage: bool = False, echo: str | None = None) -> None:
        self.id = _new_id("cmpl")
        self.created = int(time.time())
        self.include_usage = include_usage
        self._echo = echo
        self._prefix = (
            f'data: {{"id":{string(self.id)},"object":"text_completion",'
            f'"created":{self.created},"model":'
        )

    def _object(
        self, model: str, text: str, finish: str | None, thinking: str | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "text": text,
            "index": 0,
            "logprobs": None,
            "finish_reason": finish,
        }
        if thinking:
            choice["reasoning_content"] = thinking
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [choice],
        }

    def _text(self, part: Any) -> str:
        text = part.response or ""
        if self._echo is not None:
            text, self._echo = self._echo + text, None
        return text

    def whole(self, response: Any) -> bytes:
        body = self._object(
            response.model,
            self._text(response),
            finish_reason(response.done_reason),
            response.thinking,
        )
        body["usage"] = usage(response)
        body["dsollama"] = call_extras(response)
        return dumps(body)

    def part(self, part: Any) -> bytes:
        text = self._text(part)
        thinking = part.thinking
        if not text and not thinking:
            return b""
        model = part.model
        if type(model) is str and type(thinking) in (str, type(None)):
            # As `_event(self._object(model, text, None, thinking))` writes it.
            reasoning = f',"reasoning_content":{string(thinking)}' if thinking else ""
            event = (
                f"{self._prefix}{string(model)}{_TEXT_MIDDLE}{string(text)}"
                f"{_TEXT_TAIL}{reasoning}}}]}}\n\n"
            )
            with contextlib.suppress(UnicodeEncodeError):
                return event.encode()
        return _event(self._object(model, text, None, thinking))

    def last(self, part: Any) -> bytes:
        final = self._object(
            part.model, self._text(part), finish_reason(part.done_reason), part.thinking
        )
        final["dsollama"] = call_extras(part)
        out = _event(final)
        if self.include_usage:
            out += _event(
                {**self._object(part.model, "", None), "choices": [], "usage": usage(part)}
            )
        return out + DONE

    def failure(self, error: ApiError) -> bytes:
        return _event(error.body("openai"))


class EmbeddingEncoder:
    """``/v1/embeddings``: only whole answers."""

    stream_media_type = "application/json"

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding

    def whole(self, response: Any) -> bytes:
        return dumps(embedding_list(response, self.encoding))

    def part(self, part: Any) -> bytes:  # pragma: no cover - embeddings never stream
        raise NotImplementedError

    last = part

    def failure(self, error: ApiError) -> bytes:  # pragma: no cover - embeddings never stream
        raise NotImplementedError


def _base64_floats(vector: list[float]) -> str:
    """Little-endian float32, base64: what openai-python asks for by default and decodes.

    >>> _base64_floats([1.0, 0.5])
    'AACAPwAAAD8='
    """
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embedding_list(response: Any, encoding: str = "float") -> dict[str, Any]:
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _base64_floats(list(v)) if encoding == "base64" else list(v),
        }
        for i, v in enumerate(response.embeddings)
    ]
    prompt = response.prompt_eval_count or 0
    served = getattr(response, "served_by", None)
    return {
        "object": "list",
        "data": data,
        "model": served.model if served is not None else response.model,
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        "dsollama": call_extras(response),
    }
