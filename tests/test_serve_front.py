"""The front door: one layer for CORS, the guards and the way in, the same for the model
routes it calls directly as for the routes Starlette's router answers."""

from __future__ import annotations

import pytest

from dsollama.serve.admin import admin_policy
from dsollama.serve.front import _with_vary_origin
from dsollama.serve.security import Guard

from .conftest import Stack
from .serve_harness import MODEL, USER, http, serving

pytestmark = pytest.mark.anyio

PAGE = "http://localhost:3000"
CORS_HEADERS = ("access-control-allow-origin", "access-control-expose-headers", "vary")


async def test_model_routes_carry_the_same_cors_headers_as_the_others(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        chat = {"model": MODEL, "messages": USER, "stream": False}
        for origin in ({"Origin": PAGE}, {}):
            direct = await http("POST", f"{url}/api/chat", json=chat, headers=origin)
            openai = await http("POST", f"{url}/v1/chat/completions", json=chat, headers=origin)
            routed = await http("GET", f"{url}/api/tags", headers=origin)
            assert direct.status_code == openai.status_code == routed.status_code == 200
            expected = {h: routed.headers.get(h) for h in CORS_HEADERS}
            assert {h: direct.headers.get(h) for h in CORS_HEADERS} == expected
            assert {h: openai.headers.get(h) for h in CORS_HEADERS} == expected
        # Caches must know the answer differs by Origin; a page gets to read who served.
        assert direct.headers["vary"] == "Origin"
        with_origin = await http("POST", f"{url}/api/chat", json=chat, headers={"Origin": PAGE})
        assert with_origin.headers["access-control-allow-origin"] == PAGE
        assert "x-dsollama-route" in with_origin.headers["access-control-expose-headers"]


async def test_preflights_and_refusals_come_before_the_route(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await http("OPTIONS", f"{url}/api/chat", headers={"Origin": PAGE, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == PAGE
        foreign = await http(
            "OPTIONS", f"{url}/api/chat", headers={"Origin": "https://evil.example", **preflight}
        )
        assert (foreign.status_code, foreign.text) == (400, "Disallowed CORS origin")
        refused = await http(
            "POST",
            f"{url}/v1/chat/completions",
            json={"model": MODEL, "messages": USER},
            headers={"Host": "evil.example.com"},
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "permission_error"  # the route's dialect
        assert refused.headers["connection"] == "close"
        assert stack.ollama.recorded("/api/chat") == []


async def test_model_route_errors_keep_their_dialect(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        bad = await http("POST", f"{url}/api/chat", content=b"{nope")
        assert bad.status_code == 400
        assert "not valid JSON" in bad.json()["error"]
        bad = await http("POST", f"{url}/v1/chat/completions", content=b"[1]")
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == "invalid_request_error"
        # A trailing slash is not the route: the router answers it as before.
        slash = await http("POST", f"{url}/api/chat/", json={"model": MODEL, "messages": USER})
        assert slash.status_code in (307, 404)


def test_vary_origin_joins_what_the_response_had() -> None:
    assert _with_vary_origin([(b"content-type", b"x")]) == [
        (b"content-type", b"x"),
        (b"vary", b"Origin"),
    ]
    joined = _with_vary_origin([(b"vary", b"Accept"), (b"a", b"1"), (b"Vary", b"Cookie")])
    assert joined == [(b"vary", b"Accept, Cookie, Origin"), (b"a", b"1")]


def test_guard_decisions_are_remembered_within_a_bound() -> None:
    guard = Guard()
    for i in range(2000):  # a peer making up Host names cannot grow the memory
        refusal = guard.refusal("/api/chat", "POST", f"h{i}.example.com".encode(), None, None)
        assert refusal is not None
        assert refusal.error.status == 403
    assert len(guard._hosts) <= 256
    assert guard.refusal("/api/chat", "POST", b"127.0.0.1:11435", None, None) is None
    assert guard.refusal("/api/chat", "POST", b"localhost", PAGE.encode(), None) is None
    origin = guard.refusal("/api/chat", "POST", b"localhost", b"https://evil.example", None)
    assert origin is not None
    assert "Origin" in origin.error.message


def test_tokens_and_the_admin_policy() -> None:
    guard = Guard(["t0k", "adm"])
    assert guard.refusal("/healthz", "GET", None, None, None) is None
    assert guard.refusal("/api/chat", "OPTIONS", None, None, None) is None
    missing = guard.refusal("/api/chat", "POST", b"anything", None, None)
    assert missing is not None
    assert missing.www_authenticate
    assert missing.close
    assert guard.refusal("/api/chat", "POST", None, None, b"Bearer adm") is None
    admin = admin_policy(allow_admin=None, admin_token="adm", host="0.0.0.0")
    assert admin.refusal("/api/chat", "POST", b"Bearer t0k") is None  # not a provisioning route
    wrong = admin.refusal("/api/pull", "POST", b"Bearer t0k")
    assert wrong is not None
    assert wrong.error.status == 403
    assert not wrong.close
    assert admin.refusal("/api/pull", "POST", b"Bearer adm") is None
    off = admin_policy(allow_admin=False, admin_token=None, host="127.0.0.1")
    refused = off.refusal("/api/blobs/sha256:00", "POST", None)
    assert refused is not None
    assert refused.error.code == "admin_disabled"
