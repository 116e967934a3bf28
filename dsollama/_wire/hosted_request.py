"""Ollama-shaped arguments → OpenAI-format (DeepSeek) requests for the hosted route.

`build_chat_request`, `build_generate_request` and `build_continuation_request` turn
the arguments of ``ollama``'s ``chat``/``generate`` (or a broken answer to resume) into
a `HostedRequest`: the path relative to the API root, the JSON body, and the list of
things the hosted route cannot honour — never dropped silently. Facts cited as "ref §N"
are from the project's DeepSeek API reference.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel

from .._exceptions import BadRequestError, UnsupportedRequestError

__all__ = [
    "BETA_CHAT_PATH",
    "CHAT_PATH",
    "FIM_MAX_TOKENS",
    "FIM_PATH",
    "HostedRequest",
    "build_chat_request",
    "build_continuation_request",
    "build_generate_request",
]

# Paths are relative to the API root (``https://api.deepseek.com``); the beta features
# (prefix completion, FIM) live only under ``/beta`` (ref §1.1, §5).
CHAT_PATH = "/chat/completions"
BETA_CHAT_PATH = "/beta/chat/completions"
FIM_PATH = "/beta/completions"
FIM_MAX_TOKENS = 4096  # ref §5.2: FIM max_tokens is capped at 4K
MAX_STOP = 16  # ref §2.1: stop takes at most 16 strings

# A reasoning_content placeholder for assistant tool-call turns that have none (a local
# model's turn, say): thinking mode rejects such turns with a 400, and an empty string
# triggers it too; LiteLLM's single space is known to pass (ref §2.2).
_REASONING_PLACEHOLDER = " "

MessageLike = Union[Mapping[str, Any], BaseModel]
ToolLike = Union[Mapping[str, Any], BaseModel, Callable[..., Any]]
OptionsLike = Union[Mapping[str, Any], BaseModel, None]
ThinkLike = Union[bool, Literal["low", "medium", "high", "max"], None]
FormatLike = Union[str, Mapping[str, Any], None]

# think level → reasoning_effort; DeepSeek has no "medium" and maps it to "high" itself
# (ref §2.1), we do it explicitly so the request says what it gets.
_EFFORT = {"low": "low", "medium": "high", "high": "high", "max": "max"}

_NO_HOSTED_EQUIVALENT = {
    "seed": "the hosted API has no seed, so answers are not reproducible",
    "top_k": "the hosted API has no top_k",
    "min_p": "the hosted API has no min_p",
    "typical_p": "the hosted API has no typical_p",
    "repeat_penalty": "the hosted API has no repeat_penalty",
    "repeat_last_n": "the hosted API has no repeat_last_n",
    "tfs_z": "the hosted API has no tfs_z",
    "mirostat": "the hosted API has no mirostat sampling",
    "mirostat_tau": "the hosted API has no mirostat sampling",
    "mirostat_eta": "the hosted API has no mirostat sampling",
    "penalize_newline": "the hosted API has no penalize_newline",
}
_LOCAL_DAEMON_ONLY = {
    "num_ctx",
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "embedding_only",
    "draft_num_predict",
}
_THINKING_IGNORED = "ignored in thinking mode"
_NO_EFFECT = "accepted by the hosted API but has no effect (deprecated there)"


@dataclass(slots=True)
class HostedRequest:
    """One request for the hosted route, ready to POST.

    ``path`` is relative to the API root (the backend joins it to ``hosted_base_url``,
    minus any ``/v1``; paths of the OpenAI dialect are relative to the base URL itself);
    ``unsupported`` lists ``"name: reason"`` for every argument the
    hosted route cannot honour (the router records or reports them); ``schema`` is
    the JSON schema the answer must satisfy when ``format=`` was a schema (the hosted
    API has JSON mode but no schema enforcement, ref §5.3).
    """

    path: str
    body: dict[str, Any]
    unsupported: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None
    continues_answer: bool = False
    """The request continues an answer past its reasoning (OpenAI dialect): what comes
    back is answer text, never the start of an inline ``<think>`` block."""

    @property
    def kind(self) -> Literal["chat", "completion"]:
        """``chat`` for chat completions, ``completion`` for FIM."""
        return "completion" if "prompt" in self.body else "chat"

    @property
    def thinking(self) -> bool:
        """True when the request asks for thinking mode."""
        thinking = self.body.get("thinking")
        return isinstance(thinking, Mapping) and thinking.get("type") == "enabled"

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


# -- request side -----------------------------------------------------------------------


def _as_mapping(obj: Any, what: str) -> dict[str, Any]:
    """A plain dict of a dict or pydantic model, None values dropped.

    Pydantic models are read field by field rather than dumped: dumping an
    ``ollama.Image`` reads files, and we only need to know images are there.
    """
    if isinstance(obj, BaseModel):
        return {k: v for k, v in obj if v is not None}
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items() if v is not None}
    raise BadRequestError(f"{what} is a {type(obj).__name__}; expected a dict or an ollama model")


def _think_settings(
    think: ThinkLike, thinking_default: bool, notes: list[str]
) -> tuple[bool, str | None]:
    if think is None:
        # The catalogue's default for this local model: hosted V4 models think by
        # default, so a non-thinking local model must say "disabled" (ref §8).
        return thinking_default, None
    if isinstance(think, bool):
        return think, None
    if isinstance(think, str) and think in _EFFORT:
        if think == "medium":
            notes.append(
                "think: the hosted API has no 'medium' effort; sent reasoning_effort 'high'"
            )
        return True, _EFFORT[think]
    raise BadRequestError(
        f"invalid think value {think!r}",
        hint="use True, False, 'low', 'medium', 'high' or 'max'",
    )


def _clamp(
    name: str, value: Any, low: float, high: float, notes: list[str], *, whose: str = "hosted"
) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"option {name} must be a number, got {value!r}") from None
    clamped = min(max(number, low), high)
    if clamped != number:
        notes.append(
            f"{name}: {number:g} is outside the {whose} range {low:g}–{high:g}; sent {clamped:g}"
        )
    return clamped


def _max_tokens(value: Any, notes: list[str], *, whose: str, cap: int | None) -> int | None:
    """``num_predict`` as ``max_tokens``; None when it is the server's default (or 0)."""
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"option num_predict must be an integer, got {value!r}") from None
    if limit > 0:
        if cap is not None and limit > cap:
            notes.append(f"num_predict: FIM allows at most {cap} tokens; sent {cap}")
            limit = cap
        return limit
    if limit == 0:
        notes.append(f"num_predict: 0 has no {whose} equivalent (max_tokens must be ≥ 1); not sent")
    # -1 (unlimited) and -2 (fill the context) are the server's default: omit.
    return None


def _stops(value: Any) -> list[str]:
    stops = [value] if isinstance(value, str) else [str(s) for s in value]
    return [s for s in stops if s]


def _apply_options(
    body: dict[str, Any], options: OptionsLike, *, thinking: bool, fim: bool, notes: list[str]
) -> None:
    opts = {} if options is None else _as_mapping(options, "options")
    for name, value in opts.items():
        if name == "temperature":
            body["temperature"] = _clamp(name, value, 0.0, 2.0, notes)  # ref §2.1: 0–2
            if thinking:
                notes.append(f"temperature: {_THINKING_IGNORED}")
        elif name == "top_p":
            body["top_p"] = _clamp(name, value, 0.0, 1.0, notes)
            if thinking:
                notes.append(f"top_p: {_THINKING_IGNORED}")
        elif name == "num_predict":
            limit = _max_tokens(value, notes, whose="hosted", cap=FIM_MAX_TOKENS if fim else None)
            if limit is not None:
                body["max_tokens"] = limit
        elif name == "stop":
            stops = _stops(value)
            if len(stops) > MAX_STOP:
                notes.append(
                    f"stop: the hosted API takes at most {MAX_STOP} stop strings; sent the first {MAX_STOP}"
                )
                stops = stops[:MAX_STOP]
            if stops:
                body["stop"] = stops
        elif name in ("presence_penalty", "frequency_penalty"):
            body[name] = _clamp(name, value, -2.0, 2.0, notes)
            notes.append(f"{name}: {_NO_EFFECT}")
        elif name in _NO_HOSTED_EQUIVALENT:
            notes.append(f"{name}: {_NO_HOSTED_EQUIVALENT[name]}")
        elif name in _LOCAL_DAEMON_ONLY:
            notes.append(f"{name}: a local-daemon setting with no hosted equivalent")
        else:
            notes.append(f"{name}: unknown option, not sent")


def _no_images(images: Any, where: str) -> None:
    if images:
        raise UnsupportedRequestError(
            f"images cannot go to the hosted route ({where} has images)",
            hint="use a local vision-capable model for this request, or send it without images",
        )


def _arguments_text(arguments: Any) -> str:
    """An ollama tool call's arguments (a dict) as the JSON string OpenAI format wants."""
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, Mapping):
        raw = arguments.get("_raw")
        if len(arguments) == 1 and isinstance(raw, str):
            return raw  # arguments that were not valid JSON come back byte for byte
        return json.dumps(dict(arguments), ensure_ascii=False)
    if arguments is None:
        return "{}"
    raise BadRequestError(f"tool call arguments must be a dict, got {type(arguments).__name__}")


ImageParts = Callable[[Sequence[Any], str], list[dict[str, Any]]]
"Images of a message → OpenAI content parts (dialects whose route takes images)."


def _convert_messages(
    messages: Sequence[MessageLike],
    *,
    thinking: bool,
    notes: list[str],
    image_parts: ImageParts | None = None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    # Calls of the latest assistant tool-call turn not yet answered: (id, name).
    open_calls: list[tuple[str, str]] = []
    for i, raw in enumerate(messages):
        msg = _as_mapping(raw, f"messages[{i}]")
        role = str(msg.get("role", "")).lower()
        if not role:
            raise BadRequestError(f"messages[{i}] has no role")
        images = msg.get("images")
        if image_parts is None:
            _no_images(images, f"messages[{i}]")
        elif images and role != "user":
            # OpenAI format takes image parts in user messages only.
            notes.append(
                f"messages[{i}]: only user messages carry images in OpenAI format; not sent"
            )
            images = None
        content = msg.get("content")
        text = "" if content is None else str(content)

        if role == "assistant":
            converted: dict[str, Any] = {"role": "assistant", "content": text}
            calls = list(msg.get("tool_calls") or [])
            if calls:
                open_calls = []
                wire_calls = []
                for j, call in enumerate(calls):
                    call_map = _as_mapping(call, f"messages[{i}].tool_calls[{j}]")
                    function = _as_mapping(call_map.get("function") or {}, "function")
                    name = function.get("name")
                    if not name:
                        raise BadRequestError(f"messages[{i}].tool_calls[{j}] has no function name")
                    # Ollama drops call ids; the hosted API needs them to pair results.
                    call_id = str(call_map.get("id") or f"call_{i:02d}_{j:02d}_dsollama")
                    wire_calls.append(
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": str(name),
                                "arguments": _arguments_text(function.get("arguments")),
                            },
                        }
                    )
                    open_calls.append((call_id, str(name)))
                converted["tool_calls"] = wire_calls
                # Thinking mode: reasoning_content is mandatory on tool-call turns and
                # ignored elsewhere (ref §2.2), so it is sent only here.
                if thinking:
                    reasoning = str(msg.get("thinking") or "")
                    if not reasoning.strip():
                        reasoning = _REASONING_PLACEHOLDER
                        notes.append(
                            f"messages[{i}]: assistant tool-call turn without thinking; "
                            "sent a placeholder reasoning_content (required in thinking mode)"
                        )
                    converted["reasoning_content"] = reasoning
            if msg.get("name"):
                converted["name"] = str(msg["name"])
            out.append(converted)
            continue

        if role == "tool":
            result_id = str(msg["tool_call_id"]) if msg.get("tool_call_id") else None
            tool_name = msg.get("tool_name")
            if result_id:
                open_calls = [c for c in open_calls if c[0] != result_id]
            else:
                match = next((c for c in open_calls if tool_name and c[1] == tool_name), None)
                if match is None and open_calls:
                    match = open_calls[0]  # results answer calls in order
                if match is not None:
                    result_id = match[0]
                    open_calls.remove(match)
            if result_id:
                out.append({"role": "tool", "content": text, "tool_call_id": result_id})
            else:
                # No call to pair it with: the hosted API would reject a bare tool turn,
                # so the result travels as a user message instead.
                label = f"tool {tool_name}" if tool_name else "a tool"
                out.append({"role": "user", "content": f"[result of {label}]\n{text}"})
                notes.append(
                    f"messages[{i}]: tool result with no matching assistant tool call; sent as a user message"
                )
            continue

        converted = {"role": role, "content": text}
        if images and image_parts is not None:
            text_part = [{"type": "text", "text": text}] if text else []
            converted["content"] = text_part + image_parts(images, f"messages[{i}]")
        if msg.get("name"):
            converted["name"] = str(msg["name"])
        out.append(converted)
    return out


def _tool_dict(tool: ToolLike, index: int) -> dict[str, Any]:
    if isinstance(tool, BaseModel):
        data: Any = tool.model_dump(exclude_none=True, by_alias=True)
    elif isinstance(tool, Mapping):
        data = copy.deepcopy(dict(tool))
    elif callable(tool):
        # ollama's own conversion of a documented Python function, as ollama.chat does.
        from ollama._utils import convert_function_to_tool

        data = convert_function_to_tool(tool).model_dump(exclude_none=True, by_alias=True)
    else:
        raise BadRequestError(
            f"tools[{index}] is a {type(tool).__name__}; expected a dict, ollama.Tool or function"
        )
    kind = data.get("type") or "function"
    if kind != "function":
        # DeepSeek rejects other tool types (ref §2.1).
        raise UnsupportedRequestError(
            f"tools[{index}] has type {kind!r}; the hosted API takes only 'function' tools"
        )
    function = data.get("function")
    if not isinstance(function, Mapping) or not function.get("name"):
        raise BadRequestError(f"tools[{index}] has no function name")
    out: dict[str, Any] = {"name": str(function["name"])}
    for key in ("description", "parameters", "strict"):
        if function.get(key) is not None:
            out[key] = function[key]
    return {"type": "function", "function": out}


def _mentions_json(messages: Sequence[Mapping[str, Any]]) -> bool:
    return any("json" in str(m.get("content") or "").lower() for m in messages)


def _add_system_instruction(messages: list[dict[str, Any]], instruction: str) -> None:
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0])
        first["content"] = f"{first.get('content') or ''}\n\n{instruction}".lstrip()
        messages[0] = first
    else:
        messages.insert(0, {"role": "system", "content": instruction})


def _apply_format(
    body: dict[str, Any], messages: list[dict[str, Any]], fmt: FormatLike
) -> dict[str, Any] | None:
    if fmt is None or fmt == "":
        return None
    if isinstance(fmt, str):
        if fmt != "json":
            raise BadRequestError(
                f"invalid format {fmt!r}", hint='use "json" or a JSON schema dict'
            )
        body["response_format"] = {"type": "json_object"}
        # JSON mode needs the word "json" in the prompt, or the model may emit
        # whitespace until max_tokens (ref §5.3).
        if not _mentions_json(messages):
            _add_system_instruction(messages, "Answer with a single JSON object.")
        return None
    if isinstance(fmt, Mapping):
        schema = copy.deepcopy(dict(fmt))
        body["response_format"] = {"type": "json_object"}
        # No json_schema response type on DeepSeek (ref §2.1): the schema goes in the
        # prompt and the router validates the answer against it.
        _add_system_instruction(
            messages,
            "Answer with a single JSON object that conforms to this JSON schema:\n"
            + json.dumps(schema, ensure_ascii=False),
        )
        return schema
    raise BadRequestError(
        f"format must be '', 'json' or a JSON schema dict, got {type(fmt).__name__}"
    )


def _stream_fields(body: dict[str, Any], stream: bool) -> None:
    body["stream"] = bool(stream)
    if stream:
        # Usage arrives only when asked for (ref §2.5).
        body["stream_options"] = {"include_usage": True}


def build_chat_request(
    messages: Sequence[MessageLike] | None = None,
    *,
    hosted_model: str,
    thinking_default: bool,
    tools: Sequence[ToolLike] | None = None,
    think: ThinkLike = None,
    format: FormatLike = None,
    options: OptionsLike = None,
    stream: bool = False,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
) -> HostedRequest:
    """The hosted request for ``ollama.chat(...)`` arguments.

    ``hosted_model``/``thinking_default`` come from the catalogue's mapping of the local
    model. Raises `UnsupportedRequestError` for what the hosted route cannot take at all
    (images, non-function tools, no messages) and `BadRequestError` for arguments
    ollama would reject too.
    """
    if not messages:
        raise UnsupportedRequestError(
            "a chat without messages only loads a local model; the hosted route has nothing to answer"
        )
    notes: list[str] = []
    thinking, effort = _think_settings(think, thinking_default, notes)
    wire_messages = _convert_messages(messages, thinking=thinking, notes=notes)
    body: dict[str, Any] = {"model": hosted_model, "messages": wire_messages}
    # Always explicit: hosted models think by default (ref §1.3, §8).
    body["thinking"] = {"type": "enabled" if thinking else "disabled"}
    if effort is not None:
        body["reasoning_effort"] = effort
    if tools:
        body["tools"] = [_tool_dict(tool, i) for i, tool in enumerate(tools)]
    schema = _apply_format(body, wire_messages, format)
    _apply_options(body, options, thinking=thinking, fim=False, notes=notes)
    if logprobs or top_logprobs:
        notes.append("logprobs: not translated to the hosted route")
    _stream_fields(body, stream)
    return HostedRequest(path=CHAT_PATH, body=body, unsupported=notes, schema=schema)


def build_generate_request(
    prompt: str | None = None,
    suffix: str | None = None,
    *,
    hosted_model: str,
    thinking_default: bool,
    system: str | None = None,
    template: str | None = None,
    context: Sequence[int] | None = None,
    raw: bool | None = None,
    images: Sequence[Any] | None = None,
    think: ThinkLike = None,
    format: FormatLike = None,
    options: OptionsLike = None,
    stream: bool = False,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
) -> HostedRequest:
    """The hosted request for ``ollama.generate(...)`` arguments.

    ``system`` + ``prompt`` become a chat; a non-empty ``suffix`` becomes a FIM request
    on ``/beta/completions`` (non-thinking only, ``max_tokens`` ≤ 4096, ref §5.2).
    ``template``, ``context`` and ``raw`` have no hosted equivalent and are listed in
    ``unsupported``: in particular the conversation a ``context`` encodes is lost.
    """
    _no_images(images, "the request")
    if not prompt and not suffix:
        raise UnsupportedRequestError(
            "an empty prompt only loads a local model; the hosted route has nothing to answer"
        )
    notes: list[str] = []
    if template:
        notes.append("template: the hosted API applies its own chat template")
    if context:
        notes.append(
            "context: Ollama's token context cannot be replayed on the hosted route; the earlier exchange it encodes is lost"
        )
    if raw:
        notes.append(
            "raw: the prompt is sent as a user message; the hosted API applies its own chat template"
        )

    if suffix:
        if think:  # True or a level: FIM runs without thinking (ref §5.2)
            notes.append(
                "think: FIM (suffix=) is non-thinking only on the hosted API; sent without thinking"
            )
        if system:
            notes.append("system: FIM has no system prompt; not sent")
        if format:
            notes.append("format: FIM has no JSON mode; not sent")
        if logprobs or top_logprobs:
            notes.append("logprobs: not translated to the hosted route")
        body: dict[str, Any] = {"model": hosted_model, "prompt": prompt or "", "suffix": suffix}
        _apply_options(body, options, thinking=False, fim=True, notes=notes)
        _stream_fields(body, stream)
        return HostedRequest(path=FIM_PATH, body=body, unsupported=notes)

    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt or ""})
    request = build_chat_request(
        messages,
        hosted_model=hosted_model,
        thinking_default=thinking_default,
        think=think,
        format=format,
        options=options,
        stream=stream,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    request.unsupported[:0] = notes
    return request


def build_continuation_request(
    original: HostedRequest, partial_content: str, partial_thinking: str = ""
) -> HostedRequest:
    """A request that continues a broken answer from where it stopped.

    Chat: DeepSeek's chat prefix completion (beta, ref §5.1) — the original messages
    plus a last ``{"role": "assistant", "content": partial, "prefix": true}``, with the
    reasoning so far as ``reasoning_content`` in thinking mode. When the answer had
    already moved past its reasoning but none was received (a non-thinking local
    model's partial answer), thinking is turned off so the model does not start
    reasoning again in the middle of the answer. FIM: the partial text is appended to
    the prompt. ``partial_*`` are the whole texts received so far, not deltas; a
    partial tool call cannot be continued (the router should retry instead).
    """
    body = copy.deepcopy(original.body)
    notes = list(original.unsupported)
    if original.kind == "completion":
        body["prompt"] = str(body.get("prompt", "")) + partial_content
        return HostedRequest(path=FIM_PATH, body=body, unsupported=notes, schema=original.schema)
    messages = list(body.get("messages", []))
    if messages and messages[-1].get("prefix"):
        messages.pop()  # continuing a continuation: the new prefix replaces the old one
    prefix: dict[str, Any] = {"role": "assistant", "content": partial_content, "prefix": True}
    if original.thinking:
        if partial_thinking:
            prefix["reasoning_content"] = partial_thinking
        elif partial_content:
            body["thinking"] = {"type": "disabled"}
            body.pop("reasoning_effort", None)
            notes.append(
                "thinking: continuing an answer past its reasoning; sent with thinking disabled"
            )
    messages.append(prefix)
    body["messages"] = messages
    return HostedRequest(path=BETA_CHAT_PATH, body=body, unsupported=notes, schema=original.schema)
