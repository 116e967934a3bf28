"""FakeOllama at the byte level: routes, framing, errors, faults, scheduling, control.

The official client hides bytes (blank lines, headers, plain-text 404s), so these tests
speak raw HTTP through httpx. The client-level proofs are in test_double_ollama_client.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from dsollama.testing import FakeModel, FakeOllama, Fault

R1 = "deepseek-r1:8b"
CODER = "deepseek-coder:1.3b"
USER = [{"role": "user", "content": "Why is the sky blue?"}]
CHAT = {"model": CODER, "messages": USER}
BUSY = "server busy, please try again.  maximum pending requests exceeded"


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(models=[R1, CODER]) as double:
        yield double


@pytest.fixture
def http(fake: FakeOllama) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=10) as client:
        yield client


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


async def await_until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll a condition of the double (its state changes on its own thread)."""
    with anyio.fail_after(limit):
        for _ in itertools.count():
            if condition():
                return
            await anyio.sleep(0.002)


def lines(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines()]


# -- transport and framing --------------------------------------------------------------


def test_root_version_and_unknown_routes(fake: FakeOllama, http: httpx.Client) -> None:
    root = http.get("/")
    assert (root.status_code, root.text) == (200, "Ollama is running")
    assert root.headers["content-type"] == "text/plain; charset=utf-8"
    head = http.head("/")
    assert head.status_code == 200
    assert head.content == b""
    assert http.get("/api/version").json() == {"version": "0.33.0"}
    assert http.head("/api/version").status_code == 200
    missing = http.get("/api/nope")
    assert (missing.status_code, missing.text, missing.headers["content-type"]) == (
        404,
        "404 page not found",
        "text/plain",
    )
    wrong = http.get("/api/chat")
    assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")
    assert http.get("/api/status").json() == {"cloud": {"disabled": False, "source": "none"}}


def test_request_body_errors_use_go_texts(http: httpx.Client) -> None:
    assert http.post("/api/chat", content=b"").json() == {"error": "missing request body"}
    bad = http.post("/api/chat", content=b"{model}")
    assert (bad.status_code, bad.json()["error"]) == (
        400,
        "invalid character 'm' looking for beginning of object key string",
    )
    assert http.post("/api/chat", content=b'{"model":').json()["error"] == "unexpected EOF"
    typed = http.post("/api/chat", json={"model": CODER, "stream": "yes"})
    assert typed.json()["error"] == (
        "json: cannot unmarshal string into Go struct field ChatRequest.stream of type bool"
    )
    assert http.post("/api/chat", json={"messages": USER}).json() == {"error": "model is required"}
    generate = http.post("/api/generate", json={"prompt": "hi"})
    assert (generate.status_code, generate.json()) == (404, {"error": "model '' not found"})
    logprobs = http.post("/api/generate", json={"model": "ghost", "top_logprobs": 21})
    assert logprobs.json() == {"error": "top_logprobs must be between 0 and 20"}
    think = http.post("/api/chat", json={**CHAT, "think": "extreme"})
    assert think.status_code == 400
    assert think.json()["error"].startswith('invalid think value: "extreme"')


def test_stream_is_the_default_and_ndjson(http: httpx.Client) -> None:
    streamed = http.post("/api/chat", json=CHAT)  # no "stream" key: streaming
    assert streamed.headers["content-type"] == "application/x-ndjson"
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert streamed.text.endswith("\n")
    assert "\n\n" not in streamed.text
    chunks = lines(streamed)
    assert [c["done"] for c in chunks] == [False] * 12 + [True]
    assert all("done_reason" not in c and "eval_count" not in c for c in chunks[:-1])
    final = chunks[-1]
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done_reason"] == "stop"
    assert final["eval_count"] == 12
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", final["created_at"])
    keys = list(final)
    assert keys[-6:] == [
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ]
    whole = http.post("/api/chat", json={**CHAT, "stream": False})
    assert whole.headers["content-type"] == "application/json; charset=utf-8"
    assert whole.json()["message"]["content"] == "".join(c["message"]["content"] for c in chunks)


def test_load_unload_and_keep_alive(fake: FakeOllama, http: httpx.Client) -> None:
    loaded = http.post("/api/generate", json={"model": CODER})
    assert loaded.headers["content-type"] == "application/json; charset=utf-8"  # not NDJSON
    assert loaded.json()["done_reason"] == "load"
    assert loaded.json()["response"] == ""
    assert fake.loaded_models() == [CODER]
    chat_load = http.post("/api/chat", json={"model": R1, "messages": []}).json()
    assert chat_load["done_reason"] == "load"
    assert chat_load["message"]["content"] == ""
    unloaded = http.post("/api/generate", json={"model": CODER, "keep_alive": 0}).json()
    assert unloaded["done_reason"] == "unload"
    assert fake.loaded_models() == [R1]
    bad = http.post("/api/generate", json={"model": CODER, "keep_alive": "300"})
    assert (bad.status_code, bad.json()["error"]) == (400, 'time: missing unit in duration "300"')
    forever = http.post("/api/generate", json={"model": CODER, "keep_alive": -1})
    assert forever.status_code == 200
    expires = {m["name"]: m["expires_at"] for m in http.get("/api/ps").json()["models"]}
    assert int(expires[CODER][:4]) > 2200  # "forever" is centuries away


def test_keep_alive_expiry_unloads_when_idle(fake: FakeOllama, http: httpx.Client) -> None:
    http.post("/api/generate", json={"model": CODER})  # loaded with the default 5 minutes
    # A request's keep_alive updates the warm runner's expiry for its next idle time.
    http.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": "50ms"})
    assert fake.loaded_models() == [CODER]
    wait_until(lambda: fake.loaded_models() == [])
    http.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": 0})
    assert fake.loaded_models() == []  # keep_alive 0: gone as soon as the request ends


def test_go_json_escapes_html_and_inline_think() -> None:
    with (
        FakeOllama(models=[R1], think_inline=True) as fake,
        httpx.Client(base_url=fake.url) as http,
    ):
        raw = http.post("/api/chat", json={"model": R1, "messages": USER, "think": True})
        assert b"\\u003cthink\\u003e" in raw.content
        assert b"<think>" not in raw.content
        content = "".join(c["message"]["content"] for c in lines(raw))
        assert content.startswith("<think>\n")
        assert "\n</think>\n\n" in content
        assert all("thinking" not in c["message"] for c in lines(raw))
        shown = http.post("/api/show", json={"model": R1}).json()
        assert shown["capabilities"] == ["completion"]


@pytest.mark.parametrize(
    "ns",
    [
        1_733_370_000_123_456_789,  # nanoseconds
        1_733_370_000_100_000_000,  # trailing zeros trimmed
        1_733_370_000_000_000_000,  # a whole second: no fraction at all
        1_733_370_001_000_000_001,  # the next second: the remembered one is not reused
    ],
)
def test_streamed_timestamps_are_what_go_prints(ns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsollama.testing import _ollama_wire as wire

    monkeypatch.setattr(wire, "_utc_second", (1_733_370_000, "2024-12-05T03:40:00"))
    monkeypatch.setattr(wire.time, "time_ns", lambda: ns)
    stamp = wire.rfc3339_utc_now()
    assert stamp == wire._rfc3339(ns, utc=True)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", stamp)


def test_done_reason_length_and_stop(http: httpx.Client) -> None:
    limited = http.post(
        "/api/chat", json={**CHAT, "stream": False, "options": {"num_predict": 3}}
    ).json()
    assert limited["done_reason"] == "length"
    assert limited["eval_count"] == 3
    full = http.post("/api/chat", json={**CHAT, "stream": False}).json()["message"]["content"]
    word = full.split()[4]
    stopped = http.post(
        "/api/chat", json={**CHAT, "stream": False, "options": {"stop": [" " + word]}}
    ).json()
    assert stopped["done_reason"] == "stop"
    assert full.startswith(stopped["message"]["content"])
    assert word not in stopped["message"]["content"]


def test_option_type_errors_are_500(http: httpx.Client) -> None:
    bad = http.post("/api/chat", json={**CHAT, "options": {"temperature": "0.7"}})
    assert (bad.status_code, bad.json()["error"]) == (
        500,
        'option "temperature" must be of type float32',
    )
    stop = http.post(
        "/api/generate", json={"model": CODER, "prompt": "x", "options": {"stop": "</s>"}}
    )
    assert stop.json()["error"] == 'option "stop" must be of type array'
    assert http.post("/api/chat", json={**CHAT, "options": {"mirostat": 2}}).status_code == 200


def test_format_json_and_schema(http: httpx.Client) -> None:
    plain = http.post("/api/chat", json={**CHAT, "stream": False, "format": "json"}).json()
    assert isinstance(json.loads(plain["message"]["content"]), dict)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
        "required": ["city", "degrees"],
    }
    shaped = http.post("/api/chat", json={**CHAT, "stream": False, "format": schema}).json()
    document = json.loads(shaped["message"]["content"])
    assert set(document) == {"city", "degrees"}
    assert isinstance(document["degrees"], int)
    invalid = http.post("/api/chat", json={**CHAT, "format": "yaml"})
    assert invalid.status_code == 500
    assert invalid.json()["error"] == (
        'invalid format: "\\"yaml\\""; expected "json" or a valid JSON Schema object'
    )


def test_suffix_needs_insert_and_tool_call_ids(fake: FakeOllama, http: httpx.Client) -> None:
    insert = http.post("/api/generate", json={"model": R1, "prompt": "def f(", "suffix": "):"})
    assert insert.json()["error"] == f"registry.ollama.ai/library/{R1} does not support insert"
    assert (
        http.post("/api/generate", json={"model": CODER, "prompt": "a", "suffix": "b"}).status_code
        == 200
    )
    fake.install(FakeModel("toolbox", capabilities=("completion", "tools")))
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    chunks = lines(
        http.post("/api/chat", json={"model": "toolbox", "messages": USER, "tools": [tool]})
    )
    calls = [c["message"]["tool_calls"] for c in chunks if "tool_calls" in c["message"]]
    assert len(calls) == 1
    assert re.fullmatch(r"call_[a-z0-9]{8}", calls[0][0]["id"])
    assert calls[0][0]["function"]["index"] == 0
    assert chunks[-1]["done_reason"] == "stop"


def test_names_are_case_insensitive_and_default_to_latest(
    fake: FakeOllama, http: httpx.Client
) -> None:
    fake.install("deepseek-r1")  # the registry's deepseek-r1:latest
    assert (
        http.post("/api/chat", json={"model": "DeepSeek-R1:LATEST", "messages": USER}).status_code
        == 200
    )
    reply = http.post("/api/chat", json={"model": "deepseek-r1", "messages": USER, "stream": False})
    assert reply.json()["model"] == "deepseek-r1"  # echoes the request's spelling
    assert http.post("/api/show", json={"model": "DEEPSEEK-CODER:1.3B"}).status_code == 200
    shown = http.post("/api/show", json={"model": "nothing"})
    assert (shown.status_code, shown.json()["error"]) == (404, "model 'nothing:latest' not found")
    assert (
        http.post("/api/show", json={"model": "bad name"}).json()["error"] == "invalid model name"
    )


def test_tags_show_ps_shapes(fake: FakeOllama, http: httpx.Client) -> None:
    models = http.get("/api/tags").json()["models"]
    entry = next(m for m in models if m["name"] == R1)
    assert entry["model"] == R1
    assert set(entry["details"]) == {
        "parent_model",
        "format",
        "family",
        "families",
        "parameter_size",
        "quantization_level",
    }
    assert entry["size"] > 52_000  # weights scaled down plus the small layers
    shown = http.post("/api/show", json={"model": R1}).json()
    assert shown["model_info"]["general.architecture"] == "qwen3"
    assert shown["modelfile"].startswith('# Modelfile generated by "ollama show"')
    assert "PARAMETER stop <｜User｜>" in shown["modelfile"]
    http.post("/api/generate", json={"model": R1, "options": {"num_ctx": 8192}})
    running = http.get("/api/ps").json()["models"][0]
    assert set(running) == {
        "name",
        "model",
        "size",
        "digest",
        "details",
        "expires_at",
        "size_vram",
        "context_length",
    }
    assert running["context_length"] == 8192
    with FakeOllama() as empty, httpx.Client(base_url=empty.url) as other:
        assert other.get("/api/tags").json() == {"models": []}
        assert other.get("/api/ps").json() == {"models": []}


# -- provisioning -----------------------------------------------------------------------


def test_blobs(http: httpx.Client) -> None:
    data = b"GGUF model bytes"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.head(f"/api/blobs/{digest.replace(':', '-')}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=b"ignored").status_code == 200
    other = "sha256:" + "0" * 64
    mismatch = http.post(f"/api/blobs/{other}", content=data)
    assert (mismatch.status_code, mismatch.json()["error"]) == (
        400,
        f'digest mismatch, expected "{other}", got "{digest}"',
    )
    malformed = http.post("/api/blobs/sha256:xyz", content=data)
    assert (malformed.status_code, malformed.json()) == (400, {"error": "invalid digest format"})


def test_create_accepts_only_the_structured_body(http: httpx.Client) -> None:
    legacy = http.post("/api/create", json={"model": "x", "modelfile": f"FROM {R1}"})
    assert (legacy.status_code, legacy.json()) == (
        400,
        {"error": "neither 'from' or 'files' was specified"},
    )
    missing_blob = "sha256:" + "1" * 64
    streamed = http.post("/api/create", json={"model": "x", "files": {"m.gguf": missing_blob}})
    assert streamed.status_code == 200  # "parsing GGUF" went out before the failure
    events = lines(streamed)
    assert events[0] == {"status": "parsing GGUF"}
    assert events[-1]["error"].endswith(f"/blobs/sha256-{'1' * 64}: no such file or directory")
    relative = http.post("/api/create", json={"model": "x", "files": {"/etc/m.gguf": missing_blob}})
    assert relative.json() == {"error": "file path must be relative"}
    done = http.post("/api/create", json={"model": "y", "from": CODER, "stream": False})
    assert done.json() == {"status": "success"}
    assert done.headers["content-type"] == "application/json"


def test_copy_and_delete_bodies(fake: FakeOllama, http: httpx.Client) -> None:
    copied = http.post("/api/copy", json={"source": R1, "destination": "r1-backup"})
    assert (copied.status_code, copied.content) == (200, b"")
    deleted = http.request("DELETE", "/api/delete", json={"model": "r1-backup"})
    assert (deleted.status_code, deleted.content) == (200, b"")
    again = http.request("DELETE", "/api/delete", json={"model": "r1-backup"})
    assert again.json() == {"error": "model 'r1-backup' not found"}
    assert http.post("/api/copy", json={"source": "nope", "destination": "x"}).json() == {
        "error": 'model "nope" not found'
    }


def test_embed_and_legacy_embeddings(http: httpx.Client) -> None:
    result = http.post(
        "/api/embed", json={"model": CODER, "input": "hello", "dimensions": 4}
    ).json()
    assert len(result["embeddings"][0]) == 4
    assert result["prompt_eval_count"] > 0
    assert http.post("/api/embed", json={"model": CODER, "input": 3}).json() == {
        "error": "invalid input type"
    }
    assert http.post("/api/embed", json={"model": CODER}).json() == {
        "model": CODER,
        "embeddings": [],
    }
    legacy = http.post("/api/embeddings", json={"model": CODER, "prompt": "hi"}).json()
    assert len(legacy["embedding"]) == 8


# -- /v1 --------------------------------------------------------------------------------


def test_openai_chat_completions(http: httpx.Client) -> None:
    body = {"model": R1, "messages": USER}
    completion = http.post("/v1/chat/completions", json=body)
    data = completion.json()
    assert completion.headers["content-type"] == "application/json"
    assert re.fullmatch(r"chatcmpl-\d{1,3}", data["id"])
    assert data["object"] == "chat.completion"
    assert data["system_fingerprint"] == "fp_ollama"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["reasoning"]
    assert data["usage"]["completion_tokens"] == 20
    streamed = http.post(
        "/v1/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert streamed.headers["content-type"] == "text/event-stream"
    events = streamed.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(e[len("data: ") :]) for e in events[:-2]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 20
    assert len({c["created"] for c in chunks}) == 1
    missing = http.post("/v1/chat/completions", json={"model": "ghost", "messages": USER})
    assert (missing.status_code, missing.json()) == (
        404,
        {
            "error": {
                "message": "model 'ghost' not found",
                "type": "not_found_error",
                "param": None,
                "code": None,
            }
        },
    )
    empty = http.post("/v1/chat/completions", json={"model": R1, "messages": []})
    assert empty.json()["error"]["message"] == "[] is too short - 'messages'"


def test_openai_models(fake: FakeOllama, http: httpx.Client) -> None:
    listed = http.get("/v1/models").json()
    assert listed["object"] == "list"
    assert {m["id"] for m in listed["data"]} == {R1, CODER}
    assert all(m["owned_by"] == "library" for m in listed["data"])
    one = http.get(f"/v1/models/{R1}").json()
    assert (one["id"], one["object"]) == (R1, "model")
    assert http.get("/v1/models/ghost").status_code == 404
    with FakeOllama() as empty, httpx.Client(base_url=empty.url) as other:
        assert other.get("/v1/models").json() == {"object": "list", "data": None}


# -- faults -----------------------------------------------------------------------------


def test_fault_reset_and_refuse(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(Fault("reset"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post("/api/chat", json=CHAT)
    fake.add_fault(Fault("refuse"))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.get("/api/tags")
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/api/tags")
    fake.accept_connections()
    assert httpx.get(fake.url + "/").status_code == 200


def test_fault_refuse_for_a_while_reopens(fake: FakeOllama) -> None:
    fake.add_fault(Fault("refuse", seconds=0.05))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(fake.url + "/")

    def reachable() -> bool:
        try:
            return httpx.get(fake.url + "/").status_code == 200
        except httpx.ConnectError:
            return False

    wait_until(reachable)


def test_fault_status_for_n_requests_and_path(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(Fault("status", status=500, times=2, path="/api/chat"))
    assert http.get("/api/tags").status_code == 200  # another path: untouched
    first = http.post("/api/chat", json=CHAT)
    assert first.status_code == 500
    assert "model runner has unexpectedly stopped" in first.json()["error"]
    assert http.post("/api/chat", json=CHAT).status_code == 500
    assert http.post("/api/chat", json=CHAT).status_code == 200
    fake.add_fault(Fault("status", status=503, path="/v1/*"))
    openai = http.post("/v1/chat/completions", json=CHAT)
    assert openai.status_code == 503
    assert openai.json()["error"]["type"] == "api_error"


def test_fault_error_line(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(Fault("error_line", after_chunks=2))
    streamed = http.post("/api/chat", json=CHAT)
    assert streamed.status_code == 200
    chunks = lines(streamed)
    assert len(chunks) == 3
    assert set(chunks[-1]) == {"error"}
    assert not any(c.get("done") for c in chunks)
    fake.add_fault(Fault("error_line", after_chunks=0, message="boom"))
    early = http.post("/api/chat", json=CHAT)  # nothing written yet: a real status
    assert (early.status_code, early.json(), early.headers["content-type"]) == (
        500,
        {"error": "boom"},
        "application/json",
    )
    fake.add_fault(Fault("error_line", after_chunks=2, message="boom"))
    assert http.post("/api/chat", json={**CHAT, "stream": False}).status_code == 500


def test_fault_close_without_done_and_drop(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(Fault("close_without_done", after_chunks=5))
    chunks = lines(http.post("/api/chat", json=CHAT))
    assert len(chunks) == 5
    assert not any(c["done"] for c in chunks)
    fake.add_fault(Fault("close_without_done", after_chunks=5))
    partial = http.post("/api/chat", json={**CHAT, "stream": False}).json()
    assert partial["done"] is False
    assert "done_reason" not in partial
    fake.add_fault(Fault("drop", after_chunks=3))
    with http.stream("POST", "/api/chat", json=CHAT) as response:
        received: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            received.extend(response.iter_lines())
    assert len(received) == 3


def test_fault_pull_error_after_progress(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(
        Fault("error_line", path="/api/pull", after_chunks=2, message="connection reset")
    )
    events = lines(http.post("/api/pull", json={"model": "deepseek-llm:7b"}))
    assert events[0] == {"status": "pulling manifest"}
    assert events[-1] == {"error": "connection reset"}


def test_fault_malformed_and_blank_lines(fake: FakeOllama, http: httpx.Client) -> None:
    fake.add_fault(Fault("blank_line", after_chunks=2))
    text = http.post("/api/chat", json=CHAT).text
    assert text.splitlines()[2] == ""
    assert text.count("\n") == 14
    fake.add_fault(Fault("malformed_line", after_chunks=1))
    raw = http.post("/api/chat", json=CHAT).text.splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw[1])
    assert json.loads(raw[-1])["done"] is True
    fake.add_fault(Fault("blank_line"))
    assert http.get("/api/tags").content == b""


def test_fault_stalls_release_on_an_event(fake: FakeOllama) -> None:
    fake.add_fault(Fault("stall_before"))  # seconds=0: until released
    with httpx.Client(base_url=fake.url, timeout=5) as http:
        results: list[int] = []

        def call() -> None:
            results.append(http.post("/api/chat", json={**CHAT, "stream": False}).status_code)

        import threading

        worker = threading.Thread(target=call)
        worker.start()
        wait_until(lambda: fake.faults.stalled() == 1)
        assert results == []
        assert fake.in_flight(CODER) == 0
        fake.release()
        worker.join(5)
        assert results == [200]

        fake.add_fault(Fault("stall_after", after_chunks=2))
        with http.stream("POST", "/api/chat", json=CHAT) as response:
            stream = response.iter_lines()
            assert [json.loads(next(stream))["done"] for _ in range(2)] == [False, False]
            wait_until(lambda: fake.faults.stalled() == 1)
            assert fake.in_flight(CODER) == 1
            fake.release()
            assert json.loads(list(stream)[-1])["done"] is True

        fake.add_fault(Fault("slow_first_token"))
        with http.stream("POST", "/api/chat", json=CHAT) as response:
            assert response.status_code == 200  # headers went out before any token
            wait_until(lambda: fake.faults.stalled() == 1)
            fake.release()
            assert json.loads(list(response.iter_lines())[-1])["done"] is True


def test_deepseek_only_faults_are_rejected(fake: FakeOllama) -> None:
    with pytest.raises(ValueError, match="DeepSeek"):
        fake.add_fault(Fault("keepalive", seconds=1))


# -- scheduling -------------------------------------------------------------------------


def test_cold_load_time_shows_in_load_duration() -> None:
    with (
        FakeOllama(models=[CODER], load_seconds=0.05) as fake,
        httpx.Client(base_url=fake.url) as http,
    ):
        cold = http.post("/api/chat", json={**CHAT, "stream": False}).json()
        warm = http.post("/api/chat", json={**CHAT, "stream": False}).json()
        assert cold["load_duration"] >= 50_000_000 > warm["load_duration"]
        # A different num_ctx is a different runner: the model loads again.
        reload = http.post(
            "/api/chat", json={**CHAT, "stream": False, "options": {"num_ctx": 2048}}
        )
        assert reload.json()["load_duration"] >= 50_000_000


def test_max_loaded_evicts_an_idle_model() -> None:
    with FakeOllama(models=[R1, CODER, "deepseek-llm:7b"], max_loaded=2) as fake:
        with httpx.Client(base_url=fake.url) as http:
            # The victim is the idle runner with the shortest keep-alive.
            http.post("/api/generate", json={"model": CODER, "keep_alive": "1m"})
            http.post("/api/generate", json={"model": R1})
            http.post("/api/generate", json={"model": "deepseek-llm:7b"})
        assert sorted(fake.loaded_models()) == sorted([R1, "deepseek-llm:7b"])


@pytest.mark.anyio
async def test_disconnect_frees_the_slot_and_the_queue() -> None:
    async with FakeOllama(models=[CODER], tokens_per_second=20, answer_tokens=40) as fake:
        async with httpx.AsyncClient(base_url=fake.url, timeout=5) as http:
            short = {**CHAT, "stream": False, "options": {"num_predict": 1}}
            async with http.stream("POST", "/api/chat", json=CHAT) as holder:
                # Keep the iterator: a dropped one is finalised and closes the response.
                holder_lines = holder.aiter_lines()
                first = await holder_lines.__anext__()  # holds the only slot
                assert json.loads(first)["done"] is False
                async with anyio.create_task_group() as group:
                    replies: list[int] = []

                    async def waiter() -> None:
                        replies.append((await http.post("/api/chat", json=short)).status_code)

                    group.start_soon(waiter)
                    leaver = anyio.CancelScope()

                    async def leaving() -> None:
                        with leaver:
                            await http.post("/api/chat", json=short)

                    group.start_soon(leaving)
                    await await_until(lambda: fake.in_flight(CODER) == 3)
                    assert replies == []  # waiting silently: no status, no bytes
                    leaver.cancel()  # a client that gives up while queued
                    await await_until(lambda: fake.in_flight(CODER) == 2)
                    assert fake.in_flight(CODER) == 2  # the holder is still streaming
                    await holder.aclose()  # the slot holder disconnects mid-stream
            assert replies == [200]
            assert fake.in_flight(CODER) == 0


@pytest.mark.anyio
async def test_leaving_the_pending_load_queue_makes_room() -> None:
    # The load outlasts the queueing and leaving below even on a loaded machine.
    async with FakeOllama(models=[CODER], load_seconds=1.5, max_queue=1) as fake:
        async with httpx.AsyncClient(base_url=fake.url, timeout=5) as http:
            body = {**CHAT, "stream": False}
            statuses: list[int] = []

            async def call() -> None:
                statuses.append((await http.post("/api/chat", json=body)).status_code)

            async with anyio.create_task_group() as group:
                group.start_soon(call)  # loading
                await await_until(lambda: fake.in_flight(CODER) == 1)
                queued = anyio.CancelScope()

                async def leaving() -> None:
                    with queued:
                        await http.post("/api/chat", json=body)

                group.start_soon(leaving)  # fills the one-place queue...
                await await_until(lambda: fake.in_flight(CODER) == 2)
                queued.cancel()  # ...and gives up
                await await_until(lambda: fake.in_flight(CODER) == 1)
                group.start_soon(call)  # the freed place: queued, not a 503
                await await_until(lambda: fake.in_flight(CODER) == 2)
            assert statuses == [200, 200]


@pytest.mark.anyio
async def test_slots_let_requests_run_in_parallel() -> None:
    async with FakeOllama(models=[CODER], slots=2, tokens_per_second=100, answer_tokens=10) as fake:
        async with httpx.AsyncClient(base_url=fake.url, timeout=5) as http:
            await http.post("/api/generate", json={"model": CODER})
            started = time.monotonic()

            async def one() -> None:
                assert (await http.post("/api/chat", json={**CHAT, "stream": False})).is_success

            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(one)
            assert time.monotonic() - started < 0.38  # two rounds of 100 ms, not four


# -- recording and control --------------------------------------------------------------


def test_recording_sees_what_reached_the_double(fake: FakeOllama, http: httpx.Client) -> None:
    assert fake.requests == []
    http.post("/api/chat", json=CHAT, headers={"X-Trace": "abc"})
    (recorded,) = fake.recorded("/api/chat", "POST")
    assert recorded.headers["x-trace"] == "abc"
    assert recorded.json == CHAT
    http.get("/_dsollama/requests")
    assert [r.path for r in fake.requests] == ["/api/chat"]  # control routes are not recorded
    fake.clear_requests()
    assert fake.requests == []


def test_control_routes(fake: FakeOllama, http: httpx.Client) -> None:
    queued = http.post("/_dsollama/faults", json=[{"kind": "status", "status": 503}])
    assert queued.json()["faults"][0]["kind"] == "status"
    assert http.post("/api/chat", json=CHAT).json() == {"error": BUSY}
    http.post("/_dsollama/faults", json={"kind": "status", "status": 500})
    assert http.delete("/_dsollama/faults").json() == {"faults": []}
    assert http.post("/api/chat", json=CHAT).status_code == 200
    config = http.post("/_dsollama/config", json={"slots": 2, "tokens_per_second": 50}).json()
    assert (config["slots"], config["tokens_per_second"], fake.slots) == (2, 50.0, 2)
    assert http.post("/_dsollama/config", json={"nope": 1}).status_code == 400
    requests = http.get("/_dsollama/requests", params={"path": "/api/chat"}).json()["requests"]
    assert len(requests) == 2
    assert requests[0]["json"] == CHAT
    assert http.delete("/_dsollama/requests").json() == {"requests": []}
    state = http.get("/_dsollama/state").json()
    assert set(state["installed"]) == {R1, CODER}
    assert state["loaded"] == [CODER]
    http.post("/_dsollama/faults", json={"kind": "stall_before", "path": "/api/tags"})
    assert http.post("/_dsollama/release").json() == {"released": True}


def test_control_refuse_for_seconds(fake: FakeOllama) -> None:
    answer = httpx.post(fake.url + "/_dsollama/refuse", json={"seconds": 0.5})
    assert answer.json()["refused"] is True
    with pytest.raises(httpx.ConnectError):
        httpx.get(fake.url + "/")

    def reachable() -> bool:
        try:
            return httpx.get(fake.url + "/").status_code == 200
        except httpx.ConnectError:
            return False

    wait_until(reachable)


def test_foreign_host_header_is_forbidden(http: httpx.Client) -> None:
    forbidden = http.get("/api/tags", headers={"Host": "evil.example.com"})
    assert (forbidden.status_code, forbidden.content) == (403, b"")
    for allowed in ("localhost:11434", "[::1]:11434", "10.0.0.5", "box.local"):
        assert http.get("/api/tags", headers={"Host": allowed}).status_code == 200


def test_runs_as_a_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "dsollama.testing", "ollama", "--port", "0", "--model", CODER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        reply = httpx.post(url + "/api/chat", json={**CHAT, "stream": False}, timeout=10)
        assert reply.json()["done"] is True
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
