"""Provisioning routes passed through to the local daemon, byte for byte.

``/api/pull``, ``/api/create``, ``/api/push``, ``/api/copy``, ``/api/delete``,
``/api/blobs/:digest``, ``/api/show``, ``/api/ps`` and the legacy ``/api/embeddings`` have
nothing to route: they concern the local daemon's own models. Relaying the bytes keeps
every detail a client relies on — progress lines, status codes, error texts, the empty
bodies of copy and delete — without re-encoding them. Only the body's framing is ours.

Requests reach the first configured daemon. The caller's ``Authorization`` header (serve's
token) is never forwarded. Who may use the provisioning routes at all is `security.AdminGate`'s
call. A blob's digest is checked (``sha256:`` and 64 hex digits, as the daemon checks it)
and the daemon's URL is built from it, never from the request's path. A client that disconnects closes the upstream request, so the
daemon stops a pull it would otherwise finish for nobody. Blob uploads are streamed, not
buffered, and are exempt from the JSON body limit (model weights are gigabytes).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import ApiError, from_exception
from .state import ServeState, state_of
from .streaming import Exchange, disconnect_notice, run_until_disconnect
from .validate import parse_json_object, read_limited

__all__ = ["DIGEST", "Proxied", "forward", "forward_blob"]

# What the daemon needs to know about the request; never Authorization (serve's token).
_REQUEST_HEADERS = ("content-type", "content-length", "accept", "user-agent")
# Framing headers belong to each hop; the body's own headers pass.
_RESPONSE_HEADERS = ("content-type", "content-length", "content-encoding", "location")
DIGEST = re.compile(r"sha256[:-][0-9a-fA-F]{64}")
"A blob digest as the daemon accepts it."


class Proxied(Response):
    """Relays one request to the daemon and its answer back, watching the client."""

    def __init__(
        self,
        state: ServeState,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        content: bytes | None = None,
        upload: AsyncIterator[bytes] | None = None,
    ) -> None:
        super().__init__()
        self._state = state
        self._method = method
        self._path = path
        self._upstream_headers = headers
        self._content = content
        self._upload = upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(send)
        if self._upload is not None:
            # The upload itself reads `receive` (and notices a disconnect); watching it
            # at the same time would steal the body's messages.
            await self._relay(exchange)
            return
        await run_until_disconnect(
            receive, self._relay(exchange), exchange, disconnect_notice(scope)
        )

    async def _relay(self, exchange: Exchange) -> None:
        daemon = self._state.daemon()
        http = daemon.http
        body = self._upload if self._upload is not None else self._content
        request = http.build_request(
            self._method,
            self._path,
            content=body,
            headers=self._upstream_headers,
            # Provisioning answers may pause for minutes (a quantize, a slow registry);
            # the client on the other side owns that deadline, and its disconnect ends it.
            timeout=httpx.Timeout(
                connect=daemon.quick_timeout.connect, read=None, write=None, pool=None
            ),
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            await exchange.error(from_exception(daemon.error(exc)), "ollama", {})
            return
        try:
            headers = {k: v for k, v in response.headers.items() if k.lower() in _RESPONSE_HEADERS}
            await exchange.start(response.status_code, headers)
            try:
                async for chunk in response.aiter_raw():
                    await exchange.body(chunk)
            except httpx.HTTPError as exc:
                # Progress was already relayed: end the way the daemon ends a broken
                # stream, with one error line (the official client raises on it).
                broken = daemon.error(exc)
                line = json.dumps({"error": str(broken)}) + "\n"
                await exchange.body(line.encode())
            await exchange.end()
        finally:
            await response.aclose()


def _forward_headers(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}


def _path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def forward(request: Request) -> Response:
    """Pass a request through to the first local daemon (buffered JSON body, size-limited)."""
    state = state_of(request)
    content = await read_limited(
        request.stream(), state.max_body, request.headers.get("content-length")
    )
    # Checked, not re-encoded: a body the daemon could choke on (too deep, NaN, lone
    # surrogates) is the client's 400 here, not a 500 there.
    parse_json_object(content)
    return Proxied(
        state,
        request.method,
        _path(request),
        headers=_forward_headers(request),
        content=content if content or request.method not in ("GET", "HEAD") else None,
    )


async def forward_blob(request: Request) -> Response:
    """``HEAD|POST /api/blobs/:digest``: the body is streamed through, never buffered."""
    state = state_of(request)
    digest = str(request.path_params["digest"])
    if not DIGEST.fullmatch(digest):
        # The daemon's own answer. Checking here also keeps the path ours: a decoded
        # "%2e%2e", "?" or "#" must not reach the daemon as another URL.
        raise ApiError(400, "invalid digest format", param="digest")
    if request.method == "HEAD":
        # A HEAD has no body to relay; forwarding its Content-Length would make the
        # daemon wait for bytes that never come.
        return Proxied(state, "HEAD", f"/api/blobs/{digest}", headers={})
    return Proxied(
        state,
        "POST",
        f"/api/blobs/{digest}",
        headers=_forward_headers(request),
        upload=request.stream(),
    )
