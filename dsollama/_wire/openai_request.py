"""Ollama-shaped arguments → requests in the plain OpenAI dialect.

The ``openai`` dialect is what vLLM, llama-server, SGLang, LM Studio and the other
providers of DeepSeek models speak; DeepSeek's own API has a dialect of its own
(`hosted_request`: the ``thinking`` switch, ``/beta`` prefix completion and FIM). Here
the route's `Capabilities` and ``extra_options`` decide what goes out:

- ``think=`` becomes DeepSeek's switch only on a route whose ``capabilities.thinking``
  is ``deepseek``; a route whose model always (or never) reasons cannot switch, and
  says so in ``unsupported``;
- sampling options keep their OpenAI names; the options a server takes beyond those
  (``top_k``, ``min_p``, ``repetition_penalty``…) go out only when the route lists their
  wire names in ``extra_options``;
- a JSON schema is enforced by the server (``response_format: json_schema``) when
  ``capabilities.json_schema``, else it is JSON mode plus a check of the answer;
- images become ``image_url`` parts when ``capabilities.images``; fill-in-the-middle
  uses ``/completions`` when ``capabilities.fim``;
- a broken answer is continued from a final assistant message, plus the route's
  ``continuation_fields`` (vLLM: ``continue_final_message``).

Every path is relative to the route's base URL (``…/v1``). Pure: no I/O (an image given
as a file path is read, as the official client reads it).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import BadRequestError, UnsupportedRequestError
from .hosted_request import (
    CHAT_PATH,
    FormatLike,
    HostedRequest,
    MessageLike,
    OptionsLike,
    ThinkLike,
    ToolLike,
    _as_mapping,
    _clamp,
    _convert_messages,
    _max_tokens,
    _stops,
    _stream_fields,
    _think_settings,
    _tool_dict,
)
from .hosted_request import _apply_format as _json_mode_format

if TYPE_CHECKING:
    from .._routes import RouteConfig

__all__ = [
    "COMPLETIONS_PATH",
    "build_openai_chat_request",
    "build_openai_continuation_request",
    "build_openai_generate_request",
]

COMPLETIONS_PATH = "/completions"
"Legacy completions (FIM with ``suffix``), relative to the base URL."

# OpenAI's documented ranges; servers that take wider ones lose nothing worth keeping.
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
# Ollama's sampling options that are not OpenAI's, and the wire names servers give them
# (llama-server keeps Ollama's names; vLLM and SGLang say repetition_penalty). The route's
# extra_options says which of these its server takes.
_EXTRA_WIRE_NAMES: Mapping[str, tuple[str, ...]] = {
    "top_k": ("top_k",),
    "min_p": ("min_p",),
    "typical_p": ("typical_p",),
    "repeat_penalty": ("repeat_penalty", "repetition_penalty"),
    "repeat_last_n": ("repeat_last_n",),
    "tfs_z": ("tfs_z",),
    "mirostat": ("mirostat",),
    "mirostat_tau": ("mirostat_tau",),
    "mirostat_eta": ("mirostat_eta",),
    "penalize_newline": ("penalize_newline", "penalize_nl"),
}
# Settings of the local daemon itself (memory, threads, GPUs): no request field anywhere.
_DAEMON_SETTINGS = frozenset(
    {
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
)
_WHOSE = "OpenAI"
_SCHEMA_NAME = "answer"

# Magic numbers of the image formats vision servers take; the data URL needs a type.
_IMAGE_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


# -- think ------------------------------------------------------------------------------


def _think_fields(think: ThinkLike, route: RouteConfig, notes: list[str]) -> dict[str, Any]:
    """The body fields that carry ``think=`` on this route (often none), noting what
    cannot be honoured."""
    switch = route.capabilities.thinking
    if switch == "deepseek":
        if think is None:
            return {}  # the server's default, as for every other field left unset
        on, effort = _think_settings(think, False, notes)
        fields: dict[str, Any] = {"thinking": {"type": "enabled" if on else "disabled"}}
        if effort is not None:
            fields["reasoning_effort"] = effort
        return fields
    _think_settings(think, False, [])  # the same validation as everywhere else
    if think is None:
        return {}
    on = think if isinstance(think, bool) else True
    if switch == "always":
        if not on:
            notes.append("think: this route's model always reasons; cannot switch it off")
        elif isinstance(think, str):
            notes.append(f"think: this route has no reasoning effort levels; {think!r} not sent")
    elif on:
        notes.append("think: this route's model does not reason; cannot switch it on")
    return {}


# -- options ----------------------------------------------------------------------------


def _wire_name(name: str, extra_options: Sequence[str]) -> str | None:
    """The name under which the route's server takes option ``name``, if it does.

    >>> _wire_name("repeat_penalty", ("top_k", "repetition_penalty"))
    'repetition_penalty'
    >>> _wire_name("repetition_penalty", ("repetition_penalty",))
    'repetition_penalty'
    >>> _wire_name("top_k", ()) is None
    True
    """
    if name in extra_options:
        return name
    for wire in _EXTRA_WIRE_NAMES.get(name, ()):
        if wire in extra_options:
            return wire
    return None


def _scalar(name: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise BadRequestError(f"option {name} must be a number, got {type(value).__name__}")


def _apply_options(
    body: dict[str, Any], options: OptionsLike, route: RouteConfig, notes: list[str]
) -> None:
    opts = {} if options is None else _as_mapping(options, "options")
    for name, value in opts.items():
        if name in _RANGES:
            low, high = _RANGES[name]
            body[name] = _clamp(name, value, low, high, notes, whose=_WHOSE)
        elif name == "num_predict":
            limit = _max_tokens(value, notes, whose=_WHOSE, cap=None)
            if limit is not None:
                body["max_tokens"] = limit
        elif name == "stop":
            stops = _stops(value)
            if stops:
                body["stop"] = stops
        elif name == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadRequestError(f"option seed must be an integer, got {value!r}")
            body["seed"] = value
        elif (wire := _wire_name(name, route.extra_options)) is not None:
            body[wire] = _scalar(name, value)
        elif name in _EXTRA_WIRE_NAMES:
            notes.append(
                f"{name}: not sent; this route does not take it "
                "(add its name to the route's extra_options if the server does)"
            )
        elif name in _DAEMON_SETTINGS:
            notes.append(f"{name}: a local-daemon setting with no equivalent on this route")
        else:
            notes.append(f"{name}: unknown option, not sent")


# -- format -----------------------------------------------------------------------------


def _apply_format(
    body: dict[str, Any], messages: list[dict[str, Any]], fmt: FormatLike, route: RouteConfig
) -> dict[str, Any] | None:
    """Set ``response_format``; the schema the answer must be checked against, if any."""
    if not route.capabilities.json_schema:
        return _json_mode_format(body, messages, fmt)  # JSON mode + a check of the answer
    if fmt is None or fmt == "":
        return None
    if isinstance(fmt, Mapping):
        # The server constrains decoding to the schema: nothing to add to the prompt, and
        # nothing to check afterwards (as on a local daemon).
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _SCHEMA_NAME, "schema": copy.deepcopy(dict(fmt))},
        }
        return None
    if fmt == "json":
        body["response_format"] = {"type": "json_object"}
        return None
    return _json_mode_format(body, messages, fmt)  # the same errors for bad values


# -- images -----------------------------------------------------------------------------


def _media_type(data: str) -> str:
    """The image type of base64 ``data``, from its first bytes (PNG when unknown).

    >>> _media_type(base64.b64encode(b"\\xff\\xd8\\xff\\xe0rest").decode())
    'image/jpeg'
    >>> _media_type(base64.b64encode(b"RIFF\\x00\\x00\\x00\\x00WEBPVP8 ").decode())
    'image/webp'
    """
    try:
        head = base64.b64decode(data[:24] + "=" * (-len(data[:24]) % 4))
    except (binascii.Error, ValueError):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, media in _IMAGE_TYPES:
        if head.startswith(magic):
            return media
    return "image/png"


def _image_parts(images: Sequence[Any], where: str) -> list[dict[str, Any]]:
    """Ollama images (base64 text, bytes, paths, ``ollama.Image``) → ``image_url`` parts."""
    from ollama import Image  # the official client's own encoding of every image form

    parts: list[dict[str, Any]] = []
    for index, image in enumerate(images):
        try:
            data = (image if isinstance(image, Image) else Image(value=image)).model_dump()
        except (ValueError, TypeError, OSError) as exc:
            raise BadRequestError(
                f"{where}.images[{index}] is not an image: {exc}",
                hint="give base64 text, bytes or the path of an image file",
            ) from None
        url = f"data:{_media_type(str(data))};base64,{data}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _check_images(route: RouteConfig, where: str, images: Any) -> None:
    if images and not route.capabilities.images:
        raise UnsupportedRequestError(
            f"images cannot go to the route {route.name} ({where} has images)",
            hint="use a vision-capable route or model, or set capabilities.images if the server takes images",
        )


# -- requests ---------------------------------------------------------------------------


def build_openai_chat_request(
    messages: Sequence[MessageLike] | None = None,
    *,
    route: RouteConfig,
    model: str,
    tools: Sequence[ToolLike] | None = None,
    think: ThinkLike = None,
    format: FormatLike = None,
    options: OptionsLike = None,
    stream: bool = False,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
) -> HostedRequest:
    """The OpenAI-dialect request for ``ollama.chat(...)`` arguments on ``route``.

    Raises `UnsupportedRequestError` for what the route cannot take at all (images
    without ``capabilities.images``, tools without ``capabilities.tools``, non-function
    tools, no messages) and
    `BadRequestError` for arguments ollama would reject too.
    """
    if not messages:
        raise UnsupportedRequestError(
            f"a chat without messages only loads a local model; {route.name} has nothing to answer"
        )
    notes: list[str] = []
    think_fields = _think_fields(think, route, notes)
    if not route.capabilities.images:
        for i, message in enumerate(messages):
            _check_images(route, f"messages[{i}]", _as_mapping(message, "message").get("images"))
    wire_messages = _convert_messages(
        messages,
        thinking=False,  # reasoning_content echoes are DeepSeek's rule, not OpenAI's
        notes=notes,
        image_parts=_image_parts if route.capabilities.images else None,
    )
    body: dict[str, Any] = {"model": model, "messages": wire_messages, **think_fields}
    if tools:
        if not route.capabilities.tools:
            raise UnsupportedRequestError(
                f"the route {route.name} has no tool calling",
                hint="send tool calls to a route whose capabilities include tools",
            )
        body["tools"] = [_tool_dict(tool, i) for i, tool in enumerate(tools)]
    schema = _apply_format(body, wire_messages, format, route)
    _apply_options(body, options, route, notes)
    if logprobs or top_logprobs:
        notes.append("logprobs: not translated to OpenAI-format routes")
    _stream_fields(body, stream)
    return HostedRequest(path=CHAT_PATH, body=body, unsupported=notes, schema=schema)


def build_openai_generate_request(
    prompt: str | None = None,
    suffix: str | None = None,
    *,
    route: RouteConfig,
    model: str,
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
    """The OpenAI-dialect request for ``ollama.generate(...)`` arguments on ``route``.

    ``system`` + ``prompt`` (+ ``images``) become a chat; a non-empty ``suffix`` becomes
    a ``/completions`` request with ``suffix`` when ``capabilities.fim`` (else
    `UnsupportedRequestError`). ``template``, ``context`` and ``raw`` have no equivalent
    and are listed in ``unsupported``.
    """
    _check_images(route, "the request", images)
    if not prompt and not suffix:
        raise UnsupportedRequestError(
            f"an empty prompt only loads a local model; {route.name} has nothing to answer"
        )
    notes: list[str] = []
    if template:
        notes.append("template: the server applies its own chat template")
    if context:
        notes.append(
            "context: Ollama's token context cannot be replayed on this route; the earlier exchange it encodes is lost"
        )
    if raw:
        notes.append(
            "raw: the prompt is sent as a user message; the server applies its own chat template"
        )
    if suffix:
        if not route.capabilities.fim:
            raise UnsupportedRequestError(
                f"the route {route.name} has no fill-in-the-middle (suffix=)",
                hint="send it to a route whose capabilities include fim, or leave suffix out",
            )
        _think_settings(think, False, [])  # validated like everywhere else
        if think:
            notes.append("think: fill-in-the-middle (suffix=) has no reasoning; sent without it")
        if system:
            notes.append("system: FIM has no system prompt; not sent")
        if format:
            notes.append("format: FIM has no JSON mode; not sent")
        if images:
            notes.append("images: FIM takes no images; not sent")
        if logprobs or top_logprobs:
            notes.append("logprobs: not translated to OpenAI-format routes")
        body: dict[str, Any] = {"model": model, "prompt": prompt or "", "suffix": suffix}
        _apply_options(body, options, route, notes)
        _stream_fields(body, stream)
        return HostedRequest(path=COMPLETIONS_PATH, body=body, unsupported=notes)

    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    user: dict[str, Any] = {"role": "user", "content": prompt or ""}
    if images:
        user["images"] = list(images)
    messages.append(user)
    request = build_openai_chat_request(
        messages,
        route=route,
        model=model,
        think=think,
        format=format,
        options=options,
        stream=stream,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    request.unsupported[:0] = notes
    return request


def build_openai_continuation_request(
    original: HostedRequest,
    partial_content: str,
    partial_thinking: str = "",
    *,
    route: RouteConfig,
) -> HostedRequest:
    """A request that continues a broken answer on an OpenAI-dialect server.

    Chat: the original messages plus a final ``{"role": "assistant", "content":
    partial}``, and the route's ``continuation_fields`` (vLLM continues a final
    assistant message only with ``continue_final_message: true`` and
    ``add_generation_prompt: false``; llama-server does it by itself). FIM: the partial
    text is appended to the prompt. An answer broken inside its reasoning cannot be
    continued: these servers' chat templates take no reasoning back, so the model would
    start thinking anew — `UnsupportedRequestError` rather than a stream that repeats
    itself.
    """
    if not route.capabilities.continuation:
        raise UnsupportedRequestError(
            f"{route.name} cannot continue a broken answer",
            hint="set capabilities.continuation (and continuation_fields) if the server continues a final assistant message",
        )
    body = copy.deepcopy(original.body)
    notes = list(original.unsupported)
    if original.kind == "completion":
        body["prompt"] = str(body.get("prompt", "")) + partial_content
        return HostedRequest(
            path=original.path,
            body=body,
            unsupported=notes,
            schema=original.schema,
            continues_answer=True,
        )
    if partial_thinking and not partial_content:
        raise UnsupportedRequestError(
            f"{route.name} cannot continue an answer broken inside its reasoning",
            hint="on_broken_stream='restart' starts the answer over, announced in the stream",
        )
    messages = list(body.get("messages", []))
    if original.continues_answer and messages and messages[-1].get("role") == "assistant":
        messages.pop()  # continuing a continuation: the new partial replaces the old one
    messages.append({"role": "assistant", "content": partial_content})
    body["messages"] = messages
    body.update(copy.deepcopy(dict(route.continuation_fields)))
    return HostedRequest(
        path=CHAT_PATH,
        body=body,
        unsupported=notes,
        schema=original.schema,
        continues_answer=True,
    )
