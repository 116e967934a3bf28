"""One owner per daemon: the same failure is the same dsollama error through every door.

A dead daemon, a 404 and a 500 seen through a routed chat, a pull, a list and serve.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import dsollama
from dsollama.testing import Fault

from .conftest import USER, Stack
from .serve_harness import serving

pytestmark = pytest.mark.anyio

MODEL = "deepseek-r1:8b"


async def _doors(stack: Stack, kind: str) -> dict[str, BaseException]:
    """The error each library door raises for the daemon's current failure."""
    client = stack.client(kind, max_attempts=1)
    errors: dict[str, BaseException] = {}
    calls: dict[str, Any] = {
        "chat": lambda: stack.call(kind, client, "chat", MODEL, USER, local_only=True),
    }
    for name, call in calls.items():
        with pytest.raises(dsollama.DsollamaError) as caught:
            await call()
        errors[name] = caught.value
    for name in ("pull", "list"):
        with pytest.raises(dsollama.DsollamaError) as caught:
            if kind == "async":
                await (client.pull(MODEL) if name == "pull" else client.list())
            else:
                import asyncio

                await asyncio.to_thread(
                    (lambda: client.pull(MODEL)) if name == "pull" else client.list
                )
        errors[name] = caught.value
    return errors


FAILURES = {
    "unreachable": (None, dsollama.DaemonUnreachableError),
    "404": (
        Fault("status", status=404, times=None, message=f"model '{MODEL}' not found"),
        dsollama.ModelNotFoundError,
    ),
    "500": (
        Fault("status", status=500, times=None, message="runner crashed"),
        dsollama.ServerError,
    ),
}


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_the_same_failure_is_the_same_error_through_every_door(
    stack: Stack, kind: str, failure: str
) -> None:
    fault, expected = FAILURES[failure]
    if fault is None:
        stack.ollama.refuse_connections()
    else:
        stack.ollama.add_fault(fault)
    errors = await _doors(stack, kind)
    assert {type(e) for e in errors.values()} == {expected}, errors
    if failure == "unreachable":
        assert {str(e) for e in errors.values()} == {
            f"cannot reach the Ollama daemon at {stack.ollama.url}"
        }


@pytest.mark.parametrize("failure", list(FAILURES))
async def test_serve_passes_the_same_failure_on(stack: Stack, failure: str) -> None:
    fault, _ = FAILURES[failure]
    if fault is None:
        stack.ollama.refuse_connections()
    else:
        stack.ollama.add_fault(fault)
    with serving(stack, policy="local-only", max_attempts=1) as served:
        async with httpx.AsyncClient(timeout=20) as http:
            chat = await http.post(
                served.url + "/api/chat", json={"model": MODEL, "messages": USER, "stream": False}
            )
            pull = await http.post(served.url + "/api/pull", json={"model": MODEL, "stream": False})
            tags = await http.get(served.url + "/api/tags")
    statuses = {"unreachable": None, "404": 404, "500": None}
    if statuses[failure] is not None:
        assert chat.status_code == pull.status_code == tags.status_code == statuses[failure]
    else:
        assert chat.status_code >= 500
        assert pull.status_code >= 500
        assert tags.status_code >= 500
    if failure == "unreachable":
        for response in (chat, pull, tags):
            assert f"cannot reach the Ollama daemon at {stack.ollama.url}" in response.text
