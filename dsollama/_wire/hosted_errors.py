"""Hosted HTTP errors and in-stream error objects → dsollama errors.

`classify_hosted_error` maps an HTTP status and DeepSeek's error envelope to a dsollama
error (server text redacted, a fix named where one is known); `classify_stream_error`
does the same for an ``error`` object that arrives inside a 200 stream;
`parse_retry_after` reads the wait a busy server asks for. Facts cited as "ref §N" are
from the project's DeepSeek API reference.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    BackendError,
    BadRequestError,
    BusyError,
    ContextOverflowError,
    HostedAuthError,
    HostedBalanceError,
    ModelNotFoundError,
    RedirectRefusedError,
    ServerError,
    redact,
)

if TYPE_CHECKING:
    from .._catalogue import Catalogue

_CONCURRENCY_LIMIT = re.compile(r"concurrency limit of (\d+)")

__all__ = [
    "classify_hosted_error",
    "classify_stream_error",
    "is_in_band_error",
    "parse_retry_after",
]


# hosted_response reads counters with this too; it lives here, the lower layer, so
# the two modules do not import each other.
def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_retry_after(
    headers: Mapping[str, str], *, now: dt.datetime | None = None
) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``.

    DeepSeek sends neither (ref §3.1) but OpenAI-format servers in front of it may. An
    HTTP date needs ``now`` (this module reads no clock); without it the date is ignored.

    >>> parse_retry_after({"Retry-After": "7"})
    7.0
    >>> parse_retry_after({"retry-after-ms": "1500"})
    1.5
    >>> now = dt.datetime(2026, 11, 2, 12, 0, 0, tzinfo=dt.timezone.utc)
    >>> parse_retry_after({"retry-after": "Mon, 02 Nov 2026 12:00:30 GMT"}, now=now)
    30.0
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(value, 0.0)
    raw = lowered.get("retry-after")
    if raw is None or not raw.strip():
        return None
    try:
        seconds = float(raw.strip())
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    if now is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def _error_message(body: bytes | str | Mapping[str, Any]) -> str:
    if isinstance(body, Mapping):
        data: Any = body
        text = json.dumps(body, ensure_ascii=False)
    else:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            message = error.get("message") or error.get("type") or error.get("code")
            if message:
                return str(message)
        if isinstance(error, str) and error:
            return error  # Ollama-style {"error": "..."} from an OpenAI-compatible proxy
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])
    snippet = " ".join(text.split())[:300]
    return snippet or "(empty body)"


def _model_not_exist_hint(hosted_model: str | None, catalogue: Catalogue | None) -> tuple[str, str]:
    if catalogue is None:
        from .._catalogue import load_catalogue

        catalogue = load_catalogue()
    retired = catalogue.retired_hosted
    current = sorted(name for name, m in catalogue.hosted.items() if m.alias_of is None)
    name = repr(hosted_model) if hosted_model else "the configured hosted model"
    why = f"; {retired[hosted_model]}" if hosted_model and hosted_model in retired else ""
    message = (
        f"the hosted API does not know {name} (Model Not Exist): the name is wrong or retired{why}"
    )
    hint = f"set hosted_model (or update hosted_model_map) to a current model, e.g. {', '.join(current)}"
    if retired:
        hint += f"; retired names: {', '.join(sorted(retired))}"
    return message, hint


def _shown_location(location: str, secrets: Sequence[str]) -> str:
    """A redirect target fit for a message: scheme, host and path only, bounded."""
    from urllib.parse import urlsplit

    try:
        split = urlsplit(location.strip())
        host = (split.hostname or "") + (f":{split.port}" if split.port else "")
    except ValueError:
        return "an unparsable address"
    shown = f"{split.scheme}://{host}{split.path}" if split.scheme else split.path
    shown = "".join(ch for ch in shown if ch.isprintable())[:200]
    return redact(shown, secrets)


# How OpenAI-format servers say a prompt is too long (reference: openai-servers.md):
# OpenAI's code, vLLM's message, llama-server's error type (a 500 in builds of 2025-09).
_CONTEXT_CODES = ("context_length_exceeded", "exceed_context_size_error")
_CONTEXT_TEXTS = ("maximum context length", "exceeds the available context size")


def _is_context_overflow(status: int, lowered: str, body: bytes | str | Mapping[str, Any]) -> bool:
    if status not in (400, 413, 422, 500):
        return False
    if any(text in lowered for text in _CONTEXT_TEXTS):
        return True
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    raw_text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return any(code in raw_text for code in _CONTEXT_CODES)


def classify_hosted_error(
    status: int,
    body: bytes | str | Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    *,
    route: str | None = None,
    hosted_model: str | None = None,
    now: dt.datetime | None = None,
    secrets: Sequence[str] = (),
    catalogue: Catalogue | None = None,
) -> BackendError:
    """The dsollama error for a hosted HTTP error (status, body, headers).

    Branches on the status first and on message text only where DeepSeek's statuses are
    ambiguous (ref §3.1: ``type``/``code`` are not informative). Server text goes
    through `redact` (401 bodies echo the key's last characters, ref §1.2);
    ``secrets`` are removed too. ``now`` is needed only for a date ``Retry-After``.
    """
    headers = headers or {}
    if 300 <= status < 400:
        location = next((v for k, v in headers.items() if k.lower() == "location"), "")
        return RedirectRefusedError(status, _shown_location(location, secrets), route=route)
    detail = redact(_error_message(body), secrets)
    message = f"hosted API answered {status}: {detail}"
    lowered = detail.lower()
    error: BackendError
    if _is_context_overflow(status, lowered, body):
        return ContextOverflowError(
            f"the prompt does not fit the context window of {hosted_model or 'the model'} "
            f"on {route or 'the route'}: {detail}",
            route=route,
            model=hosted_model,
        )
    if status == 404 and "model" in lowered and ("not exist" in lowered or "not found" in lowered):
        # vLLM and llama-server: the route does not serve this model (another may).
        missing = ModelNotFoundError(hosted_model or "", route=route, message=message)
        missing.hint = "check the route's models and model_map (`dsollama routes` lists them)"
        return missing
    if status in (400, 422):
        if "model not exist" in lowered:
            text, hint = _model_not_exist_hint(hosted_model, catalogue)
            error = BadRequestError(text, route=route, status_code=status, hint=hint)
        elif "reasoning_content" in lowered:
            error = BadRequestError(
                message,
                route=route,
                status_code=status,
                hint="in thinking mode every assistant tool-call turn must carry its reasoning; "
                "keep message.thinking on those turns",
            )
        else:
            error = BadRequestError(message, route=route, status_code=status)
    elif status == 401:
        error = HostedAuthError(message, route=route)
    elif status == 403:
        error = HostedAuthError(message, route=route)
        error.status_code = 403
    elif status == 402:
        error = HostedBalanceError(message, route=route)
    elif status == 404:
        error = BadRequestError(
            message,
            route=route,
            status_code=status,
            hint="check hosted_base_url (the API root, e.g. https://api.deepseek.com) and hosted_model",
        )
    elif status in (429, 503, 529):
        error = BusyError(
            message,
            route=route,
            status_code=status,
            retry_after=parse_retry_after(headers, now=now),
        )
        limit = _CONCURRENCY_LIMIT.search(detail)
        if limit is not None:
            # "... exceeds your concurrency limit of 39 ..." (ref §3.2): the router keeps
            # its hosted requests below it instead of provoking more 429s.
            error.concurrency_limit = int(limit.group(1))
        if "balance" in lowered:
            # 429 whose limit shrinks with the remaining balance (ref §3.2).
            error.hint = (
                "top up the account: its concurrency limit scales with the remaining balance"
            )
    elif status == 408 or status >= 500:
        error = ServerError(message, route=route, status_code=status)
    elif 400 <= status < 500:
        error = BadRequestError(message, route=route, status_code=status)
    else:
        error = ServerError(
            f"hosted API answered an unexpected status {status}: {detail}",
            route=route,
            status_code=status,
        )
    return error


def is_in_band_error(payload: Mapping[str, Any]) -> bool:
    """True when a JSON object inside a 200 answer is an error, not a piece of the answer.

    An ``error`` member of any value (the OpenAI envelope, vLLM's and llama-server's
    in-stream errors, an Ollama-style string) or vLLM's older bare error object.

    >>> is_in_band_error({"error": {"message": "Server Overloaded", "code": 503}})
    True
    >>> is_in_band_error({"object": "error", "message": "boom", "code": 500})
    True
    >>> is_in_band_error({"choices": [], "error": None})
    False
    """
    return payload.get("error") is not None or payload.get("object") == "error"


# Error kinds (``type`` or a textual ``code``) that mean "busy, try later" whatever the
# server: OpenAI's and proxies' rate limits, Anthropic-style overload, Google-style quota.
_BUSY_KINDS = ("overload", "rate_limit", "too_many_requests", "resource_exhausted")


def _status_of(error: Mapping[str, Any]) -> int | None:
    # vLLM and llama-server put the HTTP status in "code"; some proxies in "status".
    for key in ("code", "status"):
        value = error.get(key)
        status = _int(value)
        if status is None and isinstance(value, str) and value.isdigit():
            status = int(value)
        if status is not None and 400 <= status <= 599:
            return status
    return None


def classify_stream_error(
    payload: Mapping[str, Any],
    *,
    route: str | None = None,
    partial_text: str = "",
    secrets: Sequence[str] = (),
) -> BackendError:
    """The error for an in-band error object inside a 200 response (`is_in_band_error`).

    The format is undocumented for DeepSeek (ref §2.5). An HTTP status in ``code`` or
    ``status`` (as vLLM, llama-server and proxies send) is classified like that status,
    so a 429 or 503 is a `BusyError`; a busy kind (rate limit, overload) is a
    `BusyError` too; anything else is a `ServerError`. Never skipped: an error in the
    middle of an answer means the rest of it is missing.

    >>> type(classify_stream_error({"error": {"message": "slow down", "code": 429}})).__name__
    'BusyError'
    >>> type(classify_stream_error({"error": {"message": "x", "code": "rate_limit_exceeded"}})).__name__
    'BusyError'
    >>> classify_stream_error({"error": "runner died"}, partial_text="Hel").message
    'hosted stream carried an error after 3 characters of answer: runner died'
    """
    error: Any = payload.get("error")
    if error is None and payload.get("object") == "error":
        error, payload = payload, {"error": payload}  # vLLM's older bare error object
    status = _status_of(error) if isinstance(error, Mapping) else None
    if status is not None:
        classified = classify_hosted_error(status, payload, {}, route=route, secrets=secrets)
        classified.message = classified.message.replace(
            "hosted API answered", "hosted stream carried error", 1
        )
        return classified
    detail = redact(_error_message(payload), secrets)
    kinds = (
        " ".join(str(error.get(key) or "") for key in ("type", "code")).lower()
        if isinstance(error, Mapping)
        else ""
    )
    if any(kind in kinds for kind in _BUSY_KINDS):
        return BusyError(f"hosted stream carried an error: {detail}", route=route)
    suffix = f" after {len(partial_text)} characters of answer" if partial_text else ""
    return ServerError(f"hosted stream carried an error{suffix}: {detail}", route=route)
