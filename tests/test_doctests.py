"""The examples in the pure modules' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dsollama._exceptions",
    "dsollama._hosts",
    "dsollama._catalogue",
    "dsollama._routing.backoff",
    "dsollama._calllog.schema",
    "dsollama._calllog.store",
    "dsollama._calllog.query",
    "dsollama._wire.reasoning",
    "dsollama._wire.sse",
    "dsollama._wire.hosted_response",
    "dsollama._wire.hosted_errors",
    "dsollama._provision.goformat",
    "dsollama._provision.plan",
    "dsollama._modelfile",
    "dsollama._modelfile.parameters",
    "dsollama.testing._prometheus",
    "dsollama.testing._ollama_settings",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
