"""The API key goes only to its own route, over HTTPS (plain HTTP only to loopback).

Every way a URL can disguise plain HTTP or its real host is parsed, not string-matched,
and a redirect is never followed with the key attached.
"""

from __future__ import annotations

import httpx
import pytest

import dsollama
from dsollama import load_settings

KEY = "sk-guarded-0123456789"


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://192.0.2.1",
        "Http://api.deepseek.com",
        "hTtP://api.deepseek.com/v1",
        "  http://192.0.2.1  ",
        "http://127.0.0.1@192.0.2.1",  # the host is what follows the @
        "http://[::2]:8000",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_off_this_machine_is_refused_whatever_its_spelling(url: str) -> None:
    env = {"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": url}
    with pytest.raises(dsollama.ConfigError) as caught:
        load_settings(env=env).check_hosted_endpoint()
    assert KEY not in str(caught.value)
    with pytest.raises(dsollama.ConfigError):
        _client(env)


def _client(env: dict[str, str]) -> dsollama.AsyncClient:
    return dsollama.AsyncClient(settings=load_settings(env=env), log=False)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("HTTP://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        (" https://API.DeepSeek.com ", "https://api.deepseek.com"),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
        ("http://LOCALHOST:9", "http://localhost:9"),
    ],
)
def test_loopback_and_https_pass_and_are_spelt_one_way(url: str, normalised: str) -> None:
    settings = load_settings(env={"DEEPSEEK_API_KEY": KEY, "DEEPSEEK_BASE_URL": url})
    settings.check_hosted_endpoint()
    assert settings.hosted_base_url == normalised


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:secret-pw@api.example.com", "credentials"),
        ("ftp://api.example.com", "https://"),
        ("api.deepseek.com", "https://"),
        ("https://api.example.com/v1?key=1", "query"),
        ("https://api.exa mple.com", "spaces"),
        ("https://", "no host"),
    ],
)
def test_ambiguous_urls_are_a_config_error_that_never_repeats_them(url: str, problem: str) -> None:
    with pytest.raises(dsollama.ConfigError, match=problem) as caught:
        load_settings(env={"DEEPSEEK_BASE_URL": url})
    assert "secret-pw" not in str(caught.value)
    assert "DEEPSEEK_BASE_URL" in str(caught.value)


def test_a_redirect_is_never_followed_with_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "127.0.0.1":
            return httpx.Response(
                307, headers={"Location": "https://elsewhere.example/chat/completions?k=1"}
            )
        return httpx.Response(200, text="data: [DONE]\n\n")

    client = dsollama.Client(
        "http://127.0.0.1:9",  # nothing listens: the local route is down
        hosted_base_url="http://127.0.0.1:8",
        hosted_api_key=KEY,
        hosted_transport=httpx.MockTransport(handler),
        log=False,
        connect_timeout=0.5,
    )
    with client, pytest.raises(dsollama.DsollamaError) as caught:
        client.chat("deepseek-r1:8b", [{"role": "user", "content": "hi"}])
    assert [r.url.host for r in seen] == ["127.0.0.1"]  # never elsewhere.example
    assert "redirected (307) to https://elsewhere.example/chat/completions" in str(caught.value)
    assert "k=1" not in str(caught.value)
    assert KEY not in str(caught.value)
