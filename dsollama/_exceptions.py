"""Every error dsollama raises, in one tree.

No `httpx` or `ollama` exception escapes the public API: backends translate them into
these classes (keeping the original as ``__cause__``). Each error carries a message that
names the problem and, where there is one, a ``hint`` that names the fix; the CLI prints
both on one line.

```
DsollamaError
├── ConfigError                 a setting is missing or wrong
│   ├── MissingAPIKeyError      no hosted key (names the variable to set)
│   └── InsecureEndpointError   the key would travel over plain HTTP off this machine
├── ModelfileError              a Modelfile does not parse (.path, .line, .column)
├── UnknownModelError           not in the catalogue (.suggestions)
├── ProvisionError              pull / create / delete failed
│   ├── PullError
│   ├── CreateError
│   └── DaemonTooOldError       the daemon predates the structured create API (0.5.5)
├── BackendError                one route failed (.route, .status_code)
│   ├── DaemonUnreachableError  connection refused (.host; says how to start Ollama)
│   ├── ModelNotFoundError      404 from the daemon (hint: dsollama pull)
│   ├── BadRequestError         400/422: the request itself is wrong; never retried
│   │   └── ContextOverflowError  the prompt does not fit the local context (go hosted)
│   ├── HostedAuthError         401: the key was refused
│   ├── HostedBalanceError      402: the account is out of credit
│   ├── BusyError               503 / 429 (.retry_after)
│   ├── ServerError             500-class, in-band error lines, malformed answers
│   │   ├── InsufficientResourceError  hosted ran out of resources mid-answer
│   │   └── IncompleteResponseError    the answer ended without its terminator (.partial_text)
│   ├── BackendTimeoutError     a deadline passed (.phase: connect/first_token/gap/total)
│   ├── UnsupportedRequestError the route cannot serve this request (images hosted, …)
│   └── RedirectRefusedError    the endpoint redirected; the key is never sent on
├── AllRoutesFailedError        every route was tried (.attempts says what and why)
└── StreamInterruptedError      a stream broke after text reached the caller (.partial_text)
```

Catch `DsollamaError` to handle everything; catch `AllRoutesFailedError` to handle "no
route could answer"; catch `StreamInterruptedError` to keep a partial streamed answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._types import Attempt

__all__ = [
    "AllRoutesFailedError",
    "BackendError",
    "BackendTimeoutError",
    "BadRequestError",
    "BusyError",
    "ConfigError",
    "ContextOverflowError",
    "CreateError",
    "DaemonTooOldError",
    "DaemonUnreachableError",
    "DsollamaError",
    "HostedAuthError",
    "HostedBalanceError",
    "IncompleteResponseError",
    "InsecureEndpointError",
    "InsufficientResourceError",
    "MissingAPIKeyError",
    "ModelNotFoundError",
    "ModelfileError",
    "ProvisionError",
    "PullError",
    "RedirectRefusedError",
    "ServerError",
    "StreamInterruptedError",
    "UnknownModelError",
    "UnsupportedRequestError",
    "redact",
]

# DeepSeek echoes the last four characters of a refused key ("****abcd"); even a suffix
# of a secret does not belong in our messages or logs.
_MASKED_KEY = re.compile(r"\*{2,}[A-Za-z0-9_\-]{1,8}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]+")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
# Credentials in URLs (OLLAMA_HOST may carry user:password@), key-like query
# parameters, and Authorization header values.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@:]*:[^/\s@]*@")
_QUERY_SECRET = re.compile(r"(?i)([?&](?:api[_-]?key|access[_-]?token|key|token)=)[^&\s#\"']+")
_AUTH_HEADER = re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:basic\s+)?[^\s\"',}]+")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove API keys, key fragments and credentials from text meant for people or logs.

    The one redactor: every error message, log line and log row that holds text from a
    server, a URL or a caller passes through it.

    >>> redact("Authentication Fails, Your api key: ****abcd is invalid")
    'Authentication Fails, Your api key: **** is invalid'
    >>> redact("sent Bearer sk-live-123456789")
    'sent Bearer ****'
    >>> redact("key sk-abcdefgh1234 leaked")
    'key **** leaked'
    >>> redact("my secret is hunter2-xyz", ["hunter2-xyz"])
    'my secret is ****'
    >>> redact("GET http://bob:pw@host:11434/api/chat?key=abc123&x=1")
    'GET http://****@host:11434/api/chat?key=****&x=1'
    >>> redact("Authorization: Basic dXNlcjpwYXNz")
    'Authorization: ****'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    text = _BEARER.sub(r"\1****", text)
    text = _SK_KEY.sub("****", text)
    text = _MASKED_KEY.sub("****", text)
    # The rest only when a cheap substring test says they could match: long prompts pass
    # through here on their way to the log.
    if "@" in text and "://" in text:
        text = _URL_USERINFO.sub(r"\1****@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1****", text)
    if "uthorization" in text or "UTHORIZATION" in text:
        text = _AUTH_HEADER.sub(r"\1****", text)
    return text


class DsollamaError(Exception):
    """Base of every dsollama error. ``hint`` says how to fix it, when we know."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and its fix on one line, as the CLI prints it."""
        text = self.message.rstrip(".")
        return f"{text} — {self.hint}" if self.hint else text


class ConfigError(DsollamaError):
    """A setting is missing, malformed or unsafe."""


class MissingAPIKeyError(ConfigError):
    """The hosted route needs a key and none is configured."""

    def __init__(self, variable: str = "DEEPSEEK_API_KEY") -> None:
        super().__init__(
            "no API key for the hosted route",
            hint=f"set {variable} (or hosted_api_key in the config file), or use --local-only",
        )
        self.variable = variable


class InsecureEndpointError(ConfigError):
    """The API key would be sent over plain HTTP to a host that is not this machine."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"refusing to send the API key over plain HTTP to {url}",
            hint="use an https:// base URL (plain http is allowed only for loopback addresses)",
        )
        self.url = url


class ModelfileError(DsollamaError):
    """A Modelfile could not be parsed; names the file, line and column."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = path or "<modelfile>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {problem}", hint=hint)
        self.problem = problem
        self.path = path
        self.line = line
        self.column = column


class UnknownModelError(DsollamaError):
    """A model name that neither the catalogue nor the daemon knows."""

    def __init__(self, model: str, suggestions: Sequence[str] = ()) -> None:
        hint = (
            "did you mean " + ", ".join(suggestions) + "? (dsollama models lists them all)"
            if suggestions
            else "run `dsollama models` to see the DeepSeek models dsollama knows"
        )
        super().__init__(f"unknown model {model!r}", hint=hint)
        self.model = model
        self.suggestions = list(suggestions)


class ProvisionError(DsollamaError):
    """Pulling, creating or deleting a model failed."""

    def __init__(self, message: str, *, model: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.model = model


class PullError(ProvisionError):
    """A pull failed; rerunning resumes, because the daemon keeps partial downloads."""


class CreateError(ProvisionError):
    """Creating a model from a Modelfile failed."""


class DaemonTooOldError(ProvisionError):
    """The daemon is older than 0.5.5 and has no structured create API."""

    def __init__(self, version: str, host: str) -> None:
        super().__init__(
            f"the Ollama daemon at {host} is version {version}; dsollama needs 0.5.5 or newer",
            hint="upgrade Ollama (https://ollama.com/download) and restart the daemon",
        )
        self.version = version
        self.host = host


class BackendError(DsollamaError):
    """One route (a local daemon or a hosted endpoint) failed to answer.

    Raised from a call when every route tried failed for this one reason; ``attempts``
    then lists what was tried (see `AllRoutesFailedError` for mixed reasons).
    """

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        status_code: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.route = route
        self.status_code = status_code
        self.attempts: list[Attempt] = []


class DaemonUnreachableError(BackendError):
    """Nothing answers at the Ollama host."""

    def __init__(self, host: str, *, route: str | None = None, detail: str = "") -> None:
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot reach the Ollama daemon at {host}{suffix}",
            route=route,
            hint=(
                "start it with `ollama serve` (or open the Ollama app), "
                "or point OLLAMA_HOST at the right address"
            ),
        )
        self.host = host


class ModelNotFoundError(BackendError):
    """The daemon does not have the model."""

    def __init__(self, model: str, *, route: str | None = None, message: str | None = None):
        super().__init__(
            message or f"model {model!r} not found",
            route=route,
            status_code=404,
            hint=f"run `dsollama pull {model}`",
        )
        self.model = model


class BadRequestError(BackendError):
    """The server rejected the request itself (400/422); retrying cannot help."""


class ContextOverflowError(BadRequestError):
    """The prompt does not fit the local model's context window (Ollama's 400).

    A bad request for *this* route only: a route with a larger window (the hosted
    models take 1M tokens) can serve it, so the router may move on instead of
    raising. deepseek2-family models hit this instead of shifting context
    (reference: Ollama API §8).
    """

    def __init__(self, message: str, *, route: str | None = None, model: str | None = None) -> None:
        super().__init__(
            message,
            route=route,
            status_code=400,
            hint="shorten the prompt, raise options num_ctx, or let the call fall back to the hosted route",
        )
        self.model = model


class HostedAuthError(BackendError):
    """The hosted API refused the key (401)."""

    def __init__(
        self, message: str, *, route: str | None = None, variable: str = "DEEPSEEK_API_KEY"
    ):
        super().__init__(
            message,
            route=route,
            status_code=401,
            hint=f"check {variable}; create a key at https://platform.deepseek.com/api_keys",
        )


class HostedBalanceError(BackendError):
    """The hosted account is out of credit (402)."""

    def __init__(self, message: str, *, route: str | None = None):
        super().__init__(
            message,
            route=route,
            status_code=402,
            hint="top up the account at https://platform.deepseek.com/top_up",
        )


class BusyError(BackendError):
    """The server said it is busy (503, 429); worth retrying later or elsewhere."""

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        concurrency_limit: int | None = None,
    ) -> None:
        super().__init__(message, route=route, status_code=status_code)
        self.retry_after = retry_after
        self.concurrency_limit = concurrency_limit
        "The server's concurrency limit, when the message states it (DeepSeek's 429 does)."


class ServerError(BackendError):
    """The server failed (500-class status, or an error line inside a stream)."""


class InsufficientResourceError(ServerError):
    """``finish_reason: insufficient_system_resource``: the hosted server ran out of
    resources mid-answer (ref §2.4). Transient; never a success. Carries what arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        route: str | None = None,
        partial_text: str = "",
        partial_thinking: str = "",
    ) -> None:
        super().__init__(
            message, route=route, hint="retry later or let the call fall back to the local model"
        )
        self.partial_text = partial_text
        self.partial_thinking = partial_thinking


class BackendTimeoutError(BackendError):
    """A deadline passed: ``phase`` is connect, first_token, gap or total."""

    def __init__(self, message: str, *, phase: str, route: str | None = None, seconds: float = 0.0):
        super().__init__(message, route=route)
        self.phase = phase
        self.seconds = seconds


class IncompleteResponseError(ServerError):
    """The answer ended without its terminator (no done, no [DONE], only filler), or the
    connection broke before it did."""

    def __init__(self, message: str, *, route: str | None = None, partial_text: str = ""):
        super().__init__(message, route=route)
        self.partial_text = partial_text


class UnsupportedRequestError(BackendError):
    """This route cannot serve this request (for example images on the hosted route)."""


class RedirectRefusedError(BackendError):
    """The endpoint answered with a redirect. dsollama never follows one with a key
    attached (it could lead to another origin, or to plain HTTP)."""

    def __init__(self, status: int, location: str, *, route: str | None = None) -> None:
        super().__init__(
            f"the endpoint redirected ({status}) to {location or 'nowhere'}; "
            "dsollama does not follow redirects with an API key",
            route=route,
            status_code=status,
            hint="set the route's base URL to where it redirects, if you trust that address",
        )
        self.location = location


class AllRoutesFailedError(DsollamaError):
    """No route could answer, for different reasons (or none could be tried);
    ``attempts`` lists what was tried, in order, and why each failed."""

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Attempt] = (),
        hint: str | None = None,
        last_error: BaseException | None = None,
    ) -> None:
        tried = "; ".join(a.brief() for a in attempts)
        full = f"{message} (tried: {tried})" if tried else message
        super().__init__(full, hint=hint)
        self.attempts = list(attempts)
        self.last_error = last_error


class StreamInterruptedError(DsollamaError):
    """A stream failed after part of the answer reached the caller.

    ``partial_text`` and ``partial_thinking`` hold what was delivered; the answer is
    not complete and must not be treated as if it were.
    """

    def __init__(
        self,
        message: str,
        *,
        partial_text: str = "",
        partial_thinking: str = "",
        attempts: Sequence[Attempt] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.partial_text = partial_text
        self.partial_thinking = partial_thinking
        self.attempts = list(attempts)


def error_fields(exc: BaseException) -> dict[str, Any]:
    """A JSON-able description of an error, for logs and serve's headers."""
    out: dict[str, Any] = {"class": type(exc).__name__, "message": redact(str(exc))}
    status = getattr(exc, "status_code", None)
    if status is not None:
        out["status_code"] = status
    return out
