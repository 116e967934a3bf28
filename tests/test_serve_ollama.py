"""`dsollama serve` as an Ollama host: the official `ollama` client, sync and async.

The client must see nothing unusual: the daemon's shapes, NDJSON streaming, its errors.
What serve adds (who served, what was tried) is checked with plain HTTP.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import ollama
import pytest

from dsollama.testing import Fault

from .conftest import Stack
from .serve_harness import MODEL, USER, Served, http, ndjson, serving

pytestmark = pytest.mark.anyio


async def call(kind: str, served: Served, op: str, *args: Any, **kwargs: Any) -> Any:
    """One call through the official client; streams are collected into a list."""
    stream = kwargs.get("stream", False)
    if kind == "sync":

        def run() -> Any:
            with ollama.Client(host=served.url, headers=served.auth()) as client:
                result = getattr(client, op)(*args, **kwargs)
                return list(result) if stream else result

        return await asyncio.to_thread(run)
    async with ollama.AsyncClient(host=served.url, headers=served.auth()) as aclient:
        result = await getattr(aclient, op)(*args, **kwargs)
        return [part async for part in result] if stream else result


def text_of(parts: list[Any]) -> str:
    return "".join(
        (p.message.content if hasattr(p, "message") else p.response) or "" for p in parts
    )


async def test_list_shows_local_models_and_marks_the_hosted_ones(stack: Stack, kind: str) -> None:
    with serving(stack) as served:
        listed = await call(kind, served, "list")
        names = [m.model for m in listed.models]
        assert {"deepseek-r1:8b", "deepseek-coder:6.7b"} <= set(names)
        assert {"deepseek-flash", "deepseek-v4-pro"} <= set(names)
        assert "deepseek-v4-flash" not in names  # an alias: one entry per real model
        raw = (await http("GET", f"{served.url}/api/tags")).json()["models"]
        hosted = next(m for m in raw if m["name"] == "deepseek-flash")
        assert hosted["remote_host"] == stack.deepseek.url
        assert hosted["details"]["format"] == "hosted"
        local = next(m for m in raw if m["name"] == MODEL)
        assert "remote_host" not in local


async def test_without_a_hosted_key_only_local_models_are_listed(stack: Stack) -> None:
    with serving(stack, hosted_api_key=None) as served:
        listed = await call("sync", served, "list")
        assert sorted(m.model for m in listed.models) == ["deepseek-coder:6.7b", "deepseek-r1:8b"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_chat_is_answered_locally(stack: Stack, kind: str, stream: bool) -> None:
    with serving(stack) as served:
        result = await call(kind, served, "chat", MODEL, messages=USER, stream=stream)
        parts = result if stream else [result]
        final = parts[-1]
        assert final.done is True
        assert final.done_reason == "stop"
        assert final.model == MODEL
        assert text_of(parts)
        assert final.eval_count
        assert "".join(p.message.thinking or "" for p in parts)  # reasoning stays separate
        assert stack.deepseek.requests == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_generate_is_answered_locally(stack: Stack, kind: str, stream: bool) -> None:
    with serving(stack) as served:
        result = await call(kind, served, "generate", MODEL, prompt="Say hi", stream=stream)
        parts = result if stream else [result]
        assert parts[-1].done is True
        assert text_of(parts)
        assert parts[-1].context  # generate's context survives the trip


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_dead_daemon_falls_back_to_hosted_and_says_so(
    stack: Stack, kind: str, stream: bool
) -> None:
    stack.ollama.refuse_connections()
    with serving(stack) as served:
        result = await call(kind, served, "chat", MODEL, messages=USER, stream=stream)
        parts = result if stream else [result]
        assert parts[-1].model == "deepseek-flash"  # the model that answered
        assert text_of(parts)
        # What the official client drops, plain HTTP shows: headers and body fields.
        body = {"model": MODEL, "messages": USER, "stream": False}
        response = await http("POST", f"{served.url}/api/chat", json=body)
        assert response.headers["x-dsollama-kind"] == "hosted"
        assert response.headers["x-dsollama-model"] == "deepseek-flash"
        assert response.headers["x-dsollama-route"].startswith("hosted:")
        data = response.json()
        assert data["served_by"]["kind"] == "hosted"
        assert [a["outcome"] for a in data["attempts"]][-1] == "ok"


async def test_fallback_headers_and_final_chunk_fields(stack: Stack) -> None:
    stack.ollama.refuse_connections()
    # A cooldown no loaded machine outlasts between the two calls: the second must skip.
    with serving(stack, breaker_cooldown=30.0, breaker_cooldown_max=60.0) as served:
        body = {"model": MODEL, "messages": USER, "stream": False}
        response = await http("POST", f"{served.url}/api/chat", json=body)
        assert response.status_code == 200
        assert response.headers["x-dsollama-fallback-reason"] == "local daemon unreachable"
        assert response.headers["x-dsollama-attempts"] == "2"
        detail = json.loads(response.headers["x-dsollama-attempts-detail"])
        assert [(a["outcome"], a.get("error")) for a in detail] == [
            ("fallback", "DaemonUnreachableError"),
            ("ok", None),
        ]
        assert response.json()["fallback_reason"] == "local daemon unreachable"
        assert float(response.headers["x-dsollama-cost-usd"]) > 0

        r, lines = await ndjson(f"{served.url}/api/chat", {**body, "stream": True})
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.headers["x-dsollama-kind"] == "hosted"
        assert all("served_by" not in line for line in lines[:-1])
        final = lines[-1]
        assert final["done"] is True
        # The breaker opened on the first call: this one skipped the dead daemon.
        assert final["served_by"]["kind"] == "hosted"
        assert [a["outcome"] for a in final["attempts"]] == ["skipped", "ok"]
        assert "breaker open" in final["fallback_reason"]


async def test_a_retried_answer_reports_both_attempts(stack: Stack) -> None:
    stack.ollama.add_fault(Fault("status", status=503, times=1, path="/api/chat"))
    with serving(stack) as served:
        response = await http(
            "POST",
            f"{served.url}/api/chat",
            json={"model": MODEL, "messages": USER, "stream": False},
        )
        assert response.headers["x-dsollama-kind"] == "local"
        assert response.headers["x-dsollama-attempts"] == "2"
        assert response.json()["attempts"][0]["status_code"] == 503


async def test_a_hosted_model_name_goes_hosted_first(stack: Stack, kind: str) -> None:
    with serving(stack) as served:
        result = await call(kind, served, "chat", "deepseek-flash", messages=USER)
        assert result.model == "deepseek-flash"
        assert stack.ollama.recorded("/api/chat") == []
        stack.deepseek.add_fault(Fault("status", status=503, times=None))
        fell_back = await call(kind, served, "chat", "deepseek-flash", messages=USER)
        assert fell_back.model == MODEL  # the catalogue's local counterpart


async def test_a_mid_stream_break_ends_with_an_error_line(stack: Stack, kind: str) -> None:
    stack.ollama.add_fault(Fault("error_line", after_chunks=3, path="/api/chat"))
    with serving(stack) as served:
        with pytest.raises(ollama.ResponseError) as caught:
            await call(kind, served, "chat", MODEL, messages=USER, stream=True)
        assert caught.value.status_code == -1  # an error line inside a 200 stream
        assert "broke after" in caught.value.error
        stack.ollama.add_fault(Fault("error_line", after_chunks=3, path="/api/chat"))
        r, lines = await ndjson(f"{served.url}/api/chat", {"model": MODEL, "messages": USER})
        assert r.status_code == 200
        assert "error" in lines[-1]
        assert not any(line.get("done") for line in lines)


async def test_unknown_models_are_404_like_the_daemon(stack: Stack, kind: str) -> None:
    with serving(stack, policy="local-only") as served:
        with pytest.raises(ollama.ResponseError) as caught:
            await call(kind, served, "chat", "nope:1b", messages=USER)
        assert caught.value.status_code == 404
        assert "'nope:1b' not found" in caught.value.error
        with pytest.raises(ollama.ResponseError) as streamed:
            await call(kind, served, "generate", "nope:1b", prompt="hi", stream=True)
        assert streamed.value.status_code == 404


async def test_invalid_requests_are_400_with_the_field_named(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        bad_json = await http("POST", f"{url}/api/chat", content=b"{not json")
        assert bad_json.status_code == 400
        assert "not valid JSON" in bad_json.json()["error"]
        empty = await http("POST", f"{url}/api/chat", content=b"")
        assert empty.status_code == 400
        assert "missing request body" in empty.json()["error"]
        wrong = await http(
            "POST", f"{url}/api/chat", json={"model": MODEL, "messages": USER, "stream": "yes"}
        )
        assert wrong.status_code == 400
        assert (
            wrong.json()["error"] == "invalid field 'stream': expected true or false, got \"yes\""
        )
        think = await http("POST", f"{url}/api/generate", json={"model": MODEL, "think": "lots"})
        assert think.status_code == 400
        assert "invalid think value" in think.json()["error"]
        no_model = await http("POST", f"{url}/api/chat", json={"messages": USER})
        assert no_model.status_code == 400
        assert "model is required" in no_model.json()["error"]
        role = await http(
            "POST", f"{url}/api/chat", json={"model": MODEL, "messages": [{"content": "x"}]}
        )
        assert "messages[0].role" in role.json()["error"]
        # The daemon's own rejections keep their status and text.
        with ollama.Client(host=url) as client, pytest.raises(ollama.ResponseError) as caught:
            client.chat(MODEL, messages=USER, keep_alive="300")
        assert caught.value.status_code == 400
        assert "missing unit" in caught.value.error


async def test_embed_version_root_show_and_ps(stack: Stack, kind: str) -> None:
    with serving(stack) as served:
        embedded = await call(kind, served, "embed", MODEL, input=["a", "b"])
        assert len(embedded.embeddings) == 2
        shown = await call(kind, served, "show", MODEL)
        assert shown.modelinfo
        assert "thinking" in (shown.capabilities or [])
        hosted = await call(kind, served, "show", "deepseek-flash")
        assert hosted.modelinfo["deepseek.context_length"] == 1_000_000
        await call(kind, served, "chat", MODEL, messages=USER)
        running = await call(kind, served, "ps")
        assert MODEL in [m.model for m in running.models]
        assert (await http("GET", served.url)).text == "Ollama is running"
        assert (await http("HEAD", served.url)).status_code == 200
        assert (await http("GET", f"{served.url}/api/version")).json() == {"version": "0.33.0"}


async def test_provisioning_passes_through_to_the_daemon(
    stack: Stack, kind: str, tmp_path: Path
) -> None:
    with serving(stack) as served:
        progress = await call(kind, served, "pull", "deepseek-r1:1.5b", stream=True)
        statuses = [p.status for p in progress]
        assert statuses[0] == "pulling manifest"
        assert statuses[-1] == "success"
        assert any(p.completed for p in progress)
        assert "deepseek-r1:1.5b" in stack.ollama.installed_models()

        created = await call(kind, served, "create", "mario", from_=MODEL, system="You are Mario.")
        assert created.status == "success"
        copied = await call(kind, served, "copy", "mario", "mario-backup")
        assert copied.status == "success"
        deleted = await call(kind, served, "delete", "mario-backup")
        assert deleted.status == "success"
        with pytest.raises(ollama.ResponseError) as missing:
            await call(kind, served, "delete", "mario-backup")
        assert missing.value.status_code == 404

        weights = tmp_path / "tiny.gguf"
        weights.write_bytes(b"GGUF" + bytes(range(256)) * 64)
        digest = await call(kind, served, "create_blob", weights)
        assert (await http("HEAD", f"{served.url}/api/blobs/{digest}")).status_code == 200
        made = await call(kind, served, "create", "tiny", files={"tiny.gguf": digest})
        assert made.status == "success"
        assert "tiny:latest" in stack.ollama.installed_models()

        with pytest.raises(ollama.ResponseError) as unknown:
            await call(kind, served, "pull", "no-such-model:1b")
        assert "file does not exist" in unknown.value.error
        # serve's token never reaches the daemon (there is none here; nothing extra either)
        assert all("authorization" not in r.headers for r in stack.ollama.requests)


async def test_a_dead_daemon_is_a_clear_error_where_nothing_can_stand_in(stack: Stack) -> None:
    stack.ollama.refuse_connections()
    with serving(stack, hosted_api_key=None) as served:
        with ollama.Client(host=served.url) as client:
            with pytest.raises(ollama.ResponseError) as chat:
                client.chat(MODEL, messages=USER)
            assert chat.value.status_code == 503
            assert "cannot reach the Ollama daemon" in chat.value.error
            assert "ollama serve" in chat.value.error  # the fix, not just the problem
            with pytest.raises(ollama.ResponseError) as listing:
                client.list()
            assert listing.value.status_code == 502
            with pytest.raises(ollama.ResponseError) as pull:
                client.pull(MODEL)
            assert pull.value.status_code == 502
        body = await http("POST", f"{served.url}/api/chat", json={"model": MODEL, "messages": USER})
        assert body.status_code == 503
        assert body.headers["x-dsollama-attempts"] == "1"
        assert body.json()["dsollama"]["attempts"][0]["route"].startswith("local:")


async def test_a_request_can_ask_to_stay_local_but_not_widen_a_local_only_server(
    stack: Stack,
) -> None:
    stack.ollama.refuse_connections()
    body = {"model": MODEL, "messages": USER, "stream": False}
    with serving(stack) as served:
        kept = await http(
            "POST", f"{served.url}/api/chat", json=body, headers={"X-Dsollama-Local-Only": "true"}
        )
        assert kept.status_code == 503
        assert stack.deepseek.requests == []  # the privacy promise: nothing left the machine
    with serving(stack, policy="local-only") as served:
        widened = await http(
            "POST",
            f"{served.url}/api/chat",
            json=body,
            headers={"X-Dsollama-Policy": "hosted-first"},
        )
        assert widened.status_code == 503
        assert stack.deepseek.requests == []
