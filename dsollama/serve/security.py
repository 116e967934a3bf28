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
from dataclasses import dataclass
from typing import Any

from .._exceptions import ConfigError
from .errors import CLOSE, ApiError, dialect_for, render

__all__ = [
    "Guard",
    "Refusal",
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


@dataclass(frozen=True)
class Refusal:
    """Why a request is answered without reaching its route, and how."""

    error: ApiError
    www_authenticate: bool = False
    close: bool = True
    "End the connection after the answer (the peer may not use it for anything else)."


_CACHE_LIMIT = 256
"Distinct Host and Origin values remembered; a peer sending endless new ones only clears it."


class Guard:
    """Who may ask: with tokens, ``Bearer <token>``; without, only local Host and Origin.

    ``tokens``: each accepted (serve's token, and the admin token when there is one);
    none means the loopback rules (``origins``: browser origins allowed besides local
    pages). `refusal` decides from the few headers the front door read once.
    """

    def __init__(self, tokens: Sequence[str] = (), origins: Sequence[str] = ()) -> None:
        self._expected = [f"Bearer {t}".encode() for t in tokens if t]
        self._machine = _machine_names()
        self._origin = re.compile(origin_pattern(origins))
        # The same few Host and Origin values arrive on every request: decide each once.
        self._hosts: dict[bytes, bool] = {}
        self._origins: dict[bytes, bool] = {}

    def refusal(
        self,
        path: str,
        method: str,
        host: bytes | None,
        origin: bytes | None,
        authorization: bytes | None,
    ) -> Refusal | None:
        if self._expected:
            return self._token_refusal(path, method, authorization or b"")
        return self._local_refusal(host or b"", origin)

    def _token_refusal(self, path: str, method: str, given: bytes) -> Refusal | None:
        if path in OPEN_PATHS or method == "OPTIONS":
            return None
        # compare_digest: the time taken must not tell an attacker how much of a guess
        # matched. Every token is compared, so the time does not say which one matched.
        matches = [hmac.compare_digest(given, expected) for expected in self._expected]
        if any(matches):
            return None
        message = (
            "missing bearer token: send 'Authorization: Bearer <token>' (the token this "
            "server was started with; in OpenAI clients it is the API key)"
            if not given
            else "wrong bearer token: send the token this server was started with"
        )
        return Refusal(ApiError(401, message, code="invalid_api_key"), www_authenticate=True)

    def _local_refusal(self, host: bytes, origin: bytes | None) -> Refusal | None:
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed = host_allowed(host.decode("latin-1"), self._machine)
            _remember(self._hosts, host, allowed)
        if not allowed:
            problem = (
                f"Host {host.decode('latin-1')!r} is not a local name; this server only "
                "answers requests addressed to this machine (start it with --token to serve "
                "other names)"
            )
            return Refusal(ApiError(403, problem))
        if origin is None:
            return None
        allowed = self._origins.get(origin)
        if allowed is None:
            allowed = self._origin.fullmatch(origin.decode("latin-1")) is not None
            _remember(self._origins, origin, allowed)
        if allowed:
            return None
        problem = (
            f"Origin {origin.decode('latin-1')!r} may not use this server; allow it with "
            "--cors-origin, or start the server with --token"
        )
        return Refusal(ApiError(403, problem))


def _remember(cache: dict[bytes, bool], key: bytes, value: bool) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
