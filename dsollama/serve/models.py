"""The model list clients pick from: every usable route's models, each marked with its routes.

Open WebUI and Cherry Studio fill their model picker from ``/api/tags`` or ``/v1/models``
and send back exactly the name the user picked; the router then plans that name as it
would for the library (`_routing.plan`), so what is listed is what can be asked for:

- an Ollama route: the daemon's own tags (only those the route declares, when it
  declares ``models``/``model_map``; a ``model_map`` key is listed under its own name);
- the DeepSeek route: the hosted catalogue's models (aliases left out, or only
  ``hosted_model`` when that setting forces one), plus its ``model_map`` keys;
- any other OpenAI-format route (vLLM, llama-server, a provider): the names it declares
  (``model_map`` keys and ``models``), as `dsollama routes` lists them.

Routes whose key is not set are left out, and so is every third-party route while answers
may not leave the machine (local-only, or no fallback to them). A name several routes
list appears once. Each entry carries ``"dsollama": {"routes": [...], "private": bool}``
— the routes that list it, and whether one of them is private (the user's own machines)
— a field the official clients ignore. Names no daemon holds are marked the way Ollama
marks its own cloud models in ``/api/tags`` (``remote_model``/``remote_host``) and, in
``/v1/models``, by ``owned_by``: ``library`` for a daemon's models, ``deepseek-hosted``
for DeepSeek's, the route's name for any other.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import ollama

from .errors import ApiError, from_exception
from .state import ServeState

if TYPE_CHECKING:
    from .._routes import RouteConfig

__all__ = [
    "HOSTED_OWNER",
    "Offer",
    "hosted_names",
    "offered_routes",
    "offers",
    "openai_models",
    "remote_route",
    "remote_show",
    "tags",
]

HOSTED_OWNER = "deepseek-hosted"
LOCAL_OWNER = "library"
HOSTED_FORMAT = "hosted"
REMOTE_FORMAT = "remote"
"details.format of a private route's model that no daemon holds (a vLLM server, say)."


@dataclass
class Offer:
    """One model name a client may ask for, and every route that lists it."""

    name: str
    routes: list[RouteConfig] = field(default_factory=list)
    tag: dict[str, Any] | None = None
    "The daemon's ``/api/tags`` entry, when a daemon holds the model."

    @property
    def private(self) -> bool:
        """A route of the user's own lists it (it can be answered without leaving them)."""
        return any(r.private for r in self.routes)

    def mark(self) -> dict[str, Any]:
        """dsollama's field on a list entry (the official clients ignore it)."""
        return {"routes": [r.name for r in self.routes], "private": self.private}

    @property
    def owner(self) -> str:
        first = self.routes[0]
        if self.tag is not None:
            return LOCAL_OWNER
        return HOSTED_OWNER if first.names == "hosted" else first.name


def hosted_names(state: ServeState) -> list[str]:
    """The hosted catalogue's models to offer (aliases left out: one entry per real model)."""
    forced = state.ai.settings.hosted_model
    if forced:
        return [forced]
    return [name for name, m in state.ai.catalogue.hosted.items() if m.alias_of is None]


def offered_routes(state: ServeState) -> list[RouteConfig]:
    """The usable routes whose models this server offers, in configuration order."""
    third_parties = state.hosted_configured
    return [b.config for b in state.ai.router.backends if b.config.private or third_parties]


async def _declared(state: ServeState) -> dict[str, list[str]]:
    """Each route's declared names, as `dsollama routes` describes them (read once: they
    come from the configuration, which does not change while the server runs)."""
    if state.declared is None:
        from ..cli.routes import describe

        described = await describe(state.ai)
        state.declared = {entry["name"]: list(entry["models"]) for entry in described}
    return state.declared


def _declares(route: RouteConfig) -> bool:
    return bool(route.models or route.model_map)


async def _remote_names(state: ServeState, route: RouteConfig) -> list[str]:
    """The names an OpenAI-format route offers (no daemon to ask)."""
    if route.names == "hosted":
        return list(dict.fromkeys([*hosted_names(state), *route.model_map]))
    if route.names == "local" and not _declares(route):
        return []  # "any model a daemon has", and there is no daemon to ask
    return (await _declared(state)).get(route.name, [])


async def remote_route(state: ServeState, name: str) -> RouteConfig | None:
    """The first offered OpenAI-format route that lists ``name`` (None: none does)."""
    for route in offered_routes(state):
        if route.api != "ollama" and name in await _remote_names(state, route):
            return route
    return None


async def _daemon_tags(
    state: ServeState, route: RouteConfig
) -> tuple[list[dict[str, Any]], ApiError | None]:
    """A daemon's ``/api/tags`` models, or an error saying why they could not be read."""
    host = route.base_url
    daemon = state.daemon(route.name)
    try:
        response = await daemon.http.get("/api/tags")
    except httpx.HTTPError as exc:
        return [], from_exception(daemon.error(exc))
    if response.status_code != 200:
        # The same mapping as every other door to the daemon: a 404 is a 404, a 500 a 5xx.
        failure = ollama.ResponseError(response.text, response.status_code)
        return [], from_exception(daemon.error(failure))
    try:
        models = response.json().get("models") or []
    except (ValueError, AttributeError):
        return [], ApiError(502, f"the Ollama daemon at {host} sent a /api/tags that is not JSON")
    return [m for m in models if isinstance(m, dict)], None


def _tag_name(tag: dict[str, Any]) -> str:
    return str(tag.get("model") or tag.get("name") or "")


async def _route_tags(
    state: ServeState, route: RouteConfig, tags: list[dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """(name to ask for, the daemon's entry under that name) for what the route serves."""
    if not _declares(route):
        return [(_tag_name(t), t) for t in tags if _tag_name(t)]
    held = {_tag_name(t): t for t in tags}
    out = []
    for requested in (await _declared(state)).get(route.name, []):
        own = route.own_model(requested) or requested
        tag = held.get(own) or held.get(f"{own}:latest")
        if tag is not None:
            out.append((requested, {**tag, "name": requested, "model": requested}))
    return out


async def offers(state: ServeState) -> tuple[list[Offer], ApiError | None]:
    """Every model name on offer, in route order, and why a daemon could not be read."""
    routes = offered_routes(state)
    daemons = [r for r in routes if r.api == "ollama"]
    read = await asyncio.gather(*(_daemon_tags(state, r) for r in daemons))
    found: dict[str, Offer] = {}
    error: ApiError | None = None

    def add(name: str, route: RouteConfig, tag: dict[str, Any] | None) -> None:
        offer = found.setdefault(name, Offer(name))
        if route not in offer.routes:
            offer.routes.append(route)
        if offer.tag is None:
            offer.tag = tag

    # The daemons' models first: a GUI lists them as this machine's.
    for route, (tags, failure) in zip(daemons, read, strict=True):
        error = error or failure
        for name, tag in await _route_tags(state, route, tags):
            add(name, route, tag)
    for route in routes:
        if route.api != "ollama":
            for name in await _remote_names(state, route):
                add(name, route, None)
    return list(found.values()), error


# -- /api/tags and /api/show ------------------------------------------------------------------


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _details(route: RouteConfig) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": REMOTE_FORMAT if route.private else HOSTED_FORMAT,
        "family": "deepseek",
        "families": ["deepseek"],
        "parameter_size": "",
        "quantization_level": "",
    }


def _remote_tag(state: ServeState, offer: Offer) -> dict[str, Any]:
    """An ``/api/tags`` entry for a model no daemon holds (parses as `ollama.ListResponse.Model`)."""
    route = offer.routes[0]
    return {
        "name": offer.name,
        "model": offer.name,
        "modified_at": _iso(state.started_at),
        "size": 0,
        # Stable and unique per name; clients use the digest to tell models apart.
        "digest": hashlib.sha256(f"dsollama-hosted:{offer.name}".encode()).hexdigest(),
        "details": _details(route),
        "remote_model": route.own_model(offer.name) or offer.name,
        "remote_host": route.base_url,
    }


def tags(state: ServeState, offered: list[Offer]) -> list[dict[str, Any]]:
    """``/api/tags`` entries: the daemon's own, or made up for remote models; each marked."""
    return [
        {**(o.tag if o.tag is not None else _remote_tag(state, o)), "dsollama": o.mark()}
        for o in offered
    ]


def remote_show(state: ServeState, name: str, route: RouteConfig) -> dict[str, Any]:
    """An ``/api/show`` answer for a model an OpenAI-format route serves (parses as
    `ollama.ShowResponse`): what the catalogue and the route's configuration know."""
    own = route.own_model(name) or name
    entry = state.ai.catalogue.hosted.get(own) if route.names == "hosted" else None
    capabilities = ["completion"]
    if route.capabilities.tools:
        capabilities.append("tools")
    thinks = entry.thinking_default if entry is not None else route.capabilities.thinking != "never"
    if thinks:
        capabilities.append("thinking")
    if (entry is not None and entry.vision) or route.capabilities.images:
        capabilities.append("vision")
    info: dict[str, Any] = {"general.architecture": "deepseek", "general.basename": name}
    context = route.context.get(own) or (entry.context_length if entry is not None else None)
    if context:
        info["deepseek.context_length"] = context
    return {
        "modelfile": f"# {name} is answered by the route {route.name} at {route.base_url} "
        "through dsollama serve\n",
        "parameters": "",
        "template": "",
        "details": _details(route),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": _iso(state.started_at),
        "remote_model": own,
        "remote_host": route.base_url,
    }


# -- /v1/models ---------------------------------------------------------------------------------


def _created(entry: dict[str, Any] | None, fallback: float) -> int:
    text = entry.get("modified_at") if entry is not None else None
    if isinstance(text, str):
        try:
            return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(fallback)


async def openai_models(state: ServeState) -> tuple[list[dict[str, Any]], ApiError | None]:
    """``/v1/models`` entries (each marked), and why a daemon could not be read."""
    offered, error = await offers(state)
    data = [
        {
            "id": o.name,
            "object": "model",
            "created": _created(o.tag, state.started_at),
            "owned_by": o.owner,
            "dsollama": o.mark(),
        }
        for o in offered
    ]
    return data, error
