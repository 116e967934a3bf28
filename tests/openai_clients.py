"""Clients for the OpenAI-format doubles' tests: the official openai client and plain httpx.

Loopback needs no TLS, so no client here loads a CA bundle (about 0.2 s each time).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai

__all__ = ["connect", "connect_async", "extra", "loopback_http"]


def loopback_http() -> httpx.Client:
    return httpx.Client(verify=False, timeout=10)


def connect(url: str, **options: Any) -> openai.OpenAI:
    """The official client for a double's /v1 base, without retries."""
    options.setdefault("api_key", "none")
    return openai.OpenAI(
        base_url=url, max_retries=0, timeout=10, http_client=loopback_http(), **options
    )


def connect_async(url: str, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("api_key", "none")
    http_client = httpx.AsyncClient(verify=False, timeout=10)
    return openai.AsyncOpenAI(
        base_url=url, max_retries=0, timeout=10, http_client=http_client, **options
    )


def extra(model: Any, name: str) -> Any:
    """A field the openai types do not declare (a server's extension)."""
    return (model.model_extra or {}).get(name)
