"""Who may talk to the server: the bind rule, the bearer token, the Host check.

The server holds the hosted API key and spends it on every request it forwards, so:

- it binds 127.0.0.1 by default; any other address needs a token (`check_bind` refuses
  to start without one);
- with a token, every route but ``/healthz`` needs ``Authorization: Bearer <token>``,
  compared in constant time; a missing or wrong token gets 401 in the route's dialect;
- without a token (loopback only), a request a web page could have forged is refused with
  403: a ``Host`` header naming another site (DNS rebinding, which the Ollama daemon also
  refuses) or an ``Origin`` that is neither a local page nor a desktop app. Otherwise any
  site open in the user's browser could spend the key through the loopback server.

A refused request's connection is closed after the answer: a peer without the token must
not keep it open by sending the rest of its body slowly. The token never appears in a log
line, an error message or a response.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any

from .._exceptions import ConfigError
from .errors import CLOSE, ApiError, dialect_for, render

__all__ = [
    "AuthMiddleware",
    "HostGuard",
    "check_bind",
    "host_allowed",
    "is_loopback_host",
    "origin_pattern",
    "refuse",
]

OPEN_PATHS = frozenset({"/healthz"})
"Answered without a token: process supervisors and load balancers probe them."


def is_loopback_host(host: str) -> bool:
    """True for an address only this machine can reach.

    >>> is_loopback_host("127.0.0.1"), is_loopback_host("::1"), is_loopback_host("localhost")
    (True, True, True)
    >>> is_loopback_host("0.0.0.0"), is_loopback_host("192.168.1.5"), is_loopback_host("::")
    (False, False, False)
    """
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token."""
    if token or is_loopback_host(host):
        return
    raise ConfigError(
        f"refusing to listen on {host} without a token: anyone who can reach this machine "
        "could use the server, and your hosted API key with it",
        hint="set a token with --token or DSOLLAMA_SERVE_TOKEN (clients then send "
        "'Authorization: Bearer <token>'), or listen on 127.0.0.1",
    )


async def refuse(
    send: Any, path: str, error: ApiError, *, www_authenticate: bool = False, close: bool = True
) -> None:
    """Answer ``error`` in the path's dialect without reading the body; then, with
    ``close``, end the connection (the peer may not use it for anything else)."""
    status, headers, body = render(error, dialect_for(path))
    fields = {**headers, **(CLOSE if close else {}), "content-length": str(len(body))}
    raw = [(k.encode(), v.encode()) for k, v in fields.items()]
    if www_authenticate:
        raw.append((b"www-authenticate", b'Bearer realm="dsollama"'))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class AuthMiddleware:
    """Every request but OPEN_PATHS and CORS preflights needs ``Bearer <token>``.

    ``tokens``: each accepted (serve's token, and the admin token when there is one).
    """

    def __init__(self, app: Any, tokens: Sequence[str]) -> None:
        self.app = app
        self._expected = [f"Bearer {t}".encode() for t in tokens if t]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
                break
        # compare_digest: the time taken must not tell an attacker how much of a guess
        # matched. Every token is compared, so the time does not say which one matched.
        matches = [hmac.compare_digest(given, expected) for expected in self._expected]
        if any(matches):
            await self.app(scope, receive, send)
            return
        message = (
            "missing bearer token: send 'Authorization: Bearer <token>' (the token this "
            "server was started with; in OpenAI clients it is the API key)"
            if not given
            else "wrong bearer token: send the token this server was started with"
        )
        error = ApiError(401, message, code="invalid_api_key")
        await refuse(send, scope["path"], error, www_authenticate=True)


def _machine_names() -> set[str]:
    name = socket.gethostname().lower()
    return {name, name.split(".", 1)[0]}


def host_allowed(host_header: str, machine: set[str] | None = None) -> bool:
    """Is a ``Host`` header one that a local client would send? (Ollama's rule.)

    >>> host_allowed("127.0.0.1:11435"), host_allowed("localhost"), host_allowed("[::1]:80")
    (True, True, True)
    >>> host_allowed("app.localhost"), host_allowed("nas.local"), host_allowed("10.0.0.8:11435")
    (True, True, True)
    >>> host_allowed("evil.example.com"), host_allowed("evil.example.com:11435")
    (False, False)
    """
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if not host or host == "localhost":
        return True
    if host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in (machine if machine is not None else _machine_names())
    # An IP literal cannot be a rebinding attacker's domain name.
    return address.is_loopback or address.is_private or address.is_unspecified


# Ollama's default CORS origins: local pages on any port and the schemes of desktop apps
# (Electron, Tauri, VS Code webviews). Never "null": sandboxed frames of any site send it.
LOCAL_ORIGINS = (
    r"https?://(localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(:\d+)?"
    r"|(app|file|tauri|vscode-webview|vscode-file)://.*"
)


def origin_pattern(extra: Sequence[str] = ()) -> str:
    """The regular expression of allowed browser origins (local ones plus ``extra``).

    >>> import re
    >>> allowed = re.compile(origin_pattern(["https://chat.example.org"]))
    >>> [bool(allowed.fullmatch(o)) for o in ("http://localhost:3000", "https://chat.example.org", "https://evil.example", "null")]
    [True, True, False, False]
    """
    escaped = "|".join(re.escape(o.rstrip("/")) for o in extra if o and o != "*")
    return f"{LOCAL_ORIGINS}|{escaped}" if escaped else LOCAL_ORIGINS


class HostGuard:
    """Without a token: refuse (403) requests a web page could have forged.

    A ``Host`` that is not a local name means DNS rebinding; an ``Origin`` that is not
    allowed means a page of another site (browsers send Origin on every cross-site POST,
    even those that need no CORS preflight). Clients that are not browsers send neither.
    """

    def __init__(self, app: Any, origins: Sequence[str] = ()) -> None:
        self.app = app
        self._machine = _machine_names()
        self._origin = re.compile(origin_pattern(origins))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = origin = None
            for name, value in scope["headers"]:
                if name == b"host":
                    host = value.decode("latin-1")
                elif name == b"origin":
                    origin = value.decode("latin-1")
            problem = None
            if not host_allowed(host or "", self._machine):
                problem = (
                    f"Host {host!r} is not a local name; this server only answers requests "
                    "addressed to this machine (start it with --token to serve other names)"
                )
            elif origin is not None and not self._origin.fullmatch(origin):
                problem = (
                    f"Origin {origin!r} may not use this server; allow it with "
                    "--cors-origin, or start the server with --token"
                )
            if problem is not None:
                await refuse(send, scope["path"], ApiError(403, problem))
                return
        await self.app(scope, receive, send)
