"""The routing table: what to do after each outcome, as one pure function.

Every failure a route can produce is classified here — and only here — into an
`Action`: try the same route again (after a backoff), move to the next route, or raise.
It also says what the failure means for the route's breaker. Keeping the whole table in
one function makes it reviewable and testable without any I/O.

| failure                                   | action              | breaker          |
|-------------------------------------------|---------------------|------------------|
| daemon unreachable (refused, DNS)         | next route at once  | open now         |
| connect timeout                           | next route          | failure          |
| first-token budget passed                 | next route          | neutral (slow ≠ broken) |
| gap (stall) / total deadline              | retry, then next    | failure          |
| 503 / 429 busy                            | retry, then next    | failure          |
| 429 stating the account's concurrency limit | retry at the gate | neutral          |
| 500-class, error line, malformed line     | retry, then next    | failure          |
| truncated stream / filler-only body       | retry, then next    | failure          |
| hosted `insufficient_system_resource`     | retry, then next    | failure          |
| 404 model not found (any route)           | next (hint: pull)   | neutral          |
| route cannot serve this request           | next                | neutral          |
| prompt longer than the route's context    | next (any dialect)  | neutral          |
| 401 key refused                           | next                | disable (session)|
| 402 out of credit                         | next                | disable (long)   |
| 3xx redirect (never followed with a key)  | next, loudly        | open now         |
| hosted model name wrong or retired        | next, loudly        | neutral          |
| other 400 / 422: the request is invalid   | raise               | neutral          |
| anything else (a bug)                     | raise               | neutral          |
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from .._exceptions import (
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    ContextOverflowError,
    DaemonUnreachableError,
    HostedAuthError,
    HostedBalanceError,
    IncompleteResponseError,
    ModelNotFoundError,
    RedirectRefusedError,
    ServerError,
    UnsupportedRequestError,
)

__all__ = ["Action", "BreakerEffect", "Decision", "classify"]


class Action(enum.Enum):
    RETRY = "retry"
    "Try the same route again after a backoff (if attempts and the retry budget allow)."
    NEXT = "next"
    "Give up on this route for this call; try the next one."
    RAISE = "raise"
    "Stop: the error is about the request itself (or unknown); no route will do better."


class BreakerEffect(enum.Enum):
    NEUTRAL = "neutral"
    FAILURE = "failure"
    "Counts towards opening the route's breaker."
    OPEN = "open"
    "Open the breaker at once (a dead daemon: the next calls should not pay to find out)."
    DISABLE_SESSION = "disable-session"
    "Keep the route off until the process restarts or the key changes (401)."
    DISABLE_LONG = "disable-long"
    "Keep the route off for a long cooldown (402: topping up takes a while)."


@dataclass(frozen=True)
class Decision:
    action: Action
    breaker: BreakerEffect
    reason: str
    "Short, human reason, used as the fallback reason when the call moves on."
    retry_after: float | None = None
    "Server-requested wait before retrying, when the server gave one."
    loud: bool = False
    "Worth a WARNING log line (configuration problems)."
    scope: Literal["route", "model"] = "model"
    "Whose breaker the failure counts against: the route's (it cannot be reached, the key is refused) or the model's on it."


def _is_context_overflow(error: BackendError) -> bool:
    # Ollama's text when a prompt exceeds the context and cannot be shifted (reference §4.2);
    # the text check covers errors classified before the type existed.
    return (
        isinstance(error, ContextOverflowError) or "longer than the context length" in error.message
    )


def _is_capability_gap(error: BackendError) -> bool:
    # "... does not support tools/thinking/insert/vision": this route cannot serve the
    # request as asked, another route (with other capabilities) may.
    return "does not support" in error.message


def _is_hosted_model_name_error(error: BackendError) -> bool:
    return "model not exist" in error.message.lower()


def classify(error: BaseException, *, kind: str) -> Decision:
    """Decide what an error on a route of ``kind`` ('local' or 'hosted') means."""
    if isinstance(error, DaemonUnreachableError):
        return Decision(Action.NEXT, BreakerEffect.OPEN, "local daemon unreachable", scope="route")
    if isinstance(error, BackendTimeoutError):
        if error.phase == "first_token":
            return Decision(Action.NEXT, BreakerEffect.NEUTRAL, f"{kind} too slow to first token")
        if error.phase == "connect":
            return Decision(
                Action.NEXT, BreakerEffect.FAILURE, f"{kind} connect timeout", scope="route"
            )
        return Decision(
            Action.RETRY, BreakerEffect.FAILURE, f"{kind} stalled ({error.phase} deadline)"
        )
    if isinstance(error, BusyError):
        if error.concurrency_limit is not None:
            # The account's own limit, stated by the server: the route is healthy, the
            # client sent too much at once. The limit is learned and the retry waits at
            # the client-side gate; opening the breaker would send the burst elsewhere
            # (a one-slot daemon) for a whole cooldown.
            return Decision(
                Action.RETRY,
                BreakerEffect.NEUTRAL,
                f"{kind} over its concurrency limit of {error.concurrency_limit} (429)",
                retry_after=error.retry_after,
            )
        what = "rate limited (429)" if error.status_code == 429 else "busy (503)"
        return Decision(
            Action.RETRY, BreakerEffect.FAILURE, f"{kind} {what}", retry_after=error.retry_after
        )
    if isinstance(error, HostedAuthError):
        return Decision(
            Action.NEXT,
            BreakerEffect.DISABLE_SESSION,
            "hosted key refused (401)",
            loud=True,
            scope="route",
        )
    if isinstance(error, HostedBalanceError):
        return Decision(
            Action.NEXT,
            BreakerEffect.DISABLE_LONG,
            "hosted account out of credit (402)",
            loud=True,
            scope="route",
        )
    if isinstance(error, RedirectRefusedError):
        return Decision(
            Action.NEXT, BreakerEffect.OPEN, f"{kind} endpoint redirected", loud=True, scope="route"
        )
    if isinstance(error, ModelNotFoundError):
        return Decision(Action.NEXT, BreakerEffect.NEUTRAL, f"model not pulled on {kind} route")
    if isinstance(error, UnsupportedRequestError):
        return Decision(
            Action.NEXT, BreakerEffect.NEUTRAL, f"{kind} route cannot serve this request"
        )
    if isinstance(error, BadRequestError):
        if _is_context_overflow(error):
            return Decision(
                Action.NEXT, BreakerEffect.NEUTRAL, f"prompt longer than the {kind} context"
            )
        if _is_capability_gap(error):
            return Decision(Action.NEXT, BreakerEffect.NEUTRAL, f"{kind} model lacks a capability")
        if kind == "hosted" and _is_hosted_model_name_error(error):
            return Decision(
                Action.NEXT, BreakerEffect.NEUTRAL, "hosted model name not accepted", loud=True
            )
        return Decision(Action.RAISE, BreakerEffect.NEUTRAL, "request rejected")
    if isinstance(error, IncompleteResponseError):
        return Decision(Action.RETRY, BreakerEffect.FAILURE, f"{kind} answer cut short")
    if isinstance(error, ServerError):
        return Decision(Action.RETRY, BreakerEffect.FAILURE, f"{kind} server error")
    if isinstance(error, BackendError):
        return Decision(Action.RETRY, BreakerEffect.FAILURE, f"{kind} failed")
    return Decision(Action.RAISE, BreakerEffect.NEUTRAL, f"unexpected {type(error).__name__}")
