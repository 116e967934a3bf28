"""Control routes shared by the doubles: ``/_dsollama/*``.

A double running in another process (``python -m dsollama.testing ...``, the benchmarks,
``dsollama demo``) is steered over HTTP with the same vocabulary a test uses in process:

=======================================  ==================================================
``POST /_dsollama/faults``               queue a `Fault` (JSON object) or a list of them
``GET /_dsollama/faults``                the faults still pending
``DELETE /_dsollama/faults``             clear them
``POST /_dsollama/release``              end every stall waiting for a release
``GET /_dsollama/requests``              recorded requests (``?path=`` / ``?method=``)
``DELETE /_dsollama/requests``           forget them
``GET /_dsollama/config``                the double's settings
``POST /_dsollama/config``               change settings (a JSON object of name: value)
``POST /_dsollama/refuse``               ``{"seconds": S}``: stop listening, drop open
                                         connections; ``S = 0`` until told otherwise
``POST /_dsollama/accept``               listen again
=======================================  ==================================================

Control routes need no authentication and are never recorded, so a test that steers a
double over HTTP sees exactly the requests its code under test made. Any double that
satisfies `Controllable` gets these routes by calling `handle_control`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Protocol

from ._faults import Fault, FaultPlan
from ._server import HTTPServer, RecordedRequest, Request, Response

__all__ = [
    "CONTROL_PREFIX",
    "Controllable",
    "handle_control",
    "is_control_path",
    "recorded_to_json",
    "refuse_from_loop",
]

CONTROL_PREFIX = "/_dsollama/"

# Tasks started from callbacks are kept here until done, so they are not collected early.
_background: set[asyncio.Task[None]] = set()


class Controllable(Protocol):
    """What a double exposes for `handle_control`."""

    @property
    def faults(self) -> FaultPlan: ...

    def recorded(
        self, path: str | None = None, method: str | None = None
    ) -> list[RecordedRequest]: ...

    def clear_requests(self) -> None: ...

    def config(self) -> dict[str, Any]: ...

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Apply settings by name; raise ValueError (or TypeError) on a bad name or value."""
        ...


def is_control_path(path: str) -> bool:
    return path.startswith(CONTROL_PREFIX)


def recorded_to_json(item: RecordedRequest) -> dict[str, Any]:
    return {
        "method": item.method,
        "path": item.path,
        "headers": item.headers,
        "body": item.body.decode("utf-8", "replace"),
        "json": item.json,
        "at": item.at,
    }


def _bad(message: str, status: int = 400) -> Response:
    # The control API's own errors are plain {"error": str}: they are not part of any
    # emulated server, so they do not pretend to be DeepSeek's or Ollama's envelope.
    return Response.json({"error": message}, status=status)


def _body(request: Request) -> Any:
    if not request.body.strip():
        return None
    return request.json()


async def refuse_from_loop(server: HTTPServer, seconds: float, *, keep_current: bool) -> None:
    """Stop listening now (from the server's own loop) and drop open connections.

    `HTTPServer.refuse_connections` is meant for other threads (it blocks on the loop), so
    handlers use this instead. ``keep_current`` spares the connection whose handler is
    running, so a control request can still get its answer. ``seconds > 0`` listens
    again after that long; 0 waits for `HTTPServer.accept_connections`.
    """
    # Reaches into the server's private state on purpose: this module and _server.py are
    # one unit (the doubles' transport), and the server's public API is thread-facing.
    if server._aserver is not None:
        server._aserver.close()
        server._aserver = None
    current = asyncio.current_task()
    for conn in list(server._connections):
        if keep_current and conn._task is current:
            continue
        conn._abort()
    if seconds > 0:
        loop = asyncio.get_running_loop()

        def reopen() -> None:
            if server._aserver is None:
                task = loop.create_task(server._listen())
                _background.add(task)
                task.add_done_callback(_background.discard)

        loop.call_later(seconds, reopen)


async def handle_control(request: Request, target: Controllable, server: HTTPServer) -> Response:
    """Answer one ``/_dsollama/*`` request for ``target``."""
    name = request.path[len(CONTROL_PREFIX) :].strip("/")
    method = request.method
    try:
        body = _body(request)
    except ValueError as exc:
        return _bad(f"body is not JSON: {exc}")

    if name == "faults":
        if method == "GET":
            return Response.json({"faults": [f.to_json() for f in target.faults.pending()]})
        if method == "DELETE":
            target.faults.clear()
            return Response.json({"faults": []})
        if method == "POST":
            items = body if isinstance(body, list) else [body]
            try:
                faults = [Fault.from_json(dict(item)) for item in items]
            except (TypeError, ValueError) as exc:
                return _bad(f"bad fault: {exc}")
            target.faults.add(*faults)
            return Response.json({"faults": [f.to_json() for f in target.faults.pending()]})
    elif name == "release" and method == "POST":
        target.faults.release()
        return Response.json({"released": True})
    elif name == "requests":
        if method == "GET":
            items = target.recorded(request.query.get("path"), request.query.get("method"))
            return Response.json({"requests": [recorded_to_json(r) for r in items]})
        if method == "DELETE":
            target.clear_requests()
            return Response.json({"requests": []})
    elif name == "config":
        if method == "GET":
            return Response.json(target.config())
        if method == "POST":
            if not isinstance(body, Mapping):
                return _bad("config must be a JSON object of setting: value")
            try:
                return Response.json(target.configure(**body))
            except (TypeError, ValueError) as exc:
                return _bad(str(exc))
    elif name == "refuse" and method == "POST":
        seconds = (body or {}).get("seconds", 0) if isinstance(body, Mapping) else None
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            return _bad('refuse takes {"seconds": S} with S >= 0')
        await refuse_from_loop(server, float(seconds), keep_current=True)
        # The answer travels on a connection that was kept open; "close" makes the client
        # drop it, so its next request meets the closed port like everyone else's.
        return Response(
            body=json.dumps({"refused": True, "seconds": seconds}).encode(),
            headers={"Connection": "close"},
        )
    elif name == "accept" and method == "POST":
        if server._aserver is None:
            await server._listen()
        return Response.json({"accepting": True})
    else:
        return _bad(f"no control route {request.path}", 404)
    return _bad(f"{method} is not allowed on {request.path}", 405)
