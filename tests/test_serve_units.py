"""The pure parts of `dsollama serve`: docstring examples, metrics, error mapping."""

from __future__ import annotations

import doctest
import importlib

import pytest

from dsollama._exceptions import (
    AllRoutesFailedError,
    BadRequestError,
    BusyError,
    ModelNotFoundError,
)
from dsollama._types import Attempt
from dsollama.serve.errors import from_exception
from dsollama.serve.metrics import Registry

MODULES = [
    "dsollama.serve.errors",
    "dsollama.serve.info",
    "dsollama.serve.metrics",
    "dsollama.serve.openai_wire",
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
