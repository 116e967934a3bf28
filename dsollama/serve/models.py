"""The model list clients pick from: the daemon's models, plus the hosted ones when allowed.

Open WebUI and Cherry Studio fill their model picker from ``/api/tags`` or ``/v1/models``
and send back exactly the name the user picked. Listing the hosted models (when a key is
set and the server is not local-only) lets a user choose "the hosted model, with local
fallback" as easily as "the local model, with hosted fallback": a hosted name is routed
hosted-first (`ServeState.controls`). They are marked the way Ollama marks its own cloud
models in ``/api/tags`` (``remote_model``/``remote_host``) and, in ``/v1/models``, by
``owned_by``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import httpx

from .._exceptions import redact
from .._wire.local import classify_local_error
from .errors import ApiError, from_exception
from .state import ServeState

__all__ = [
    "hosted_names",
    "hosted_show",
    "hosted_tag",
    "local_tags",
    "openai_model",
    "openai_models",
]

HOSTED_OWNER = "deepseek-hosted"
HOSTED_FORMAT = "hosted"


def hosted_names(state: ServeState) -> list[str]:
    """Hosted model names to offer (aliases left out: one entry per real model)."""
    if not state.hosted_configured:
        return []
    forced = state.ai.settings.hosted_model
    if forced:
        return [forced]
    return [name for name, m in state.ai.catalogue.hosted.items() if m.alias_of is None]


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": HOSTED_FORMAT,
        "family": "deepseek",
        "families": ["deepseek"],
        "parameter_size": "",
        "quantization_level": "",
    }


def hosted_tag(state: ServeState, name: str) -> dict[str, Any]:
    """An ``/api/tags`` entry for a hosted model (parses as `ollama.ListResponse.Model`)."""
    return {
        "name": name,
        "model": name,
        "modified_at": _iso(state.started_at),
        "size": 0,
        # Stable and unique per name; clients use the digest to tell models apart.
        "digest": hashlib.sha256(f"dsollama-hosted:{name}".encode()).hexdigest(),
        "details": _details(),
        "remote_model": name,
        "remote_host": state.ai.settings.hosted_base_url,
    }


def hosted_show(state: ServeState, name: str) -> dict[str, Any]:
    """An ``/api/show`` answer for a hosted model (parses as `ollama.ShowResponse`)."""
    entry = state.ai.catalogue.hosted.get(name)
    capabilities = ["completion", "tools"]
    info: dict[str, Any] = {"general.architecture": "deepseek", "general.basename": name}
    if entry is not None:
        if entry.thinking_default:
            capabilities.append("thinking")
        if entry.vision:
            capabilities.append("vision")
        info["deepseek.context_length"] = entry.context_length
    return {
        "modelfile": f"# {name} is answered by the hosted API at "
        f"{state.ai.settings.hosted_base_url} through dsollama serve\n",
        "parameters": "",
        "template": "",
        "details": _details(),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": _iso(state.started_at),
        "remote_model": name,
        "remote_host": state.ai.settings.hosted_base_url,
    }


async def local_tags(state: ServeState) -> tuple[list[dict[str, Any]], ApiError | None]:
    """The daemon's ``/api/tags`` models, or an error saying why they could not be read."""
    host = state.daemon_url
    try:
        response = await state.http.get(f"{host}/api/tags")
    except httpx.HTTPError as exc:
        return [], from_exception(classify_local_error(exc, host=host))
    if response.status_code != 200:
        return [], ApiError(
            502,
            f"the Ollama daemon at {host} answered /api/tags with {response.status_code}: "
            f"{redact(response.text[:200])}",
        )
    try:
        models = response.json().get("models") or []
    except ValueError:
        return [], ApiError(502, f"the Ollama daemon at {host} sent a /api/tags that is not JSON")
    return [m for m in models if isinstance(m, dict)], None


def openai_model(model_id: str, created: int, owned_by: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


def _created(entry: dict[str, Any], fallback: float) -> int:
    text = entry.get("modified_at")
    if isinstance(text, str):
        try:
            return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(fallback)


async def openai_models(state: ServeState) -> tuple[list[dict[str, Any]], ApiError | None]:
    """``/v1/models`` entries: local models (owned_by ``library``) and hosted ones."""
    local, error = await local_tags(state)
    data = [
        openai_model(str(m.get("model") or m.get("name")), _created(m, state.started_at), "library")
        for m in local
    ]
    seen = {d["id"] for d in data}
    data += [
        openai_model(name, int(state.started_at), HOSTED_OWNER)
        for name in hosted_names(state)
        if name not in seen
    ]
    return data, error
