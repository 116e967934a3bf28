"""Which route served, what was tried and why: as response headers and as body fields.

Headers reach every client that can show them (curl, browsers, openai-python's
``with_raw_response``); the body fields reach clients that drop headers but keep unknown
JSON fields (openai-python's ``model_extra``, any JSON consumer). The official clients
ignore both, so neither changes what they see.

Streams send their headers with the first chunk, when the serving route is known but the
call is not over: a stream can still break and be continued elsewhere. So the attempts,
the fallback reason and the cost of a stream are in its final chunk, not its headers.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from .._types import ServedBy

__all__ = [
    "HEADER_ATTEMPTS",
    "HEADER_ATTEMPTS_DETAIL",
    "HEADER_COST",
    "HEADER_FALLBACK_REASON",
    "HEADER_KIND",
    "HEADER_LOCAL_ERROR",
    "HEADER_MODEL",
    "HEADER_ROUTE",
    "HEADER_VERSION",
    "call_extras",
    "dsollama_version",
    "final_headers",
    "header_value",
    "served_headers",
]

HEADER_ROUTE = "x-dsollama-route"
HEADER_KIND = "x-dsollama-kind"
HEADER_MODEL = "x-dsollama-model"
HEADER_FALLBACK_REASON = "x-dsollama-fallback-reason"
HEADER_ATTEMPTS = "x-dsollama-attempts"
HEADER_ATTEMPTS_DETAIL = "x-dsollama-attempts-detail"
HEADER_COST = "x-dsollama-cost-usd"
HEADER_VERSION = "x-dsollama-version"
HEADER_LOCAL_ERROR = "x-dsollama-local-error"
"On a model list served without the daemon (it is down, hosted can answer): why."

EXPOSED_HEADERS = (
    HEADER_ROUTE,
    HEADER_KIND,
    HEADER_MODEL,
    HEADER_FALLBACK_REASON,
    HEADER_ATTEMPTS,
    HEADER_ATTEMPTS_DETAIL,
    HEADER_COST,
    HEADER_VERSION,
    HEADER_LOCAL_ERROR,
)
"Headers a browser page may read (CORS ``Access-Control-Expose-Headers``)."

# Most servers and proxies accept 8 KiB of headers in total; stay well inside.
_DETAIL_LIMIT = 2048

_EXTRA_FIELDS = (
    "served_by",
    "attempts",
    "fallback_reason",
    "seams",
    "usage",
    "cost_usd",
    "ignored",
)


@functools.cache
def dsollama_version() -> str:
    """The installed version, read once (package metadata costs a file read per lookup)."""
    from .._version import version

    return version()


def header_value(text: str, limit: int = 512) -> str:
    """Text made safe for an HTTP header: ASCII, no control characters, bounded.

    >>> header_value("local busy → hosted\\r\\nX-Evil: 1")
    'local busy \\\\u2192 hosted  X-Evil: 1'
    """
    if text.isascii() and text.isprintable():  # the usual value: nothing to replace
        return text[:limit]
    ascii_text = text.encode("ascii", "backslashreplace").decode("ascii")
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in ascii_text)
    return cleaned[:limit]


def served_headers(served: ServedBy | None) -> dict[str, str]:
    """The headers known as soon as a route produced its first token."""
    if served is None:
        return {}
    return {
        HEADER_ROUTE: header_value(served.route),
        HEADER_KIND: served.kind,
        HEADER_MODEL: header_value(served.model),
    }


def final_headers(response: Any) -> dict[str, str]:
    """Headers for a finished (non-streamed) answer: served, attempts, reason, cost."""
    headers = served_headers(getattr(response, "served_by", None))
    attempts = getattr(response, "attempts", None) or []
    headers[HEADER_ATTEMPTS] = str(len(attempts))
    if attempts:
        detail = [
            {
                k: v
                for k, v in (
                    ("route", a.route),
                    ("model", a.model),
                    ("outcome", a.outcome),
                    ("error", a.error),
                    ("status", a.status_code),
                    ("ms", round(a.duration_s * 1000, 1)),
                )
                if v is not None
            }
            for a in attempts
        ]
        text = json.dumps(detail, separators=(",", ":"))
        if len(text) <= _DETAIL_LIMIT:
            headers[HEADER_ATTEMPTS_DETAIL] = text
    reason = getattr(response, "fallback_reason", None)
    if reason:
        headers[HEADER_FALLBACK_REASON] = header_value(reason)
    cost = getattr(response, "cost_usd", None)
    if cost is not None:
        headers[HEADER_COST] = f"{cost:.8f}".rstrip("0").rstrip(".") or "0"
    return headers


def call_extras(response: Any) -> dict[str, Any]:
    """dsollama's fields of a response (served_by, attempts, …) as JSON-ready data."""
    out: dict[str, Any] = {}
    for name in _EXTRA_FIELDS:
        value = getattr(response, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            out[name] = [
                v.model_dump(mode="json", exclude_none=True) if hasattr(v, "model_dump") else v
                for v in value
            ]
        elif hasattr(value, "model_dump"):
            out[name] = value.model_dump(mode="json", exclude_none=True)
        else:
            out[name] = value
    return out
