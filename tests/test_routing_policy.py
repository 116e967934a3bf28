"""The routing table, checked row by row without any I/O."""

from __future__ import annotations

import pytest

from dsollama._exceptions import (
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    DaemonUnreachableError,
    HostedAuthError,
    HostedBalanceError,
    IncompleteResponseError,
    ModelNotFoundError,
    ServerError,
    UnsupportedRequestError,
)
from dsollama._routing.policy import Action, BreakerEffect, classify

ROWS = [
    (DaemonUnreachableError("http://127.0.0.1:11434"), "local", Action.NEXT, BreakerEffect.OPEN),
    (BackendTimeoutError("slow", phase="connect"), "local", Action.NEXT, BreakerEffect.FAILURE),
    (BackendTimeoutError("slow", phase="first_token"), "local", Action.NEXT, BreakerEffect.NEUTRAL),
    (BackendTimeoutError("stall", phase="gap"), "hosted", Action.RETRY, BreakerEffect.FAILURE),
    (BackendTimeoutError("late", phase="total"), "local", Action.RETRY, BreakerEffect.FAILURE),
    (BusyError("busy", status_code=503), "local", Action.RETRY, BreakerEffect.FAILURE),
    (
        BusyError("slow down", status_code=429, retry_after=2.0),
        "hosted",
        Action.RETRY,
        BreakerEffect.FAILURE,
    ),
    (ServerError("boom", status_code=500), "local", Action.RETRY, BreakerEffect.FAILURE),
    (IncompleteResponseError("cut"), "hosted", Action.RETRY, BreakerEffect.FAILURE),
    (ModelNotFoundError("deepseek-r1:8b"), "local", Action.NEXT, BreakerEffect.NEUTRAL),
    (UnsupportedRequestError("images"), "hosted", Action.NEXT, BreakerEffect.NEUTRAL),
    (HostedAuthError("Authentication Fails"), "hosted", Action.NEXT, BreakerEffect.DISABLE_SESSION),
    (HostedBalanceError("Insufficient Balance"), "hosted", Action.NEXT, BreakerEffect.DISABLE_LONG),
    (
        BadRequestError(
            "the prompt is longer than the context length currently available to the model"
        ),
        "local",
        Action.NEXT,
        BreakerEffect.NEUTRAL,
    ),
    (
        BadRequestError("registry.ollama.ai/library/deepseek-r1:8b does not support tools"),
        "local",
        Action.NEXT,
        BreakerEffect.NEUTRAL,
    ),
    (BadRequestError("Model Not Exist"), "hosted", Action.NEXT, BreakerEffect.NEUTRAL),
    (
        BadRequestError("invalid character 'x'", status_code=400),
        "local",
        Action.RAISE,
        BreakerEffect.NEUTRAL,
    ),
    (
        BadRequestError("temperature out of range", status_code=422),
        "hosted",
        Action.RAISE,
        BreakerEffect.NEUTRAL,
    ),
    (ValueError("a bug"), "local", Action.RAISE, BreakerEffect.NEUTRAL),
]


@pytest.mark.parametrize(
    ("error", "kind", "action", "breaker"), ROWS, ids=lambda v: type(v).__name__
)
def test_each_failure_has_one_decision(
    error: BaseException, kind: str, action: Action, breaker: BreakerEffect
) -> None:
    decision = classify(error, kind=kind)
    assert decision.action is action
    assert decision.breaker is breaker
    assert decision.reason


def test_retry_after_travels_with_the_decision() -> None:
    decision = classify(BusyError("slow down", status_code=429, retry_after=7.5), kind="hosted")
    assert decision.retry_after == 7.5
    assert "429" in decision.reason


def test_configuration_problems_are_loud() -> None:
    assert classify(HostedAuthError("bad key"), kind="hosted").loud
    assert classify(BadRequestError("Model Not Exist"), kind="hosted").loud
    assert not classify(BusyError("busy", status_code=503), kind="local").loud
