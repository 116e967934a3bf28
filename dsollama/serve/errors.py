"""Errors as each client dialect expects them: status code and body.

`ApiError` is what serve's own checks raise (bad JSON, a field of the wrong type, a
missing token, a body too large); `from_exception` maps dsollama's error tree onto the
same shape; `render` writes it in the dialect of the route that failed:

- ``ollama``: ``{"error": "<message>"}``, the daemon's shape (the official client reads
  the ``error`` string into `ollama.ResponseError`);
- ``openai``: ``{"error": {"message", "type", "param", "code"}}``, OpenAI's envelope
  (openai-python raises the status's exception class with ``.body`` = the inner object).

Both carry a top-level ``dsollama`` object with the attempts when the router tried
routes, so a client that only reads the message still gets what was tried in it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from .._exceptions import (
    AllRoutesFailedError,
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    ConfigError,
    DaemonUnreachableError,
    DsollamaError,
    ModelNotFoundError,
    StreamInterruptedError,
    UnsupportedRequestError,
    redact,
)

__all__ = ["CLOSE", "ApiError", "Dialect", "dialect_for", "from_exception", "render"]

log = logging.getLogger("dsollama.serve")

Dialect = Literal["ollama", "openai"]

CLOSE: dict[str, str] = {"connection": "close"}
"""Headers of an answer after which the connection ends: for peers that were refused
(no token, body too large, too slow), whose unread rest must not keep it open."""

# OpenAI's error `type` for a status (what openai-python and its users match on).
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


@dataclass
class ApiError(Exception):
    """An HTTP error answer: status, message (problem and fix), and OpenAI's extras."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    "Goes into the body's ``dsollama`` object (e.g. the attempts)."

    def __str__(self) -> str:
        return self.message

    def body(self, dialect: Dialect) -> dict[str, Any]:
        out: dict[str, Any]
        if dialect == "openai":
            out = {
                "error": {
                    "message": self.message,
                    "type": _OPENAI_TYPES.get(self.status, "api_error"),
                    "param": self.param,
                    "code": self.code,
                }
            }
        else:
            out = {"error": self.message}
        if self.extra:
            out["dsollama"] = self.extra
        return out


def dialect_for(path: str) -> Dialect:
    """The error dialect of a request path: OpenAI's under /v1, Ollama's elsewhere.

    >>> dialect_for("/v1/chat/completions"), dialect_for("/api/chat"), dialect_for("/generate")
    ('openai', 'ollama', 'ollama')
    """
    return "openai" if path == "/v1" or path.startswith("/v1/") else "ollama"


def render(error: ApiError, dialect: Dialect) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and JSON body for an error in a dialect."""
    body = json.dumps(error.body(dialect), ensure_ascii=False).encode()
    headers = {"content-type": "application/json; charset=utf-8", **error.headers}
    return error.status, headers, body


def _attempts(exc: BaseException) -> list[dict[str, Any]]:
    attempts = getattr(exc, "attempts", None) or []
    return [a.model_dump(mode="json", exclude_none=True) for a in attempts]


def _message(exc: DsollamaError) -> str:
    return redact(exc.one_line())


def from_exception(exc: BaseException) -> ApiError:
    """The HTTP answer for an exception raised while serving a request.

    Failures of the request itself keep their 4xx (a bad request is not retried
    anywhere); "no route could answer" is 503 with every attempt, since the
    client may retry later; a deadline that passed is 504.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AllRoutesFailedError):
        extra = {"attempts": _attempts(exc)}
        headers = {"x-dsollama-attempts": str(len(exc.attempts))}
        last = exc.last_error
        tried = [a for a in exc.attempts if a.outcome != "skipped"]
        if isinstance(last, ModelNotFoundError) and all(
            a.error == "ModelNotFoundError" for a in tried
        ):
            # Every route that was tried lacks the model: the client asked for a
            # model that does not exist here, which Ollama clients expect as a 404.
            return ApiError(
                404, _message(exc), code="model_not_found", headers=headers, extra=extra
            )
        if isinstance(last, BadRequestError) and not isinstance(last, UnsupportedRequestError):
            return ApiError(400, _message(exc), headers=headers, extra=extra)
        return ApiError(503, _message(exc), code="all_routes_failed", headers=headers, extra=extra)
    if (
        isinstance(exc, BackendError)
        and exc.attempts
        and not isinstance(exc, (ModelNotFoundError, BadRequestError))
    ):
        # Every route tried failed for this one reason: still "no route could answer",
        # which a client may retry later.
        headers = {"x-dsollama-attempts": str(len(exc.attempts))}
        if isinstance(exc, BusyError) and exc.retry_after is not None:
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
        return ApiError(
            503,
            _message(exc),
            code="all_routes_failed",
            headers=headers,
            extra={"attempts": _attempts(exc)},
        )
    if isinstance(exc, ModelNotFoundError):
        return ApiError(404, _message(exc), code="model_not_found")
    if isinstance(exc, UnsupportedRequestError):
        return ApiError(400, _message(exc), code="unsupported")
    if isinstance(exc, BadRequestError):
        status = exc.status_code if exc.status_code and 400 <= exc.status_code < 500 else 400
        return ApiError(status, _message(exc))
    if isinstance(exc, StreamInterruptedError):
        return ApiError(
            502, _message(exc), code="stream_interrupted", extra={"attempts": _attempts(exc)}
        )
    if isinstance(exc, DaemonUnreachableError):
        return ApiError(502, _message(exc), code="daemon_unreachable")
    if isinstance(exc, BackendTimeoutError):
        return ApiError(504, _message(exc), code="timeout")
    if isinstance(exc, BusyError):
        headers = {}
        if exc.retry_after is not None:
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
        return ApiError(503, _message(exc), code="busy", headers=headers)
    if isinstance(exc, ConfigError):
        # The server's configuration cannot serve this (e.g. hosted-first without a key):
        # nothing the client can change, so 503 rather than a client error.
        return ApiError(503, _message(exc), code="not_configured")
    if isinstance(exc, BackendError):
        return ApiError(502, _message(exc), code="backend_error")
    if isinstance(exc, DsollamaError):
        return ApiError(500, _message(exc))
    log.error("dsollama serve: unexpected error", exc_info=exc)
    return ApiError(
        500,
        f"internal error in dsollama serve: {type(exc).__name__}: {redact(str(exc))} "
        "(the server log has the traceback; please report it)",
    )
