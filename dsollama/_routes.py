"""Routes as data: every place that can answer, resolved from presets and configuration.

A route is a place that can answer a chat: a kind of API (``ollama``: the native
``/api/*`` through the official client; ``openai``: any OpenAI-format server through
httpx), a base URL, where its key comes from (an environment variable's *name*), the
models it serves and how a requested name maps onto its own, whether it is *private*
(this machine or the user's own servers: only those may serve ``local_only`` calls),
its capacity, context sizes, prices and capabilities.

Presets (``data/route_presets.json``: ollama, deepseek, vllm, llamacpp, sglang, lmstudio and
the other providers of DeepSeek models) are data; a ``[[routes]]`` table names one and
overrides any field. Without ``[[routes]]``, the simple settings become routes with the
behaviour they always had: one ``ollama`` route per ``ollama_hosts`` entry, and one
``deepseek``-style route for ``hosted_base_url`` when a key is set.

Pure: no I/O but reading the packaged preset file (and an override file, when given).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, get_args

from ._catalogue import Catalogue, read_override
from ._exceptions import ConfigError
from ._hosts import display_host, is_loopback_url, normalise_base_url, parse_ollama_host

if TYPE_CHECKING:
    from ._config import Settings
    from ._types import HostedUsage

__all__ = [
    "Capabilities",
    "RouteConfig",
    "RoutePrice",
    "load_presets",
    "resolve_routes",
    "route_cost",
]

Api = Literal["ollama", "openai"]
Names = Literal["local", "hosted", "own"]
OverCapacity = Literal["queues", "refuses"]
LoadSignal = Literal["none", "vllm", "llamacpp", "sglang"]
Dialect = Literal["ollama", "deepseek", "openai"]
ThinkingSwitch = Literal["ollama", "deepseek", "always", "never"]
ReasoningField = Literal["ollama", "reasoning_content", "reasoning", "inline"]

# Load sampling: a short TTL keeps admission fresh without one scrape per call, and a small
# timeout keeps a slow metrics endpoint from ever delaying a call by much.
DEFAULT_LOAD_TTL = 0.25
DEFAULT_LOAD_TIMEOUT = 0.2
_MAX_LOAD_SECONDS = 60.0


@dataclass(frozen=True)
class Capabilities:
    """What a route can honour. The router skips a route that lacks what a call needs,
    and the request translation reports what it had to leave out (``ignored``)."""

    images: bool = False
    tools: bool = True
    json_schema: bool = False
    "The server enforces a JSON schema itself (otherwise dsollama checks the answer)."
    continuation: bool = False
    "Can continue a partial answer (DeepSeek prefix completion; Ollama's final assistant message)."
    fim: bool = False
    "Fill-in-the-middle (``generate(suffix=…)``)."
    embeddings: bool = False
    thinking: ThinkingSwitch = "never"
    "How reasoning is switched: Ollama's ``think``, DeepSeek's ``thinking``, or not at all."
    reasoning_field: ReasoningField = "reasoning_content"
    """Where the reasoning arrives. An explicit inline ``<think>`` block is split on every
    OpenAI-dialect route; ``inline`` says the server never separates it and the chat
    template opens the block itself, so the answer starts inside the reasoning."""


@dataclass(frozen=True)
class RoutePrice:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True)
class RouteConfig:
    """One route, resolved: every field has its final value."""

    name: str
    api: Api
    base_url: str
    private: bool
    "This machine or the user's own servers: may serve local_only calls."
    names: Names = "own"
    key_env: str | None = None
    "The environment variable that holds the key (never the key itself in a file)."
    api_key: str | None = field(default=None, repr=False, compare=False)
    "A key given in code (``Client(routes=[...])``) or by the legacy hosted settings."
    models: tuple[str, ...] = ()
    "Model ids the server serves natively (beyond its catalogue vocabulary)."
    model_map: Mapping[str, str] = field(default_factory=dict)
    "Requested name → the route's own model id."
    capacity: int | None = None
    "Slots (Ollama), batch size (vLLM) or the account's concurrency limit."
    over_capacity: OverCapacity = "queues"
    context: Mapping[str, int] = field(default_factory=dict)
    "Context window per model id, when known."
    prices: Mapping[str, RoutePrice] = field(default_factory=dict)
    "Per model id; the deepseek route uses the catalogue's peak/off-peak prices."
    load_signal: LoadSignal = "none"
    "Where the server publishes its own queue (vLLM and llama-server metrics)."
    metrics_url: str | None = None
    "Where the load signal is read; by default the server root (base URL minus ``/v1``)."
    load_ttl: float = DEFAULT_LOAD_TTL
    "Seconds a load reading stays fresh: concurrent and close calls share one scrape."
    load_timeout: float = DEFAULT_LOAD_TIMEOUT
    "Seconds a scrape may take before the reading counts as unavailable."
    dialect: Dialect = "openai"
    "How requests are spelt: DeepSeek's (thinking switch, /beta) or plain OpenAI's."
    extra_options: tuple[str, ...] = ()
    "Sampling options the server takes beyond OpenAI's, by their wire names (vLLM: top_k…)."
    continuation_fields: Mapping[str, Any] = field(default_factory=dict)
    "Body fields that make the server continue a final assistant message (vLLM's flags)."
    capabilities: Capabilities = field(default_factory=Capabilities)
    preset: str | None = None
    unverified: str | None = None
    "What about this route's preset is not verified (shown by `dsollama routes`)."
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> Literal["local", "hosted"]:
        """Privacy class, as answers report it: 'local' for private routes."""
        return "local" if self.private else "hosted"

    def key(self, env: Mapping[str, str] | None = None) -> str | None:
        """The key in clear, for the one place that sends it."""
        if self.api_key:
            return self.api_key
        if self.key_env:
            value = (os.environ if env is None else env).get(self.key_env, "").strip()
            return value or None
        return None

    def own_model(self, requested: str) -> str | None:
        """The route's own id for a requested name, when the route declares it."""
        if requested in self.model_map:
            return self.model_map[requested]
        if requested in self.models:
            return requested
        return None


# -- presets ------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def load_presets(override_path: str | None = None) -> Mapping[str, Mapping[str, Any]]:
    """The packaged route presets, extended by a ``route_presets`` table in ``override_path``."""
    text = resources.files("dsollama").joinpath("data/route_presets.json").read_text("utf-8")
    presets: dict[str, dict[str, Any]] = dict(json.loads(text)["presets"])
    if override_path:
        extra = read_override(override_path).get("route_presets", {})
        if not isinstance(extra, Mapping):
            raise ConfigError(f"route_presets in {override_path} must be a table of presets")
        for name, fields in extra.items():
            if not isinstance(fields, Mapping):
                raise ConfigError(f"route preset {name!r} in {override_path} must be a table")
            presets[str(name)] = {**presets.get(str(name), {}), **fields}
    return presets


_ROUTE_FIELDS = {
    "name",
    "preset",
    "api",
    "base_url",
    "private",
    "names",
    "key_env",
    "api_key",
    "models",
    "model_map",
    "capacity",
    "over_capacity",
    "context",
    "prices",
    "load_signal",
    "metrics_url",
    "load_ttl",
    "load_timeout",
    "dialect",
    "extra_options",
    "continuation_fields",
    "capabilities",
    "unverified",
    "headers",
}


def _choice(where: str, name: str, value: Any, allowed: Any) -> Any:
    options = get_args(allowed)
    if value not in options:
        raise ConfigError(
            f"{where}: {name} = {value!r} is not one of {', '.join(map(repr, options))}",
            hint="`dsollama routes --presets` shows the presets and their fields",
        )
    return value


def _capabilities(where: str, raw: Any, base: Capabilities) -> Capabilities:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: capabilities must be a table")
    known = set(Capabilities.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown capabilit{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}",
            hint="known: " + ", ".join(sorted(known)),
        )
    values = dict(raw)
    if "thinking" in values:
        _choice(where, "capabilities.thinking", values["thinking"], ThinkingSwitch)
    if "reasoning_field" in values:
        _choice(where, "capabilities.reasoning_field", values["reasoning_field"], ReasoningField)
    return replace(base, **values)


def _prices(where: str, raw: Any) -> dict[str, RoutePrice]:
    if not raw:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: prices must be a table of model = {{input, output}}")
    out: dict[str, RoutePrice] = {}
    for model, price in raw.items():
        try:
            out[str(model)] = RoutePrice(
                input=float(price["input"]),
                output=float(price["output"]),
                cached_input=float(price["cached_input"]) if "cached_input" in price else None,
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{where}: prices.{model} needs numbers input and output (USD per million tokens)"
            ) from None
    return out


def _strings(where: str, name: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ConfigError(f"{where}: {name} must be a list of model names")
    return tuple(str(x) for x in raw)


def _string_map(where: str, name: str, raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {name} must be a table of name = value")
    return {str(k): str(v) for k, v in raw.items()}


_WIRE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# Fields a request sets itself: a route's extra option or continuation field must not
# let a caller's options (or the route) replace them.
_REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "suffix",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "response_format",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "thinking",
        "reasoning_effort",
        "n",
        "logprobs",
        "top_logprobs",
    }
)


def _not_request_fields(where: str, name: str, names: Sequence[str]) -> None:
    taken = sorted(set(names) & _REQUEST_FIELDS)
    if taken:
        raise ConfigError(
            f"{where}: {name} names {', '.join(taken)}, which dsollama sets itself",
            hint=f"list only fields the server takes beyond OpenAI's in {name}",
        )


def _extra_options(where: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str) or not isinstance(raw, Sequence):
        raise ConfigError(
            f"{where}: extra_options must be a list of option names",
            hint='e.g. extra_options = ["top_k", "min_p", "repetition_penalty"]',
        )
    names = tuple(raw)
    bad = [repr(n) for n in names if not isinstance(n, str) or not _WIRE_NAME.fullmatch(n)]
    if bad:
        raise ConfigError(
            f"{where}: extra_options holds {', '.join(bad[:3])}, not option names",
            hint="use the names the server's API takes: lower case letters, digits and _",
        )
    _not_request_fields(where, "extra_options", names)
    return names


def _seconds(where: str, name: str, raw: Any, default: float) -> float:
    if raw is None:
        return default
    if (
        isinstance(raw, bool)
        or not isinstance(raw, (int, float))
        or not 0 < raw <= _MAX_LOAD_SECONDS
    ):
        raise ConfigError(
            f"{where}: {name} = {raw!r} must be a number of seconds above 0 and at most {_MAX_LOAD_SECONDS:g}",
            hint=f"the default is {default:g}",
        )
    return float(raw)


def _metrics_url(where: str, raw: Any) -> str | None:
    if not raw:
        return None
    try:
        return normalise_base_url(str(raw))
    except ValueError as exc:
        raise ConfigError(f"{where}: metrics_url: {exc}") from None


def _continuation_fields(where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(v, (str, int, float, bool)) for v in raw.values()
    ):
        raise ConfigError(
            f"{where}: continuation_fields must be a table of field = true/false/number/text",
            hint="e.g. continuation_fields = {continue_final_message = true, add_generation_prompt = false}",
        )
    fields = {str(k): v for k, v in raw.items()}
    _not_request_fields(where, "continuation_fields", list(fields))
    return fields


def route_from_table(
    table: Mapping[str, Any],
    presets: Mapping[str, Mapping[str, Any]],
    *,
    index: int = 0,
) -> RouteConfig:
    """One `RouteConfig` from a ``[[routes]]`` table (or a dict given in code)."""
    raw = dict(table)
    label = str(raw.get("name") or raw.get("preset") or f"#{index + 1}")
    where = f"route {label!r}"
    unknown = sorted(set(raw) - _ROUTE_FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
            hint="fields: " + ", ".join(sorted(_ROUTE_FIELDS - {"api_key"})),
        )
    preset_name = raw.get("preset")
    preset: Mapping[str, Any] = {}
    if preset_name is not None:
        if preset_name not in presets or str(preset_name).startswith("_"):
            names = ", ".join(sorted(p for p in presets if not p.startswith("_")))
            raise ConfigError(f"{where}: unknown preset {preset_name!r}", hint=f"presets: {names}")
        preset = presets[preset_name]
    merged = {**preset, **{k: v for k, v in raw.items() if v is not None}}
    api = _choice(where, "api", merged.get("api", "openai"), Api)
    base_url_raw = merged.get("base_url")
    if not base_url_raw:
        raise ConfigError(f"{where}: base_url is required (or a preset that has one)")
    try:
        base_url = (
            parse_ollama_host(str(base_url_raw))
            if api == "ollama"
            else normalise_base_url(str(base_url_raw))
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: base_url: {exc}") from None
    name = str(
        merged.get("name")
        or f"{'local' if api == 'ollama' else preset_name or 'openai'}:{display_host(base_url)}"
    )
    private_default = api == "ollama" or is_loopback_url(base_url)
    private = merged.get("private", private_default)
    if not isinstance(private, bool):
        raise ConfigError(f"{where}: private must be true or false")
    capacity = merged.get("capacity")
    if capacity is not None and (not isinstance(capacity, int) or capacity < 1):
        raise ConfigError(f"{where}: capacity must be a whole number of at least 1")
    key_env = merged.get("key_env")
    if key_env is not None and (not isinstance(key_env, str) or not key_env.strip()):
        raise ConfigError(f"{where}: key_env must name an environment variable")
    context = merged.get("context") or {}
    if not isinstance(context, Mapping) or not all(
        isinstance(v, int) and v > 0 for v in context.values()
    ):
        raise ConfigError(f"{where}: context must be a table of model = tokens")
    base_caps = _capabilities(where, preset.get("capabilities"), Capabilities())
    caps = _capabilities(where, raw.get("capabilities"), base_caps)
    default_dialect = "ollama" if api == "ollama" else "openai"
    dialect = _choice(where, "dialect", merged.get("dialect", default_dialect), Dialect)
    if api == "openai" and dialect == "ollama":
        raise ConfigError(
            f"{where}: dialect 'ollama' needs api 'ollama'; an OpenAI-format route speaks "
            "'openai' (vLLM, llama-server, most providers) or 'deepseek' (DeepSeek's own API)"
        )
    return RouteConfig(
        name=name,
        api=api,
        base_url=base_url,
        private=private,
        names=_choice(where, "names", merged.get("names", "own"), Names),
        key_env=key_env,
        api_key=str(merged["api_key"]) if merged.get("api_key") else None,
        models=_strings(where, "models", merged.get("models")),
        model_map=_string_map(where, "model_map", merged.get("model_map")),
        capacity=capacity,
        over_capacity=_choice(
            where, "over_capacity", merged.get("over_capacity", "queues"), OverCapacity
        ),
        context={str(k): int(v) for k, v in context.items()},
        prices=_prices(where, merged.get("prices")),
        load_signal=_choice(where, "load_signal", merged.get("load_signal", "none"), LoadSignal),
        metrics_url=_metrics_url(where, merged.get("metrics_url")),
        load_ttl=_seconds(where, "load_ttl", merged.get("load_ttl"), DEFAULT_LOAD_TTL),
        load_timeout=_seconds(
            where, "load_timeout", merged.get("load_timeout"), DEFAULT_LOAD_TIMEOUT
        ),
        dialect=dialect,
        extra_options=_extra_options(where, merged.get("extra_options")),
        continuation_fields=_continuation_fields(where, merged.get("continuation_fields")),
        capabilities=caps,
        preset=str(preset_name) if preset_name is not None else None,
        unverified=str(merged["unverified"]) if merged.get("unverified") else None,
        headers=_string_map(where, "headers", merged.get("headers")),
    )


def _legacy_routes(
    settings: Settings, presets: Mapping[str, Mapping[str, Any]]
) -> list[RouteConfig]:
    """``ollama_hosts`` and the ``hosted_*`` settings as routes, with the behaviour they had."""
    ollama = presets["ollama"]
    routes = [
        route_from_table(
            {
                "preset": "ollama",
                "base_url": host,
                "name": f"local:{display_host(host)}",
                "capacity": settings.local_slots,
            },
            {"ollama": ollama},
        )
        for host in settings.ollama_hosts
    ]
    key = settings.api_key()
    if key:
        url = settings.hosted_base_url
        routes.append(
            route_from_table(
                {
                    "preset": "deepseek",
                    "base_url": url,
                    "name": f"hosted:{display_host(url)}",
                    # Any OpenAI-format server named here was always third party (and
                    # spoken to in DeepSeek's dialect), whatever its address.
                    "private": False,
                    "api_key": key,
                    "key_env": None,
                    "capacity": settings.hosted_concurrency,
                },
                {"deepseek": presets["deepseek"]},
            )
        )
    return routes


def resolve_routes(
    settings: Settings,
    *,
    tables: Sequence[Mapping[str, Any] | RouteConfig] | None = None,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RouteConfig]:
    """Every route of a client, in configuration order.

    ``tables`` (``Client(routes=[...])``) win over ``settings.routes`` (``[[routes]]`` in the
    config file); with neither, the simple settings become routes.
    """
    presets = presets if presets is not None else load_presets(settings.catalogue_path)
    given = list(tables) if tables is not None else list(settings.routes)
    if not given:
        return _legacy_routes(settings, presets)
    routes: list[RouteConfig] = []
    for index, table in enumerate(given):
        route = (
            table
            if isinstance(table, RouteConfig)
            else route_from_table(table, presets, index=index)
        )
        routes.append(route)
    seen: set[str] = set()
    for route in routes:
        if route.name in seen:
            raise ConfigError(
                f"two routes are named {route.name!r}", hint="give each [[routes]] table a name"
            )
        seen.add(route.name)
    return routes


def route_cost(
    route: RouteConfig, model: str, usage: HostedUsage, catalogue: Catalogue
) -> float | None:
    """Estimated charge of one answer in US dollars; None when the price is unknown.

    Private routes cost nothing per token. A route's own prices win; the DeepSeek route
    falls back on the catalogue's peak/off-peak prices.
    """
    if route.private:
        return 0.0
    price = route.prices.get(model)
    if price is None:
        return catalogue.cost_usd(
            model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
        )
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    total = (
        (usage.prompt_tokens - cached) * price.input
        + cached * cached_rate
        + usage.completion_tokens * price.output
    )
    return total / 1_000_000
