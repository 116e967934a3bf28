"""Who may provision through serve: pull, create, copy, delete and push models, upload blobs.

These routes are relayed to the daemon (`passthrough`), so whoever may call them can
delete every model on it or fill its disk. Three modes:

- ``open``: anyone who may use the server (the default while it listens on loopback only:
  the people who can reach it could run ``ollama rm`` themselves);
- ``token``: only requests with ``Authorization: Bearer <admin token>`` (a second token,
  so the one given to chat clients cannot delete models);
- ``off``: refused with 403 (the default whenever serve listens beyond this machine).

>>> admin_policy(allow_admin=None, admin_token=None, host="127.0.0.1").mode
'open'
>>> admin_policy(allow_admin=None, admin_token=None, host="0.0.0.0").mode
'off'
>>> admin_policy(allow_admin=True, admin_token=None, host="0.0.0.0").mode
'open'
>>> admin_policy(allow_admin=None, admin_token="t0p", host="0.0.0.0").mode
'token'
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Literal

from .errors import ApiError
from .security import Refusal, is_loopback_host

__all__ = ["ADMIN_PATHS", "AdminPolicy", "admin_policy", "is_admin_path"]

ADMIN_PATHS = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})
_BLOBS = "/api/blobs/"
_WHAT = "pull, create, copy, delete and push"


def is_admin_path(path: str) -> bool:
    """Does a request path change the daemon's models (or upload their files)?"""
    return path in ADMIN_PATHS or path.startswith(_BLOBS)


@dataclass(frozen=True)
class AdminPolicy:
    mode: Literal["open", "token", "off"]
    token: str | None = field(default=None, repr=False)

    def refusal(self, path: str, method: str, authorization: bytes | None) -> Refusal | None:
        """Why a request may not use a provisioning route (None: it may, or it is no such
        route). Refused peers passed the server's own checks: their connection goes on."""
        if self.mode == "open" or method == "OPTIONS" or not is_admin_path(path):
            return None
        if self.mode == "off":
            return Refusal(
                ApiError(
                    403,
                    f"provisioning through dsollama serve is off ({_WHAT}): this server "
                    "listens beyond this machine; start it with --allow-admin or "
                    "--admin-token, or provision on the daemon's machine (dsollama pull)",
                    code="admin_disabled",
                ),
                close=False,
            )
        given = authorization or b""
        expected = f"Bearer {self.token}".encode()
        if hmac.compare_digest(given, expected):
            return None
        status = 401 if not given else 403
        return Refusal(
            ApiError(
                status,
                f"{_WHAT} need the admin token: send 'Authorization: Bearer <admin token>' "
                "(the --admin-token or DSOLLAMA_SERVE_ADMIN_TOKEN this server was started with)",
                code="admin_token_required",
            ),
            www_authenticate=status == 401,
            close=False,
        )

    def describe(self) -> str:
        """One line for the startup banner."""
        if self.mode == "token":
            return f"{_WHAT} need the admin token"
        if self.mode == "open":
            return f"{_WHAT} allowed to every client of this server"
        return (
            f"off: {_WHAT} are refused (this server listens beyond this machine; "
            "enable with --allow-admin or --admin-token)"
        )


def admin_policy(*, allow_admin: bool | None, admin_token: str | None, host: str) -> AdminPolicy:
    """The mode for these settings: an admin token wins; else ``allow_admin``; else the host."""
    if admin_token:
        return AdminPolicy("token", admin_token)
    if allow_admin is None:
        allow_admin = is_loopback_host(host)
    return AdminPolicy("open" if allow_admin else "off")
