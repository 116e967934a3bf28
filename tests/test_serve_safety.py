"""Who may use `dsollama serve`, and what it refuses: binding, token, Host and Origin,
body size, unknown routes, and the optional extra."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest
from click.testing import CliRunner

from dsollama._exceptions import ConfigError
from dsollama.cli import cli
from dsollama.serve.security import check_bind

from .conftest import Stack
from .serve_harness import MODEL, USER, http, serving

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-value"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myhost.lan"])
def test_any_other_address_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind(host, None)
    assert "--token" in caught.value.one_line()
    assert "DSOLLAMA_SERVE_TOKEN" in caught.value.one_line()
    check_bind(host, TOKEN)


def test_the_command_refuses_to_listen_widely_without_a_token() -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
    assert "--token" in result.stderr


def test_the_command_prints_where_it_listens_and_what_it_fronts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dsollama.serve.server import Server

    ran: list[Any] = []
    monkeypatch.setattr(
        Server, "run", lambda self, sockets=None: ran.append(sockets[0].getsockname())
    )
    env = {"DSOLLAMA_SERVE_TOKEN": TOKEN, "OLLAMA_HOST": "127.0.0.1:11999"}
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0"], env=env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("http://127.0.0.1:")  # bare URL first, usable as is
    assert f"{lines[0]}/v1" in result.stdout
    assert "http://127.0.0.1:11999" in result.stdout
    assert "bearer token required" in result.stdout
    assert "DEEPSEEK_API_KEY" in result.stdout  # how to enable fallback
    assert TOKEN not in result.stdout + result.stderr
    assert len(ran) == 1
    assert ran[0][0] == "0.0.0.0"
    assert "dsollama serve stopped." in result.stderr


def test_without_the_extra_the_command_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "install it with pip install 'dsollama[serve]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_and_import_load_no_asgi_stack() -> None:
    code = (
        "import sys, dsollama; dsollama.AsyncClient; from dsollama.cli import cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


async def test_with_a_token_every_route_but_healthz_needs_it(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serving(stack, token=TOKEN) as served:
        url = served.url
        assert (await http("GET", f"{url}/healthz")).status_code == 200
        for path in ("/", "/api/tags", "/v1/models", "/metrics", "/readyz"):
            response = await http("GET", f"{url}{path}")
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = await http("GET", f"{url}/api/tags", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert "wrong bearer token" in wrong.json()["error"]

        with ollama.Client(host=url) as anonymous, pytest.raises(ollama.ResponseError) as caught:
            anonymous.chat(MODEL, messages=USER)
        assert caught.value.status_code == 401
        assert "Authorization: Bearer" in caught.value.error
        with ollama.Client(host=url, headers=served.auth()) as client:
            assert client.chat(MODEL, messages=USER).message.content

        with openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as denied:
                bad.models.list()
        assert denied.value.code == "invalid_api_key"
        with openai.OpenAI(base_url=f"{url}/v1", api_key=TOKEN, max_retries=0) as good:
            assert good.chat.completions.create(model=MODEL, messages=USER).choices  # type: ignore[arg-type]
        # With a token, names other than local ones are fine (it serves a network).
        named = await http(
            "GET", f"{url}/api/tags", headers={**served.auth(), "Host": "ai.example.org"}
        )
        assert named.status_code == 200
    # The token reaches neither the daemon nor any log line.
    assert all("authorization" not in r.headers for r in stack.ollama.requests)
    assert TOKEN not in caplog.text


async def test_without_a_token_forged_hosts_and_foreign_origins_are_refused(
    stack: Stack,
) -> None:
    with serving(stack) as served:
        url = served.url
        rebound = await http("GET", f"{url}/api/tags", headers={"Host": "evil.example.com"})
        assert rebound.status_code == 403
        assert "not a local name" in rebound.json()["error"]
        foreign = await http(
            "POST",
            f"{url}/api/chat",
            headers={"Origin": "https://evil.example.com"},
            json={"model": MODEL, "messages": USER},
        )
        assert foreign.status_code == 403
        assert stack.ollama.recorded("/api/chat") == []  # refused before any work
        page = "http://localhost:3000"
        allowed = await http("GET", f"{url}/api/tags", headers={"Origin": page})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == page
        assert "x-dsollama-route" in allowed.headers["access-control-expose-headers"]
        preflight = await http(
            "OPTIONS",
            f"{url}/v1/chat/completions",
            headers={
                "Origin": "app://cherry-studio",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200


async def test_oversized_bodies_get_413_but_blob_uploads_stream(
    stack: Stack, tmp_path: Path
) -> None:
    with serving(stack, max_body=1024) as served:
        long = [{"role": "user", "content": "x" * 2000}]
        with ollama.Client(host=served.url) as client:
            with pytest.raises(ollama.ResponseError) as caught:
                client.chat(MODEL, messages=long)
            assert caught.value.status_code == 413
            assert "--max-body" in caught.value.error
            weights = tmp_path / "big.gguf"
            weights.write_bytes(b"GGUF" + b"\0" * 8192)
            assert client.create_blob(weights).startswith("sha256:")
        with openai.OpenAI(base_url=f"{served.url}/v1", api_key="x", max_retries=0) as oa:
            with pytest.raises(openai.APIStatusError) as too_big:
                oa.chat.completions.create(model=MODEL, messages=long)  # type: ignore[arg-type]
        assert too_big.value.status_code == 413
        assert too_big.value.code == "request_too_large"


async def test_unknown_routes_and_methods(stack: Stack) -> None:
    with serving(stack) as served:
        url = served.url
        missing = await http("GET", f"{url}/api/nope")
        assert (missing.status_code, missing.text) == (404, "404 page not found")
        wrong = await http("GET", f"{url}/api/chat")
        assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")
        v1 = await http("GET", f"{url}/v1/nope")
        assert v1.status_code == 404
        assert v1.json()["error"]["code"] == "unknown_url"
        assert (await http("POST", f"{url}/v1/models")).json()["error"][
            "type"
        ] == "invalid_request_error"
