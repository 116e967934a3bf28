"""Bad input never gets a 500 from `dsollama serve`: deep nesting, non-finite numbers, lone
surrogates, images that are not base64, HEAD with a body; and the connection stays usable.
A property test posts generated JSON to every route."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsollama._calllog import CallLog, recent_calls
from dsollama.serve.errors import ApiError
from dsollama.serve.safe_json import MAX_DEPTH, check_values, nesting_depth, too_deep

from .conftest import Stack
from .serve_harness import MODEL, USER, RawConnection, serving

pytestmark = pytest.mark.anyio

CHAT = {"model": MODEL, "messages": USER, "stream": False}


def post(conn: RawConnection, path: str, body: bytes | dict[str, Any]) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return conn.request("POST", path, raw, {"content-type": "application/json"})


# -- the pure checks ---------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


# Strings full of what could fool a scan of the raw text: quotes, backslashes, brackets.
_TRICKY = st.text(alphabet='[]{}"\\ab\n/u', max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=40,
)


@given(_JSON, st.sampled_from([None, 1]))
def test_nesting_depth_is_exact_on_the_raw_text(value: Any, indent: int | None) -> None:
    raw = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    assert nesting_depth(raw) == _depth(value)
    assert too_deep(raw, 3) == (_depth(value) > 3)


def test_depth_is_measured_before_decoding() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000  # json.loads raises RecursionError on this
    assert too_deep(deep)
    assert not too_deep(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert too_deep(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    # Brackets inside strings, escaped quotes and backslashes do not count.
    assert not too_deep(json.dumps({"a": '\\"' + "[" * 500}).encode())


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"options": {"temperature": float("nan")}}, "options.temperature", "NaN"),
        ({"keep_alive": float("inf")}, "keep_alive", "Infinity"),
        (
            {"messages": [{"content": "ok"}, {"content": "\ud800"}]},
            "messages[1].content",
            "surrogate",
        ),
        ({"tools": [{"k\udfff": 1}]}, "tools[0]", "key"),
    ],
)
def test_values_nothing_can_reencode_are_named(data: Any, field: str, problem: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_values(data)
    assert caught.value.status == 400
    assert f"invalid field '{field}'" in caught.value.message
    assert problem in caught.value.message
    assert caught.value.param == field.split(".")[0].split("[")[0]


# -- through the server ------------------------------------------------------------------


async def test_deep_nesting_is_a_400_and_the_connection_stays_usable(stack: Stack) -> None:
    with serving(stack) as served, RawConnection(served.url) as conn:
        deep = b'{"model": "m", "options": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        for path in ("/api/chat", "/v1/chat/completions", "/api/pull"):
            answer = post(conn, path, deep)
            assert answer.status == 400, path
            assert "levels deep" in answer.body.decode()
            assert conn.reusable
        assert post(conn, "/api/chat", CHAT).status == 200  # same connection


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/chat", b'{"options": {"temperature": NaN}}', "options.temperature"),
        ("/api/chat", b'{"keep_alive": Infinity}', "keep_alive"),
        ("/api/generate", b'{"options": {"num_ctx": -Infinity}}', "options.num_ctx"),
        ("/api/generate", b'{"options": {"top_p": 1e999}}', "options.top_p"),
        ("/v1/chat/completions", b'{"temperature": NaN}', "temperature"),
        ("/v1/completions", b'{"keep_alive": Infinity}', "keep_alive"),
    ],
)
async def test_non_finite_numbers_are_a_400_naming_the_field(
    stack: Stack, path: str, body: bytes, field: str
) -> None:
    base = {"model": MODEL, "messages": USER, "prompt": "hi", "stream": False}
    # Splice the literal (json.dumps cannot write it) into a valid request.
    raw = json.dumps(base).encode()[:-1] + b", " + body[1:]
    with serving(stack) as served, RawConnection(served.url) as conn:
        answer = post(conn, path, raw)
        assert answer.status == 400
        text = answer.body.decode()
        assert f"invalid field '{field}'" in text
        assert "finite number" in text
        assert conn.reusable
    assert stack.ollama.recorded("/api/chat") == stack.ollama.recorded("/api/generate") == []


async def test_lone_surrogates_are_a_400_and_the_request_log_loses_nothing(
    stack: Stack, tmp_path: Path
) -> None:
    log = CallLog(tmp_path / "logs.db", log_content=True)
    lone = b'{"model": "deepseek-r1:8b", "stream": false, "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    with serving(stack, sinks=(log,)) as served, RawConnection(served.url) as conn:
        answer = post(conn, "/api/chat", lone)
        assert answer.status == 400
        assert "invalid field 'messages[0].content'" in answer.json()["error"]
        assert "surrogate" in answer.json()["error"]
        openai = post(conn, "/v1/chat/completions", lone)
        assert openai.status == 400
        assert openai.json()["error"]["param"] == "messages"
        # A valid pair is text: it passes.
        pair = lone.replace(b"\\ud800", b"\\ud83d\\ude00")
        assert post(conn, "/api/chat", pair).status == 200
        assert conn.reusable
    assert log.flush()
    assert log.dropped == 0, log.drop_reasons
    calls = recent_calls(tmp_path / "logs.db")
    assert len(calls) == 1
    assert calls[0].prompt == "hi 😀"
    log.close()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/generate", {"prompt": "hi", "images": ["not base64!"]}, "images[0]"),
        (
            "/api/chat",
            {"messages": [{"role": "user", "content": "?", "images": ["abc"]}]},
            "messages[0].images[0]",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "data:text/plain,hello"}}
                        ],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
    ],
)
async def test_images_that_are_not_base64_are_a_400(
    stack: Stack, path: str, body: dict[str, Any], field: str
) -> None:
    with serving(stack) as served, RawConnection(served.url) as conn:
        answer = post(conn, path, {"model": MODEL, "stream": False, **body})
        assert answer.status == 400
        assert f"invalid field '{field}'" in answer.body.decode()
        assert "base64" in answer.body.decode()
        assert conn.reusable


async def test_an_image_naming_a_file_is_never_read_from_disk(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ollama client reads a string image that names an existing file. "abcd" is valid
    # base64 too: it must reach the daemon as those 3 bytes, not as the file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "abcd").write_bytes(b"the contents of a private file")
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    with serving(stack, policy="local-only") as served, RawConnection(served.url) as conn:
        named = post(conn, "/api/generate", {"model": MODEL, "prompt": "?", "images": ["abcd"]})
        assert named.status == 200
        sent = stack.ollama.recorded("/api/generate")[-1].json
        assert sent["images"] == ["abcd"]
        assert base64.b64decode(sent["images"][0]) == base64.b64decode("abcd")
        path = post(conn, "/api/generate", {"model": MODEL, "prompt": "?", "images": [str(secret)]})
        assert path.status == 400
        url = {"url": f"data:image/png;base64,{secret}"}
        message = {"role": "user", "content": [{"type": "image_url", "image_url": url}]}
        openai = post(conn, "/v1/chat/completions", {"model": MODEL, "messages": [message]})
        assert openai.status == 400
    assert not any(b"private" in r.body for r in stack.ollama.requests)


async def test_head_on_a_blob_with_a_body_is_answered_and_the_connection_kept(
    stack: Stack,
) -> None:
    digest = "sha256:" + "a" * 64
    with serving(stack) as served, RawConnection(served.url) as conn:
        answer = conn.request("HEAD", f"/api/blobs/{digest}", b"0123456789")
        assert answer.status == 404  # the daemon has no such blob
        assert answer.body == b""
        assert conn.reusable
        head = stack.ollama.recorded("/api/blobs/*")[-1]
        assert head.method == "HEAD"
        assert "content-length" not in head.headers or head.headers["content-length"] == "0"
        assert conn.request("GET", "/healthz").status == 200


# -- every route, generated bodies ----------------------------------------------------------

_POST_ROUTES = (
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/api/pull",
    "/api/create",
    "/api/copy",
    "/api/push",
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/generate",
)
# codec=None admits lone surrogates, but rarely: name a few outright.
_ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=12) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x1b[2J", "\u202e", "deepseek-r1:8b", "json", "user", "high"]
)
_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _ANY_TEXT
)
_VALUE = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ANY_TEXT, inner, max_size=3),
    max_leaves=12,
)
_FIELDS = st.sampled_from(
    [
        "model",
        "messages",
        "prompt",
        "stream",
        "options",
        "keep_alive",
        "think",
        "format",
        "images",
        "tools",
        "temperature",
        "max_tokens",
        "input",
        "input_text",
        "response_format",
        "reasoning_effort",
        "context",
        "n",
    ]
)
_BODY = st.dictionaries(_FIELDS, _VALUE, max_size=6).map(
    lambda d: {**d, "model": d.get("model", MODEL)}
) | _VALUE.map(lambda v: {"model": MODEL, "messages": v})


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


async def test_generated_bodies_get_2xx_or_4xx_and_the_connection_survives(stack: Stack) -> None:
    stack.ollama.configure(answer_tokens=3, thinking_tokens=1)
    watcher = _Tracebacks()
    loggers = [logging.getLogger(n) for n in ("dsollama", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(watcher)
    try:
        # Provisioning off: the daemon's own 500s (a pull of an unknown model) are not ours.
        with serving(stack, policy="local-only", app_options={"allow_admin": False}) as served:

            @settings(
                max_examples=150,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            )
            @given(path=st.sampled_from(_POST_ROUTES), body=_BODY)
            def post_one(path: str, body: dict[str, Any]) -> None:
                raw = json.dumps(body, allow_nan=True).encode()
                watcher.records.clear()
                with RawConnection(served.url) as conn:
                    answer = post(conn, path, raw)
                    assert 200 <= answer.status < 500, (path, raw[:300], answer.body[:300])
                    assert conn.reusable, (path, raw[:300])
                    assert conn.request("GET", "/healthz").status == 200  # same connection
                problems = [r.getMessage() for r in watcher.records]
                assert not problems, (path, raw[:300], problems)

            post_one()
    finally:
        for logger in loggers:
            logger.removeHandler(watcher)
