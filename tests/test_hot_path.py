"""The hot path does no more work per call and per chunk than its guarantees need.

Each test pins one saving (see benchmarks/profiles/ for what they bought) and checks that
the guarantee it touches still holds.
"""

from __future__ import annotations

import threading
from asyncio.selector_events import BaseSelectorEventLoop
from collections.abc import AsyncIterator
from typing import Any

import pytest

import dsollama
from dsollama import _loop
from dsollama._call import chat_spec
from dsollama._config import Settings
from dsollama._routing import router as router_module
from dsollama._routing import run

from .conftest import USER, Stack

# The local double answers in milliseconds; a loaded machine must not send a call to the
# hosted double (another answer) by passing the tests' short first-token budget.
_PATIENT = 5.0


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


@pytest.mark.anyio
async def test_a_whole_answer_is_handed_over_twice_however_many_chunks(
    stack: Stack, kind: str, deliveries: list[Any]
) -> None:
    # The first delta (its time is the first-token budget's), then the rest merged.
    client = stack.client(kind, first_token_timeout=_PATIENT)
    streamed = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=True)
    assert len(deliveries) == len(streamed.chunks) > 10
    deliveries.clear()
    whole = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER)
    assert len(deliveries) == 2
    assert deliveries[-1].done
    assert whole.final.message.content == streamed.text
    assert whole.final.message.thinking == streamed.thinking
    assert whole.final.eval_count == streamed.final.eval_count


def _two_daemons() -> dsollama.AsyncClient:
    hosts = ("http://127.0.0.1:1", "http://127.0.0.1:2")  # never connected to here
    return dsollama.AsyncClient(settings=Settings(ollama_hosts=hosts, log=False))


@pytest.mark.anyio
async def test_a_plan_is_made_once_and_still_ranked_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[str] = []
    plan_candidates = router_module.plan_candidates

    def counted(model: str, *args: Any, **kwargs: Any) -> Any:
        planned.append(model)
        return plan_candidates(model, *args, **kwargs)

    monkeypatch.setattr(router_module, "plan_candidates", counted)
    client = _two_daemons()
    router = client.router
    spec = chat_spec("deepseek-r1:8b", USER, stream=False)
    controls = client._controls(None)
    first, second = router.plan(spec, controls)
    assert (first.backend, second.backend) == (router.backends[0], router.backends[1])
    # The first daemon gets busy (two requests for its one slot): the second is now
    # predicted to answer sooner, and goes first, from the same plan.
    for _ in range(2):
        await router.state.admit(first, limit_s=None)
    assert router.plan(spec, controls) == [second, first]
    assert planned == ["deepseek-r1:8b"]
    router.plan(chat_spec("deepseek-r1:14b", USER, stream=False), controls)
    router.plan(spec, client._controls({"local_only": True}))
    assert planned == ["deepseek-r1:8b", "deepseek-r1:14b", "deepseek-r1:8b"]


def test_calls_without_routing_options_share_one_set_of_controls() -> None:
    client = _two_daemons()
    defaults = client._controls(None)
    assert client._controls({}) is defaults
    hedged = client._controls({"hedge": True, "total_timeout": 5})
    assert (hedged.hedge, hedged.total_timeout) == (True, 5.0)
    assert (defaults.hedge, defaults.total_timeout) == (False, client.settings.total_timeout)


@pytest.mark.anyio
async def test_the_hosted_route_keeps_its_connection_from_call_to_call(
    stack: Stack, kind: str, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The body is read to its end after [DONE], so its connection goes back to the pool:
    # a fresh connection per call (connect, then close) cost more than the call itself.
    connects: list[Any] = []
    sock_connect = BaseSelectorEventLoop.sock_connect

    async def counted(self: Any, sock: Any, address: Any) -> None:
        connects.append(address)
        await sock_connect(self, sock, address)

    monkeypatch.setattr(BaseSelectorEventLoop, "sock_connect", counted)
    stack.ollama.refuse_connections()
    client = stack.client(kind, breaker_cooldown=60.0)
    for _ in range(6):
        result = await stack.call(kind, client, "chat", "deepseek-r1:8b", USER, stream=stream)
        assert result.final.served_by.kind == "hosted"
    hosted_port = int(stack.deepseek.url.rsplit(":", 1)[1])
    # One, or two when a call starts while the last one's reader still reads its tail.
    assert [a[1] for a in connects].count(hosted_port) <= 2


def test_a_sync_stream_hands_the_gil_over_once_after_its_first_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first item is shown at once (the loop would otherwise keep the GIL while the
    # rest arrives); the others are not, which would cost more than it saves.
    handed: list[int] = []

    async def answer() -> AsyncIterator[int]:
        for i in range(5):
            yield i

    async def opened() -> AsyncIterator[int]:
        return answer()

    monkeypatch.setattr(_loop, "_hand_over", lambda taken: handed.append(1))
    assert list(_loop.iterate(opened())) == [0, 1, 2, 3, 4]
    assert handed == [1]


def test_the_hand_over_waits_for_the_reader_to_take_its_first_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Yielding the GIL is not enough: the loop waits (capped) on the reader's signal,
    # which the reader gives when it has taken the first item. A reader that is slow to
    # come back holds the loop at the hand-over until it does (the cap is set high here).
    handing_over = threading.Event()
    read_on = threading.Event()
    real = _loop._hand_over

    def hand_over(taken: threading.Event) -> None:
        handing_over.set()
        real(taken)

    async def answer() -> AsyncIterator[int]:
        yield 1
        read_on.set()
        yield 2

    async def opened() -> AsyncIterator[int]:
        return answer()

    monkeypatch.setattr(_loop, "_hand_over", hand_over)
    monkeypatch.setattr(_loop, "_HAND_OVER_WAIT", 60.0)
    stream = _loop.iterate(opened())
    assert handing_over.wait(10)
    # Not a sleep as synchronisation: the absence of an event, given time to happen.
    assert not read_on.wait(0.2), "the loop read on before the reader took its item"
    assert next(stream) == 1
    assert read_on.wait(10)
    assert list(stream) == [2]


class _Sink:
    def __init__(self, content: bool | None) -> None:
        if content is not None:
            self.content = content
        self.records: list[Any] = []

    def record(self, rec: Any) -> None:
        self.records.append(rec)


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_record_carries_the_prompt_and_answer_only_when_a_sink_keeps_them(
    stack: Stack, stream: bool
) -> None:
    metadata_only, keeping = _Sink(content=False), _Sink(content=None)
    client = stack.client("async", sinks=[metadata_only], log=True, first_token_timeout=_PATIENT)
    await stack.call("async", client, "chat", "deepseek-r1:8b", USER, stream=stream)
    (rec,) = metadata_only.records
    assert (rec.messages, rec.response_text, rec.response_thinking) == (None, None, None)
    assert rec.ok
    assert rec.completion_tokens  # the metadata is all there
    both = stack.client(
        "async", sinks=[metadata_only, keeping], log=True, first_token_timeout=_PATIENT
    )
    result = await stack.call("async", both, "chat", "deepseek-r1:8b", USER, stream=stream)
    kept = keeping.records[0]
    assert kept.messages == [{"role": "user", "content": USER[0]["content"]}]
    assert kept.response_text == result.text
    assert kept.response_thinking == result.thinking
