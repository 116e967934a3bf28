"""What every handler of one app shares: the client, the settings, metrics and limits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from .._backends.daemon import OllamaDaemon
from .errors import ApiError
from .validate import Body, parse_json_object, read_body

if TYPE_CHECKING:
    from .._client import AsyncClient
    from .._config import Settings
    from .admin import AdminPolicy
    from .observe import ServeMetrics

__all__ = ["DEFAULT_MAX_BODY", "ServeState", "state_of"]

DEFAULT_MAX_BODY = 32 * 1024 * 1024
"32 MiB: a long conversation with a few photos fits; a runaway upload does not."

POLICY_HEADER = "x-dsollama-policy"
LOCAL_ONLY_HEADER = "x-dsollama-local-only"
_POLICY_HEADER = POLICY_HEADER.encode()
_LOCAL_ONLY_HEADER = LOCAL_ONLY_HEADER.encode()
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class ServeState:
    """Shared by every request of one app; the client lives from startup to shutdown."""

    settings: Settings
    metrics: ServeMetrics
    max_body: int = DEFAULT_MAX_BODY
    default_model: str = "deepseek-r1:8b"
    "The model of the /generate compatibility route when the request names none."
    admin: AdminPolicy | None = None
    "Who may use the provisioning routes (set by create_app)."
    started_at: float = field(default_factory=time.time)
    client: AsyncClient | None = None
    declared: dict[str, list[str]] | None = None
    "The names each route declares, by route name (`models`, read once)."

    @property
    def ai(self) -> AsyncClient:
        if self.client is None:  # pragma: no cover - only before the lifespan started
            raise ApiError(503, "dsollama serve is still starting; retry in a moment")
        return self.client

    def daemon(self, route: str | None = None) -> OllamaDaemon:
        """The daemon's one owner (the first Ollama route's, or ``route``'s): provisioning,
        the model list and the pass-through go through the same connection and the same
        error mapping as the routed calls."""
        for backend in self.ai.router.backends:
            if isinstance(backend, OllamaDaemon) and route in (None, backend.route):
                return backend
        raise ApiError(
            404,
            "this server has no Ollama route to pass the request to",
            code="no_daemon",
        )

    @property
    def daemon_url(self) -> str:
        """The first Ollama route's daemon: where provisioning goes."""
        return self.daemon().host

    @property
    def local_only(self) -> bool:
        return self.ai.settings.policy == "local-only"

    @property
    def hosted_configured(self) -> bool:
        """True when answers may come from a third party at all: a third-party route is
        usable (its key is set), the server is not local-only, and fallback is on."""
        s = self.ai.settings
        return (
            any(not b.config.private for b in self.ai.router.backends)
            and not self.local_only
            and (s.fallback or s.policy == "hosted-first")
        )

    async def body(self, request: Request) -> Body:
        """The request's JSON object, read within the size limit."""
        declared = None
        for name, value in request.scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        raw = await read_body(request.receive, self.max_body, declared)
        return Body(parse_json_object(raw))

    def controls(self, request: Request, model: str) -> dict[str, Any]:
        """Per-call routing controls from the request's headers, within the server's policy.

        Which route a model name goes to is the router's plan, the same as for the
        library and the CLI. A request may ask for ``X-Dsollama-Local-Only: true`` or
        ``X-Dsollama-Policy``, but never widen a local-only server.
        """
        out: dict[str, Any] = {}
        settings = self.ai.settings
        if settings.on_broken_stream == "restart":
            # A client reading an Ollama or OpenAI stream cannot be told "discard what you
            # have": once a byte went out, a broken answer ends with an error event, never
            # with a second answer glued to the first. (Before that, moving to another route
            # is ordinary failover.) Continuing from the partial text stays allowed.
            out["on_broken_stream"] = "raise"
        if settings.policy == "local-only":
            return {**out, "local_only": True}
        policy = local_only = None
        for name, value in request.scope["headers"]:  # the first of each, as Headers.get
            if name == _POLICY_HEADER and policy is None:
                policy = value
            elif name == _LOCAL_ONLY_HEADER and local_only is None:
                local_only = value
        wanted = policy.decode("latin-1").strip().lower() if policy else ""
        if wanted:
            if wanted not in ("local-first", "hosted-first", "local-only"):
                raise ApiError(
                    400,
                    f"invalid {POLICY_HEADER} header {wanted!r}: use local-first, hosted-first or local-only",
                )
            out["policy"] = wanted
        if local_only and local_only.decode("latin-1").strip().lower() in _TRUE:
            out["local_only"] = True
        if out.get("policy") == "hosted-first" and not self.hosted_configured:
            # Nothing hosted to put first: answer locally rather than refuse.
            out.pop("policy")
        return out


def state_of(request: Request) -> ServeState:
    state = getattr(request.app.state, "dsollama", None)
    if not isinstance(state, ServeState):  # pragma: no cover - programming error
        raise RuntimeError("the app was not made by dsollama.serve.create_app")
    return state
