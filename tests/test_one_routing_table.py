"""One routing table for every door, one declaration of the call.

The same request takes the same route whether it comes through the library, the CLI or
either dialect of serve; an embed is routed and recorded like a chat; the clients keep the
official ``ollama`` signatures exactly, plus dsollama's routing options.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import httpx
import ollama
import pytest
from click.testing import CliRunner

import dsollama
from dsollama._calllog.query import recent_calls
from dsollama.cli import cli

from .conftest import USER, Stack
from .serve_harness import serving

pytestmark = pytest.mark.anyio

CASES = [
    ("deepseek-r1:8b", "local"),  # a local tag: the local route first
    ("deepseek-flash", "hosted"),  # a hosted model named: its hosted route first
]


async def _through_serve(stack: Stack, model: str) -> tuple[str, str]:
    with serving(stack) as served:
        async with httpx.AsyncClient(timeout=20) as http:
            native = await http.post(
                served.url + "/api/chat",
                json={"model": model, "messages": USER, "stream": False},
            )
            openai = await http.post(
                served.url + "/v1/chat/completions", json={"model": model, "messages": USER}
            )
    return native.headers["x-dsollama-kind"], openai.headers["x-dsollama-kind"]


@pytest.mark.parametrize(("model", "expected"), CASES)
async def test_the_same_request_takes_the_same_route_through_every_door(
    stack: Stack, model: str, expected: str
) -> None:
    library = await stack.call("async", stack.client("async"), "chat", model, USER)
    env = {
        "OLLAMA_HOST": stack.ollama.url,
        "DEEPSEEK_BASE_URL": stack.deepseek.url,
        "DEEPSEEK_API_KEY": stack.deepseek.api_key,
        "DSOLLAMA_LOG": "off",
    }
    command = CliRunner().invoke(cli, ["chat", model, "Why run DeepSeek locally?"], env=env)
    assert command.exit_code == 0, command.stderr
    cli_kind = re.search(r"served by (\w+) ", command.stderr)
    native, openai = await _through_serve(stack, model)
    assert library.final.served_by.kind == expected
    assert cli_kind is not None
    assert cli_kind[1] == expected
    assert (native, openai) == (expected, expected)


async def test_an_embed_is_recorded_in_the_log_and_in_metrics(stack: Stack, tmp_path: Path) -> None:
    log_path = tmp_path / "log.db"
    client = stack.client("async", log=True, log_path=str(log_path))
    answer = await client.embed("deepseek-r1:8b", "hello")
    assert answer.served_by.kind == "local"
    assert [a.outcome for a in answer.attempts] == ["ok"]
    for sink in client.router.sinks:  # the log writes off the call's path: wait for it
        flush = getattr(getattr(sink, "log", None), "flush", None)
        if flush is not None:
            assert flush()
    await client.aclose()
    calls = recent_calls(log_path)
    assert [c.operation for c in calls] == ["embed"]
    with serving(stack) as served:
        async with httpx.AsyncClient(timeout=20) as http:
            embedded = await http.post(
                served.url + "/api/embed", json={"model": "deepseek-r1:8b", "input": "hi"}
            )
            metrics = (await http.get(served.url + "/metrics")).text
    assert embedded.status_code == 200
    assert re.search(
        r'dsollama_calls_total\{operation="embed",served="local",outcome="ok"\} 1', metrics
    )


async def test_a_failing_embed_moves_through_the_policy_table(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind)
    with pytest.raises(dsollama.DaemonUnreachableError) as caught:
        if kind == "async":
            await client.embed("deepseek-r1:8b", "hello")
        else:
            client.embed("deepseek-r1:8b", "hello")
    assert [a.outcome for a in caught.value.attempts] == ["fallback"]
    assert stack.deepseek.requests == []  # embeddings never leave the machine


@pytest.mark.parametrize("name", ["chat", "generate", "embed"])
@pytest.mark.parametrize("ours", [dsollama.Client, dsollama.AsyncClient])
def test_the_official_signatures_are_kept_exactly(name: str, ours: type) -> None:
    official = ollama.Client if ours is dsollama.Client else ollama.AsyncClient
    theirs = inspect.signature(getattr(official, name)).parameters
    mine = inspect.signature(getattr(ours, name)).parameters
    # Every official parameter, in order, of the same kind and default; then only ours.
    official_params = [p for p in theirs.values() if p.name not in {"width", "height", "steps"}]
    assert [(p.name, p.kind, p.default) for p in official_params] == [
        (p.name, p.kind, p.default) for p in list(mine.values())[: len(official_params)]
    ]
    extra = list(mine.values())[len(official_params) :]
    assert [p.kind for p in extra] == [inspect.Parameter.VAR_KEYWORD]
