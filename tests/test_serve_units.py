"""The pure parts of `dsollama serve`: docstring examples, metrics, error mapping."""

from __future__ import annotations

import doctest
import importlib

import pytest

from dsollama._exceptions import (
    AllRoutesFailedError,
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
    ServerError,
    UnsupportedRequestError,
)
from dsollama._routing.policy import classify
from dsollama._types import Attempt, CallRecord
from dsollama.serve.errors import from_exception
from dsollama.serve.metrics import REASON_LABELS, CallMetrics, Registry, reason_label

MODULES = [
    "dsollama.serve.admin",
    "dsollama.serve.errors",
    "dsollama.serve.info",
    "dsollama.serve.metrics",
    "dsollama.serve.openai_wire",
    "dsollama.serve.safe_json",
    "dsollama.serve.security",
    "dsollama.serve.validate",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


def test_histogram_and_label_escaping() -> None:
    registry = Registry()
    latency = registry.histogram("t_seconds", "Latency.", ("route",), buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        latency.observe(value, route='a"b\\c\nd')
    text = registry.render()
    assert 't_seconds_bucket{route="a\\"b\\\\c\\nd",le="0.1"} 1' in text
    assert 't_seconds_bucket{route="a\\"b\\\\c\\nd",le="1"} 2' in text
    assert 't_seconds_bucket{route="a\\"b\\\\c\\nd",le="+Inf"} 3' in text
    assert 't_seconds_count{route="a\\"b\\\\c\\nd"} 3' in text
    with pytest.raises(ValueError, match="takes labels"):
        latency.observe(1.0)
    with pytest.raises(ValueError, match="takes labels"):
        latency.observe(1.0, path="a")
    hits = registry.counter("t_total", "Hits.", ("route", "outcome"))
    for wrong in (
        {"route": "a"},
        {"route": "a", "status": "b"},
        {"route": "a", "outcome": "b", "x": "c"},
    ):
        with pytest.raises(ValueError, match="takes labels"):
            hits.inc(**wrong)
    hits.inc(route="a", outcome="ok")
    hits.inc_key(("a", "ok"), 2)
    assert hits.value(route="a", outcome="ok") == 3


def _attempt(kind: str, error: str, outcome: str = "fallback") -> Attempt:
    return Attempt(route=f"{kind}:x", kind=kind, model="m", outcome=outcome, error=error)  # type: ignore[arg-type]


def test_errors_map_to_statuses_clients_understand() -> None:
    missing = ModelNotFoundError("m")
    everywhere = AllRoutesFailedError(
        "no route",
        attempts=[
            _attempt("local", "ModelNotFoundError"),
            _attempt("hosted", "ModelNotFoundError"),
        ],
        last_error=missing,
    )
    assert from_exception(everywhere).status == 404
    busy = AllRoutesFailedError(
        "no route",
        attempts=[_attempt("local", "ModelNotFoundError"), _attempt("hosted", "BusyError")],
        last_error=BusyError("busy", status_code=503),
    )
    mapped = from_exception(busy)
    assert (mapped.status, mapped.code) == (503, "all_routes_failed")
    assert [a["error"] for a in mapped.extra["attempts"]] == ["ModelNotFoundError", "BusyError"]
    assert from_exception(BadRequestError("bad", status_code=422)).status == 422
    assert from_exception(BusyError("busy", retry_after=2.4)).headers == {"retry-after": "2"}
    unexpected = from_exception(RuntimeError("boom sk-abcdefgh123"))
    assert unexpected.status == 500
    assert "sk-abcdefgh123" not in unexpected.message


def _errors() -> list[BaseException]:
    return [
        DaemonUnreachableError("127.0.0.1:11434"),
        *(BackendTimeoutError("slow", phase=p) for p in ("first_token", "connect", "gap", "total")),
        BusyError("busy", status_code=503),
        BusyError("limited", status_code=429),
        HostedAuthError("no"),
        HostedBalanceError("no money"),
        ModelNotFoundError("secret-model-name:1b"),
        UnsupportedRequestError("images"),
        ContextOverflowError("the prompt is longer than the context length"),
        BadRequestError("x does not support tools"),
        BadRequestError("Model Not Exist"),
        BadRequestError("something else"),
        IncompleteResponseError("cut"),
        ServerError("500"),
        BackendError("odd"),
        RuntimeError("who knows"),
    ]


def test_every_reason_the_router_gives_has_a_label_of_its_own() -> None:
    reasons = [classify(e, kind=k).reason for e in _errors() for k in ("local", "hosted")]
    reasons += [  # the router's skip reasons, breakers, budgets and deadlines
        "images cannot go to the hosted route",
        "hosted at its concurrency limit (3 sent, limit 3): first token predicted in 9.0s > 2.0s",
        "model not pulled on the local daemon (run `dsollama pull private-name:7b`)",
        "local model not loaded: a cold load (~4.0s) puts the first token at 4.2s > 2.0s",
        "local busy: 4 in flight on 1 slot(s), first token predicted in 12.0s > 10.0s",
        "prompt ~9000 tokens > local context 8192",
        "breaker open for 12s (local daemon unreachable)",
        "another call is probing the route (local server error)",
        "local gave no first token within 0.4s, 2 keep-alive(s) and no data",
        "hosted busy (503); retry budget exhausted",
        "total deadline passed",
    ]
    labels = {reason: reason_label(reason) for reason in reasons}
    assert all(label in REASON_LABELS for label in labels.values())
    assert [r for r, label in labels.items() if label == "other"] == []
    assert not any("private-name" in label or "secret" in label for label in labels.values())


def test_fallback_labels_come_from_a_closed_set_whatever_the_model_names() -> None:
    metrics = CallMetrics(Registry())
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(300):
        name = f"model-{letters[i % 26]}{letters[i // 26]}"  # no digits to strip
        for reason in (
            f"model not pulled on the local daemon (run `dsollama pull {name}`)",
            f"a reason no one planned for {name}",
        ):
            metrics.record(
                CallRecord(operation="chat", model_requested=name, ok=True, fallback_reason=reason)
            )
    assert metrics.fallbacks.samples() == [
        'dsollama_fallbacks_total{reason="model not pulled on local route"} 300',
        'dsollama_fallbacks_total{reason="other"} 300',
    ]
