"""`dsollama serve`'s other doors: provisioning (who may delete models), slow clients and
the connection limit, blob paths, and what reaches its log lines."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from typing import Any

import pytest
from click.testing import CliRunner

from dsollama.cli import cli

from .conftest import Stack
from .serve_harness import MODEL, USER, RawConnection, closed_within, serving

pytestmark = pytest.mark.anyio

TOKEN = "chat-token-value"
ADMIN = "admin-token-value"
WIDE = {"serve_host": "0.0.0.0"}  # settings of a server listening beyond loopback
# Deadlines of these tests, and how much later than a deadline a close may be seen on a
# loaded machine.
BOUND = 0.5
MARGIN = 5.0


def _sock(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _json_post(
    conn: RawConnection, path: str, body: dict[str, Any], method: str = "POST", **headers: str
) -> Any:
    fields = {"content-type": "application/json", **headers}
    return conn.request(method, path, json.dumps(body).encode(), fields)


# -- provisioning ----------------------------------------------------------------------------


async def test_provisioning_is_off_by_default_beyond_loopback(stack: Stack) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    with serving(stack, token=TOKEN, **WIDE) as served, RawConnection(served.url) as conn:
        for method, path, body in (
            ("POST", "/api/pull", {"model": "deepseek-r1:1.5b"}),
            ("POST", "/api/create", {"model": "x", "from": MODEL}),
            ("POST", "/api/copy", {"source": MODEL, "destination": "y"}),
            ("DELETE", "/api/delete", {"model": MODEL}),
            ("POST", "/api/push", {"model": "me/x"}),
            ("POST", "/api/blobs/sha256:" + "a" * 64, {}),
            ("HEAD", "/api/blobs/sha256:" + "a" * 64, {}),
        ):
            raw = json.dumps(body).encode() if method != "HEAD" else b""
            refused = conn.request(method, path, raw, auth)
            assert refused.status == 403, path
            if method != "HEAD":
                message = refused.json()["error"]
                assert "--allow-admin" in message
                assert "--admin-token" in message
        # Model calls and read-only routes are unaffected.
        assert (
            _json_post(
                conn, "/api/chat", {"model": MODEL, "messages": USER, "stream": False}, **auth
            ).status
            == 200
        )
        assert _json_post(conn, "/api/show", {"model": MODEL}, **auth).status == 200
        assert conn.reusable
    assert MODEL in stack.ollama.installed_models()
    assert [r.path for r in stack.ollama.requests if r.path in ("/api/pull", "/api/delete")] == []
    assert stack.ollama.recorded("/api/blobs/*") == []


async def test_allow_admin_opens_provisioning_beyond_loopback(stack: Stack) -> None:
    with serving(stack, token=TOKEN, app_options={"allow_admin": True}, **WIDE) as served:
        with RawConnection(served.url) as conn:
            auth = {"authorization": f"Bearer {TOKEN}"}
            copied = _json_post(conn, "/api/copy", {"source": MODEL, "destination": "y"}, **auth)
            assert copied.status == 200
    assert "y:latest" in stack.ollama.installed_models()


async def test_an_admin_token_is_needed_to_provision_and_works_for_chat_too(
    stack: Stack,
) -> None:
    options = {"admin_token": ADMIN}
    with serving(stack, token=TOKEN, app_options=options, **WIDE) as served:
        with RawConnection(served.url) as conn:
            body = {"model": MODEL}
            chat_token = _json_post(
                conn, "/api/delete", body, "DELETE", authorization=f"Bearer {TOKEN}"
            )
            assert chat_token.status == 403
            assert "admin token" in chat_token.json()["error"]
            assert MODEL in stack.ollama.installed_models()
            chat = {"model": MODEL, "messages": USER, "stream": False}
            assert (
                _json_post(conn, "/api/chat", chat, authorization=f"Bearer {ADMIN}").status == 200
            )
            deleted = _json_post(
                conn, "/api/delete", body, "DELETE", authorization=f"Bearer {ADMIN}"
            )
            assert deleted.status == 200
        with RawConnection(served.url) as anonymous:
            missing = _json_post(
                anonymous, "/api/delete", {"model": "deepseek-coder:6.7b"}, "DELETE"
            )
            assert missing.status == 401  # not even the server's token
            assert not anonymous.reusable  # a refused peer's connection ends
    assert MODEL not in stack.ollama.installed_models()
    # Neither token reaches the daemon.
    assert all("authorization" not in r.headers for r in stack.ollama.requests)


def _banner(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> Any:
    from dsollama.serve.server import Server

    monkeypatch.setattr(Server, "run", lambda self, sockets=None: None)
    return CliRunner().invoke(cli, ["serve", "--port", "0", *args], env=env)


def test_the_banner_says_who_may_provision(monkeypatch: pytest.MonkeyPatch) -> None:
    local = _banner(monkeypatch)
    assert local.exit_code == 0, local.stderr
    assert "admin       pull, create, copy, delete and push allowed" in local.stdout
    wide = _banner(monkeypatch, "--host", "0.0.0.0", DSOLLAMA_SERVE_TOKEN=TOKEN)
    assert "admin       off: pull, create, copy, delete and push are refused" in wide.stdout
    assert "--allow-admin" in wide.stdout
    opened = _banner(monkeypatch, "--host", "0.0.0.0", "--allow-admin", DSOLLAMA_SERVE_TOKEN=TOKEN)
    assert "allowed to every client" in opened.stdout
    tokened = _banner(
        monkeypatch,
        "--host",
        "0.0.0.0",
        DSOLLAMA_SERVE_TOKEN=TOKEN,
        DSOLLAMA_SERVE_ADMIN_TOKEN=ADMIN,
    )
    assert "need the admin token" in tokened.stdout
    assert ADMIN not in tokened.stdout + tokened.stderr
    assert "limits      headers within 5s, bodies within 10s, 1000 connections" in local.stdout
    both = _banner(monkeypatch, "--allow-admin", "--admin-token", ADMIN)
    assert both.exit_code == 2
    assert "contradict" in both.stderr


def test_the_admin_token_setting_is_redacted_in_config() -> None:
    result = CliRunner().invoke(cli, ["config"], env={"DSOLLAMA_SERVE_ADMIN_TOKEN": ADMIN})
    assert result.exit_code == 0, result.stderr
    assert "serve_admin_token" in result.stdout
    assert ADMIN not in result.stdout


# -- blob paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/blobs/%2e%2e", 400),
        ("/api/blobs/sha256:" + "a" * 64 + "%3Fx=1", 400),
        ("/api/blobs/sha256:" + "a" * 64 + "%23frag", 400),
        ("/api/blobs/sha256:" + "a" * 63, 400),
        ("/api/blobs/md5:" + "a" * 32, 400),
        ("/api/blobs/..%2fapi%2fdelete", 404),  # decoded, it is another route: none
    ],
)
async def test_blob_paths_must_be_digests(stack: Stack, path: str, status: int) -> None:
    with serving(stack) as served, RawConnection(served.url) as conn:
        for method in ("POST", "HEAD"):
            answer = conn.request(method, path, b"GGUF")
            assert answer.status == status
            if method == "POST" and status == 400:
                assert answer.json() == {"error": "invalid digest format"}
    assert stack.ollama.requests == []


async def test_a_blob_url_is_built_from_the_digest_alone(stack: Stack) -> None:
    content = b"GGUF" + bytes(range(256))
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    with serving(stack) as served, RawConnection(served.url) as conn:
        stored = conn.request("POST", f"/api/blobs/{digest}?x=1", content)
        assert stored.status == 201
    assert [r.path for r in stack.ollama.recorded("/api/blobs/*")] == [f"/api/blobs/{digest}"]


# -- slow clients ----------------------------------------------------------------------------

FAST = {"header_timeout": BOUND, "body_timeout": BOUND}


async def test_a_half_sent_request_line_is_closed_within_the_bound(stack: Stack) -> None:
    with serving(stack, token=TOKEN, server_options=FAST) as served:
        with RawConnection(served.url) as ready:
            assert ready.request("GET", "/healthz").status == 200  # the server is up
        with _sock(served.url) as half, _sock(served.url) as silent:
            half.sendall(b"GET /api/ta")
            started = time.monotonic()
            closed, said = closed_within(half, BOUND + MARGIN)
            assert closed
            assert said.startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - started >= BOUND * 0.8  # the bound, not a refusal
            assert closed_within(silent, BOUND + MARGIN) == (True, b"")


def _send_paced(sock: socket.socket, data: bytes, size: int, pause: float, give_up: float) -> bool:
    """Send ``data`` ``size`` bytes at a time, ``pause`` seconds apart (a slow peer's pace);
    False as soon as the server has closed the connection or answered, True if all went."""
    started = time.monotonic()
    sock.settimeout(pause)
    for i in range(0, len(data), size):
        try:
            sock.sendall(data[i : i + size])
            if i + size >= len(data):
                return True
            sock.recv(65536, socket.MSG_PEEK)
            return False  # an answer (or the close) came before the request was whole
        except TimeoutError:
            pass  # nothing from the server during this pause
        except OSError:
            return False
        if time.monotonic() - started > give_up:
            break
    return True


async def test_headers_sent_byte_by_byte_do_not_extend_the_bound(stack: Stack) -> None:
    with serving(stack, token=TOKEN, server_options={**FAST, "header_timeout": 1.0}) as served:
        with _sock(served.url) as sock:
            request = b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 500
            started = time.monotonic()
            assert not _send_paced(sock, request, 1, 0.02, give_up=1.0 + MARGIN)
            assert time.monotonic() - started < 1.0 + MARGIN
            closed, said = closed_within(sock, MARGIN)
            assert closed
            assert said.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    ("path", "dialect"), [("/api/chat", "ollama"), ("/v1/chat/completions", "openai")]
)
async def test_a_half_sent_body_gets_408_in_the_route_dialect(
    stack: Stack, path: str, dialect: str
) -> None:
    with serving(stack, token=TOKEN, server_options=FAST) as served, _sock(served.url) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"model": '
        )
        closed, said = closed_within(sock, BOUND + MARGIN)
    assert closed
    head, _, body = said.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head.lower()
    error = json.loads(body)["error"]
    message = error["message"] if dialect == "openai" else error
    assert "did not arrive within 0.5s" in message
    assert "--body-timeout" in message
    assert stack.ollama.recorded("/api/chat") == []


async def test_a_peer_without_the_token_cannot_hold_a_connection(stack: Stack) -> None:
    # Long deadlines: the close must come from the refusal, not from a timer.
    options = {"header_timeout": 30.0, "body_timeout": 30.0}
    with serving(stack, token=TOKEN, server_options=options) as served, _sock(served.url) as sock:
        sock.sendall(
            b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"{" * 10
        )
        started = time.monotonic()
        closed, said = closed_within(sock, MARGIN)
        assert closed
        assert said.startswith(b"HTTP/1.1 401 ")
        assert time.monotonic() - started < MARGIN


async def test_a_body_dripped_byte_by_byte_is_cut_at_the_bound(stack: Stack) -> None:
    with serving(stack, token=TOKEN, server_options={**FAST, "body_timeout": 1.0}) as served:
        with _sock(served.url) as sock:
            sock.sendall(
                f"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Length: 1000\r\n\r\n".encode()
            )
            started = time.monotonic()
            assert not _send_paced(sock, b" " * 1000, 1, 0.05, give_up=1.0 + MARGIN)
            assert time.monotonic() - started < 1.0 + MARGIN
            closed, said = closed_within(sock, MARGIN)
            assert closed
            assert said.startswith(b"HTTP/1.1 408 ")


async def test_a_steady_upload_may_take_longer_than_the_bound_but_not_stall(stack: Stack) -> None:
    content = b"GGUF" + bytes(range(256)) * 40
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    head = (
        f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {len(content)}\r\n\r\n"
    ).encode()
    with serving(stack, server_options=FAST) as served:
        with _sock(served.url) as steady:
            steady.sendall(head)
            started = time.monotonic()
            # 11 pieces 0.2 s apart: about 2 s in all, four times the bound.
            assert _send_paced(steady, content, 1024, 0.2, give_up=60)
            assert time.monotonic() - started > BOUND * 3
            steady.settimeout(MARGIN)
            assert steady.recv(65536).startswith(b"HTTP/1.1 201 ")
        with _sock(served.url) as stalled:
            stalled.sendall(head + content[:100])
            closed, said = closed_within(stalled, BOUND + MARGIN)
            assert closed
            assert b"HTTP/1.1 201" not in said
    assert stack.ollama.recorded("/api/blobs/*")[0].body == content


async def test_past_the_connection_limit_a_request_gets_503(stack: Stack) -> None:
    options = {"max_connections": 2, "header_timeout": 30.0}
    with (
        serving(stack, server_options=options) as served,
        RawConnection(served.url) as first,
        RawConnection(served.url) as second,
    ):
        assert first.request("GET", "/healthz").status == 200
        assert second.request("GET", "/healthz").status == 200
        with RawConnection(served.url) as third:
            refused = third.request("GET", "/healthz")
            assert refused.status == 503
            assert not third.reusable  # closed: it does not count against the limit
        first.close()
        # The server sees the close a moment later: retry until the slot is free.
        deadline = time.monotonic() + MARGIN
        while True:
            with RawConnection(served.url) as fourth:
                if fourth.request("GET", "/healthz").status == 200:
                    break
            assert time.monotonic() < deadline
        assert second.request("GET", "/healthz").status == 200


# -- log lines -------------------------------------------------------------------------------


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_request_text_in_log_lines_is_escaped_and_bounded(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dsollama")
    forged = "evil\r\nINFO:     chat deepseek-r1:8b -> local\x1b]0;pwned\x07\u202e"
    with serving(stack, policy="local-only") as served, RawConnection(served.url) as conn:
        for model in (forged, "m" * 1_000_000):
            body = {"model": model, "messages": USER, "stream": False}
            assert _json_post(conn, "/api/chat", body).status in (400, 404)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("dsollama")]
    escaped = "evil\\r\\nINFO:     chat deepseek-r1:8b -> local\\x1b]0;pwned\\x07\\u202e"
    assert any(escaped in line for line in lines), lines
    long_name = [line for line in lines if "mmmmmmmmmm" in line]
    assert all(len(line) < 2000 and "…[+" in line for line in long_name)  # not 1 MB
    for char in ("\r", "\n", "\x1b", "\x07", "\u202e"):
        assert not any(char in line for line in lines)


def test_uvicorn_log_lines_are_escaped_too() -> None:
    from dsollama.serve.server import make_server

    make_server(object(), log_level="info")  # sets up uvicorn's loggers, and ours on them
    lines = _Lines()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(lines)
    try:
        try:
            raise ValueError("bad value \x1b]0;pwned\x07")
        except ValueError:
            logger.exception("Exception in ASGI application\n")
        logger.warning("client %s said %s", "1.2.3.4", "\r\nforged")
    finally:
        logger.removeHandler(lines)
    text = "\n".join(lines.lines)
    assert "ValueError: bad value \\x1b]0;pwned\\x07" in text
    assert "client 1.2.3.4 said \\r\\nforged" in text
    assert "\x1b" not in text


def test_the_command_and_the_library_share_the_bounds() -> None:
    # The CLI cannot import the serve modules to read them (--help must stay fast).
    from dsollama.cli.serve import serve
    from dsollama.serve.server import DEFAULT_MAX_CONNECTIONS
    from dsollama.serve.slow_clients import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT

    defaults = {p.name: p.default for p in serve.params}
    assert defaults["header_timeout"] == DEFAULT_HEADER_TIMEOUT
    assert defaults["body_timeout"] == DEFAULT_BODY_TIMEOUT
    assert defaults["max_connections"] == DEFAULT_MAX_CONNECTIONS
