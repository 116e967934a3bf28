"""The call, declared once: dsollama's routing controls, and the request in one `CallSpec`.

`RoutingOptions` lists every per-call routing control exactly once; the clients' ``chat``,
``generate`` and ``embed`` take the official ``ollama`` arguments plus
``**routing: Unpack[RoutingOptions]``, the CLI and serve build the same options, and
`resolve_controls` turns them (with the settings) into the router's `Controls`.
Adding an option means one line here plus the code that uses it.

`chat_spec` and `generate_spec` build the `CallSpec` from the official arguments; serve and
the CLI pass a `CallSpec` whole to `AsyncClient.call`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

import ollama

from ._backends import CallSpec
from ._config import Policy, Settings
from ._exceptions import BadRequestError, ConfigError
from ._routing.shapes import BrokenStream, Controls

__all__ = [
    "ROUTING_OPTIONS",
    "RoutingOptions",
    "chat_spec",
    "generate_spec",
    "resolve_controls",
]


class RoutingOptions(TypedDict, total=False):
    """dsollama's per-call routing controls (every one optional; settings fill the rest)."""

    local_only: bool | None
    "Never leave your own machines: private routes only; fail instead."
    policy: Policy | None
    "local-first, hosted-first or local-only."
    first_token_timeout: float | None
    "Seconds a route may take to its first token before the call moves on."
    gap_timeout: float | None
    "Longest silence between two chunks."
    total_timeout: float | None
    "Whole-call deadline, every attempt included."
    on_broken_stream: BrokenStream | None
    "A stream that breaks after text reached you: raise, continue or restart elsewhere."
    continue_stream: bool | None
    "Older spelling of on_broken_stream='continue'."
    hedge: bool | None
    "When the first route is late, race the next one and keep the first token."
    fallback_models: Sequence[str] | None
    "Models to try, in order, when no route can answer with the requested one."
    log: bool | None
    "Record this call in the request log (None: the client's setting)."


ROUTING_OPTIONS: frozenset[str] = frozenset(RoutingOptions.__annotations__)

_TIMEOUTS = ("first_token_timeout", "gap_timeout", "total_timeout")
_POLICIES = ("local-first", "hosted-first", "local-only")
_BROKEN = ("raise", "continue", "restart")


def _timeout(name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(
            f"{name}={value!r} is not a number of seconds", hint=f"pass {name}=None for the default"
        )
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"{name}={value!r} is not a usable deadline",
            hint=f"pass a positive number of seconds, or {name}=None for the default ({default:g}s)",
        )
    return float(value)


def resolve_controls(
    settings: Settings, options: Mapping[str, Any], *, source: str = "library"
) -> Controls:
    """`Controls` for one call: the options given, the settings for the rest, checked."""
    unknown = set(options) - ROUTING_OPTIONS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    policy = options.get("policy") or settings.policy
    if policy not in _POLICIES:
        raise ConfigError(
            f"policy={policy!r} is not a routing policy", hint="use " + ", ".join(_POLICIES)
        )
    broken = options.get("on_broken_stream")
    if broken is None:
        continued = options.get("continue_stream")
        if continued is not None:
            broken = "continue" if continued else "raise"
        elif settings.continue_streams and settings.on_broken_stream == "raise":
            broken = "continue"
        else:
            broken = settings.on_broken_stream
    if broken not in ("raise", "continue", "restart"):
        raise ConfigError(
            f"on_broken_stream={broken!r} is not one of {', '.join(_BROKEN)}",
            hint="raise (the default), continue (prefix completion elsewhere) or restart",
        )
    fallbacks = options.get("fallback_models")
    if isinstance(fallbacks, str):
        raise ConfigError(
            "fallback_models must be a list of model names", hint=f"pass [{fallbacks!r}]"
        )
    hedge = options.get("hedge")
    log = options.get("log")
    timeouts = {
        name: _timeout(name, options.get(name), getattr(settings, name)) for name in _TIMEOUTS
    }
    return Controls(
        policy=policy,
        local_only=bool(options.get("local_only")),
        on_broken_stream=broken,  # type: ignore[arg-type]  # checked above
        hedge=settings.hedge if hedge is None else bool(hedge),
        admission=settings.admission,
        log=True if log is None else bool(log),
        source=source,
        fallback_models=tuple(fallbacks or ()),
        **timeouts,
    )


def _options(options: Mapping[str, Any] | ollama.Options | None) -> dict[str, Any] | None:
    if options is None:
        return None
    if isinstance(options, ollama.Options):
        return options.model_dump(exclude_none=True)
    return dict(options)


def _check_model(model: str) -> None:
    if not model:
        raise BadRequestError(
            "model is required", hint="pass a model name, e.g. model='deepseek-r1:8b'"
        )


def chat_spec(
    model: str,
    messages: Sequence[Mapping[str, Any] | ollama.Message] | None,
    *,
    stream: bool,
    tools: Sequence[Any] | None = None,
    think: bool | Literal["low", "medium", "high", "max"] | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    format: Literal["", "json"] | Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | ollama.Options | None = None,
    keep_alive: float | str | None = None,
) -> CallSpec:
    """The `CallSpec` of ``chat`` with the official client's arguments."""
    _check_model(model)
    return CallSpec(
        operation="chat",
        model=model,
        stream=stream,
        messages=list(messages or []),
        tools=list(tools) if tools else None,
        think=think,
        format=format or None,
        options=_options(options),
        keep_alive=keep_alive,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )


def generate_spec(
    model: str,
    prompt: str | None = None,
    suffix: str | None = None,
    *,
    stream: bool,
    system: str | None = None,
    template: str | None = None,
    context: Sequence[int] | None = None,
    think: bool | Literal["low", "medium", "high", "max"] | None = None,
    logprobs: bool | None = None,
    top_logprobs: int | None = None,
    raw: bool | None = None,
    format: Literal["", "json"] | Mapping[str, Any] | None = None,
    images: Sequence[Any] | None = None,
    options: Mapping[str, Any] | ollama.Options | None = None,
    keep_alive: float | str | None = None,
) -> CallSpec:
    """The `CallSpec` of ``generate`` with the official client's arguments."""
    _check_model(model)
    return CallSpec(
        operation="generate",
        model=model,
        stream=stream,
        prompt=prompt,
        suffix=suffix or None,
        system=system or None,
        template=template or None,
        context=context,
        raw=raw,
        images=images,
        think=think,
        format=format or None,
        options=_options(options),
        keep_alive=keep_alive,
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
