"""The hot path does no more work per call and per chunk than its guarantees need.

Each test pins one saving (see benchmarks/profiles/ for what they bought) and checks that
the guarantee it touches still holds.
"""

from __future__ import annotations

from typing import Any

import pytest

from dsollama._routing import run

from .conftest import USER, Stack

pytestmark = pytest.mark.anyio


@pytest.fixture
def deliveries(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every item a reader hands to its call."""
    handed: list[Any] = []
    deliver = run.CallRun._deliver

    def counted(self: run.CallRun, racer: Any, item: Any) -> None:
        handed.append(item)
        deliver(self, racer, item)

    monkeypatch.setattr(run.CallRun, "_deliver", counted)
    return handed


async def test_a_whole_answer_is_handed_over_twice_however_many_chunks(
    stack: Stack, kind: str, deliveries: list[Any]
) -> None:
    # The first delta (its time is the first-token budget's), then the rest merged.
    client = stack.client(kind)
    streamed = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True)
    assert len(deliveries) == len(streamed.chunks) > 10
    deliveries.clear()
    whole = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert len(deliveries) == 2
    assert deliveries[-1].done
    assert whole.final.message.content == streamed.text
    assert whole.final.message.thinking == streamed.thinking
    assert whole.final.eval_count == streamed.final.eval_count
