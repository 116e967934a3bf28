"""`FakeOllama`: a double of the Ollama daemon that behaves like the real one.

A real HTTP/1.1 server on loopback, speaking Ollama's native API byte for byte where a
client can tell (status codes, error texts, NDJSON framing, headers held until the first
chunk), with the daemon's scheduling: per-model parallel slots where extra requests wait
silently, cold loads, a pending-load queue whose overflow is the 503, keep-alive expiry,
a cap on loaded models, and a client that disconnects freeing its slot.

Routes: ``GET|HEAD /``, ``GET|HEAD /api/version``, ``GET /api/status``,
``GET|HEAD /api/tags``, ``POST /api/show``, ``GET /api/ps``, ``POST /api/pull``,
``POST /api/push``, ``POST /api/create`` (structured body only),
``HEAD|POST /api/blobs/:digest``, ``POST /api/copy``, ``DELETE /api/delete``,
``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed``, ``POST /api/embeddings``,
``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/:model``.

Use it in tests::

    with FakeOllama(models=["deepseek-r1:8b"]) as fake:
        ollama.Client(host=fake.url).chat("deepseek-r1:8b", messages=[...])

    async with FakeOllama(slots=2) as fake: ...

or as a process: ``python -m dsollama.testing ollama --port 11434 --model deepseek-r1:8b``.

Faults (`Fault`, shared with the DeepSeek double) are queued with `FakeOllama.add_fault`
or over HTTP; each request to a serving route takes the first matching one:

- ``refuse``: stop listening (``seconds``; 0 = until `accept_connections`), reset the request;
- ``reset``: reset the connection before the status line;
- ``status``: answer ``status`` with ``{"error": message}`` (a default text per status);
- ``error_line``: after ``after_chunks`` lines, one ``{"error": ...}`` line (HTTP 200, no
  ``done``); with ``after_chunks=0`` the daemon can only answer a status: 500;
- ``close_without_done``: end the stream cleanly after ``after_chunks`` lines, no ``done``;
- ``drop``: cut the connection after ``after_chunks`` lines (no chunked terminator);
- ``stall_before`` / ``stall_after``: go silent ``seconds`` before the status line / after
  ``after_chunks`` lines (``seconds=0``: until `release`);
- ``slow_first_token``: headers at once, first line after ``seconds``;
- ``malformed_line`` / ``blank_line``: a half line or an empty line after ``after_chunks``.

On a one-object answer (``stream: false``, tags, show…) the stream faults act the same
way at the same point: ``error_line`` → 500, ``drop`` → reset, ``close_without_done`` →
the partial object with ``done: false``, ``malformed_line`` → a cut body,
``blank_line`` → an empty body.

Control routes (never recorded, never faulted), for a double in another process:

- ``POST /_dsollama/faults`` a `Fault` JSON object or a list; ``GET``/``DELETE`` to list/clear;
- ``POST /_dsollama/release`` ends releasable stalls;
- ``GET /_dsollama/requests`` (``?path=&method=``) and ``DELETE /_dsollama/requests``;
- ``GET|POST /_dsollama/config``, e.g. ``{"slots": 2, "tokens_per_second": 50}``;
- ``POST /_dsollama/refuse`` ``{"seconds": S}`` closes the listener for S seconds;
  ``POST /_dsollama/accept`` reopens it;
- ``GET /_dsollama/state``: installed and loaded models, requests in flight per model.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar, overload

from . import _ollama_infer, _ollama_openai, _ollama_provision
from ._control import handle_control, is_control_path, refuse_from_loop
from ._double import Double
from ._faults import DEEPSEEK_ONLY_KINDS, Fault
from ._ollama_models import FakeModel, default_registry, parse_name
from ._ollama_sched import MAX_QUEUE_MESSAGE
from ._ollama_settings import CONFIGURABLE, DaemonSettings, checked_changes
from ._ollama_state import DaemonState
from ._ollama_stream import (
    RUNNER_STOPPED,
    STREAM_FAULTS,
    corrupt_body,
    error_response,
    json_response,
    sleep_fault,
)
from ._server import AbortConnection, Request, Response, StreamResponse

__all__ = ["FakeModel", "FakeOllama"]

Route = Callable[[DaemonState, Request, Fault | None], Awaitable[Response | StreamResponse]]
"A route's handler: it sees the daemon's state, never the double's front."

_STREAMING_ROUTES = frozenset(
    {"/api/chat", "/api/generate", "/api/pull", "/api/push", "/api/create", "/v1/chat/completions"}
)
"Routes whose handlers apply stream faults themselves (streaming or not)."
_STATUS_TEXT = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: "model not found",
    429: "too many requests",
    499: "request canceled",
    500: RUNNER_STOPPED,
    502: "bad gateway",
    503: MAX_QUEUE_MESSAGE,
}

T = TypeVar("T")


class _Setting(Generic[T]):
    """A `FakeOllama` attribute kept in its `DaemonSettings`, where the handlers read it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, fake: None, owner: type) -> _Setting[T]: ...
    @overload
    def __get__(self, fake: FakeOllama, owner: type) -> T: ...
    def __get__(self, fake: FakeOllama | None, owner: type) -> _Setting[T] | T:
        if fake is None:
            return self
        value: T = getattr(fake._daemon.settings, self._name)
        return value

    def __set__(self, fake: FakeOllama, value: T) -> None:
        setattr(fake._daemon.settings, self._name, value)


async def _root(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    return Response.text("Ollama is running")


async def _version(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    return Response.json({"version": daemon.settings.version})


async def _status(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    return json_response({"cloud": {"disabled": False, "source": "none"}})


_ROUTES: dict[str, dict[str, Route]] = {
    "/": {"GET": _root, "HEAD": _root},
    "/api/version": {"GET": _version, "HEAD": _version},
    "/api/status": {"GET": _status},
    "/api/tags": {"GET": _ollama_provision.tags, "HEAD": _ollama_provision.tags},
    "/api/show": {"POST": _ollama_provision.show},
    "/api/ps": {"GET": _ollama_provision.ps},
    "/api/pull": {"POST": _ollama_provision.pull},
    "/api/push": {"POST": _ollama_provision.push},
    "/api/create": {"POST": _ollama_provision.create},
    "/api/copy": {"POST": _ollama_provision.copy},
    "/api/delete": {"DELETE": _ollama_provision.delete},
    "/api/blobs/": {
        "HEAD": _ollama_provision.head_blob,
        "POST": _ollama_provision.post_blob,
    },
    "/api/chat": {"POST": _ollama_infer.chat},
    "/api/generate": {"POST": _ollama_infer.generate},
    "/api/embed": {"POST": _ollama_infer.embed},
    "/api/embeddings": {"POST": _ollama_infer.embeddings},
    "/v1/chat/completions": {"POST": _ollama_openai.chat_completions},
    "/v1/models": {"GET": _ollama_openai.list_models},
    "/v1/models/": {"GET": _ollama_openai.retrieve_model},
}
"Path → method → handler; a path ending in ``/`` also serves one more segment."


class FakeOllama(Double):
    """A double of the Ollama daemon (see the module docstring for routes and faults).

    Settings are plain attributes, read when a request needs them, so a test may change
    them at any time (also over ``POST /_dsollama/config``). ``slots`` applies at once to
    loaded models too, as if the daemon restarted with the models still warm.
    """

    foreign_faults = DEEPSEEK_ONLY_KINDS
    foreign_owner = "DeepSeek"

    version = _Setting[str]()
    max_loaded = _Setting[int]()
    max_queue = _Setting[int]()
    load_seconds = _Setting[float]()
    keep_alive_seconds = _Setting[float]()
    prompt_seconds = _Setting[float]()
    tokens_per_second = _Setting[float]()
    answer_tokens = _Setting[int]()
    thinking_tokens = _Setting[int]()
    think_inline = _Setting[bool]()
    pull_bytes_per_second = _Setting[float]()
    embed_dims = _Setting[int]()
    pull_tick_seconds = _Setting[float]()
    "Progress lines while pulling come this often (the daemon's ticker)."

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Iterable[str | FakeModel] = (),
        registry: Iterable[FakeModel] | None = None,
        version: str = "0.33.0",
        slots: int = 1,
        max_loaded: int = 3,
        max_queue: int = 512,
        load_seconds: float = 0.0,
        keep_alive_seconds: float = 300.0,
        prompt_seconds: float = 0.0,
        tokens_per_second: float = 1000.0,
        answer_tokens: int = 12,
        thinking_tokens: int = 8,
        think_inline: bool = False,
        pull_bytes_per_second: float = 50_000_000,
        embed_dims: int = 8,
    ) -> None:
        settings = DaemonSettings(
            version=version,
            slots=slots,
            max_loaded=max_loaded,
            max_queue=max_queue,
            load_seconds=load_seconds,
            keep_alive_seconds=keep_alive_seconds,
            prompt_seconds=prompt_seconds,
            tokens_per_second=tokens_per_second,
            answer_tokens=answer_tokens,
            thinking_tokens=thinking_tokens,
            think_inline=think_inline,
            pull_bytes_per_second=pull_bytes_per_second,
            embed_dims=embed_dims,
        )
        super().__init__(self._handle, host=host, port=port)
        self._daemon = DaemonState(
            settings, self._faults, default_registry() if registry is None else registry
        )
        for item in models:
            self.install(item)

    # -- settings -----------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """Parallel requests per loaded model (``OLLAMA_NUM_PARALLEL``)."""
        return self._daemon.settings.slots

    @slots.setter
    def slots(self, value: int) -> None:
        self._daemon.settings.slots = value
        if self._server.running:
            self._server.loop.call_soon_threadsafe(self._daemon.sched.slots_changed)

    def config(self) -> dict[str, Any]:
        """The settings, as ``GET /_dsollama/config`` shows them."""
        return {name: getattr(self, name) for name in CONFIGURABLE}

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings by name (``POST /_dsollama/config``); ValueError on a bad one."""
        for name, value in checked_changes(changes).items():
            setattr(self, name, value)  # through the attributes: `slots` lets waiters in
        return self.config()

    # -- lifecycle (the rest is in Double) -------------------------------------------------

    def _before_start(self) -> None:
        self._daemon.new_scheduler()

    # -- models -------------------------------------------------------------------------

    def install(self, model: str | FakeModel) -> FakeModel:
        """Install a model as if pulled: a registry name, any name, or a `FakeModel`."""
        return self._daemon.install(model)

    def preload(self, *models: str) -> None:
        """Load models into memory as a request would, without recording one.

        A fresh daemon has its models on disk but not in memory; preloading starts a test
        from a daemon that has been answering for a while (a warm model).
        """
        daemon = self._daemon

        async def load() -> None:
            for name in models:
                parsed = parse_name(name)
                model = daemon.lookup(parsed) if parsed is not None else None
                if model is None:
                    raise ValueError(
                        f"preload: model {name!r} is not installed; pass it in models="
                    )
                runner = await daemon.sched.acquire(model, {}, None)
                daemon.sched.detach(runner)

        self._server.call(load())

    def unload(self, *models: str) -> None:
        """Take models out of memory, as the daemon does when their keep-alive ends."""
        daemon = self._daemon

        async def unload() -> None:
            for name in models:
                parsed = parse_name(name)
                model = daemon.lookup(parsed) if parsed is not None else None
                if model is not None:
                    daemon.sched.expire_model(model)

        self._server.call(unload())

    def installed_models(self) -> list[str]:
        return self._daemon.installed_names()

    def loaded_models(self) -> list[str]:
        return self._daemon.loaded_names()

    def in_flight(self, model: str) -> int:
        """Requests for ``model`` inside the double: queued, loading, waiting or generating."""
        return self._daemon.in_flight_for(model)

    # -- dispatch -----------------------------------------------------------------------

    async def _handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        if is_control_path(path):
            if path.rstrip("/") == "/_dsollama/state" and request.method == "GET":
                return Response.json(self._daemon.snapshot())
            return await handle_control(request, self, self._server)
        if not self._host_allowed(request.headers.get("host", "")):
            return Response(status=403, content_type=None)
        if request.method == "OPTIONS" and "origin" in request.headers:
            return Response(status=204, content_type=None, headers=_cors(request))
        methods = _ROUTES.get(path)
        for prefix in ("/api/blobs/", "/v1/models/"):
            # Gin's `:param` matches exactly one non-empty path segment.
            rest = path[len(prefix) :]
            if methods is None and path.startswith(prefix) and rest and "/" not in rest:
                methods = _ROUTES[prefix]
        if methods is None:
            return Response(status=404, body=b"404 page not found", content_type="text/plain")
        handler = methods.get(request.method)
        if handler is None:
            return Response(status=405, body=b"405 method not allowed", content_type="text/plain")
        fault = self._faults.take(path, body=request.body)
        if fault is not None:
            early = await self._early_fault(fault, path)
            if early is not None:
                return early
        response = await handler(self._daemon, request, fault)
        if fault is not None and fault.kind in STREAM_FAULTS and path not in _STREAMING_ROUTES:
            # One-object answers: the stream faults act on the whole body.
            if fault.kind == "error_line":
                return self._fault_status(path, 500, fault.message or RUNNER_STOPPED)
            if fault.kind == "drop":
                raise AbortConnection
            await sleep_fault(fault, self._faults)
            return corrupt_body(response, fault) if isinstance(response, Response) else response
        return response

    async def _early_fault(self, fault: Fault, path: str) -> Response | None:
        if fault.kind == "refuse":
            await refuse_from_loop(self._server, fault.seconds, keep_current=False)
            raise AbortConnection
        if fault.kind == "reset":
            raise AbortConnection
        if fault.kind == "stall_before":
            await self._faults.stall(fault.seconds)
            return None
        if fault.kind == "status":
            status = fault.status or 500
            return self._fault_status(
                path, status, fault.message or _STATUS_TEXT.get(status, "error")
            )
        return None

    def _fault_status(self, path: str, status: int, message: str) -> Response:
        if path.startswith("/v1/"):
            return _ollama_openai.openai_error(status, message)
        return error_response(status, message)

    def _host_allowed(self, host: str) -> bool:
        # The daemon answers 403 to a Host that is not loopback/private/local when it
        # listens on loopback (DNS-rebinding protection).
        if not host or not _is_loopback(self._server.host):
            return True
        if host.startswith("["):
            hostname = host[1 : host.find("]")]  # [v6]:port
        elif host.count(":") == 1:
            hostname = host.rsplit(":", 1)[0]
        else:
            hostname = host
        hostname = hostname.lower()
        if hostname in ("localhost", _hostname()) or hostname.endswith(
            (".localhost", ".local", ".internal")
        ):
            return True
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return False
        return address.is_loopback or address.is_private or address.is_unspecified


@functools.cache
def _hostname() -> str:
    return socket.gethostname().lower()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _cors(request: Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
        "Access-Control-Allow-Methods": "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
        "Access-Control-Allow-Headers": "Authorization,Content-Type,User-Agent,Accept,X-Requested-With",
        "Access-Control-Max-Age": "43200",
    }
