"""Where the examples send their requests.

By default each example starts dsollama's doubles of the Ollama daemon and the DeepSeek
API on this machine, so it runs anywhere, with no daemon and no key. Pass ``--real`` to
use your own daemon (OLLAMA_HOST) and key (DEEPSEEK_API_KEY) instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def servers(**ollama_settings: Any) -> Iterator[dict[str, Any]]:
    """Client settings for the examples: the doubles' addresses, or nothing with --real."""
    if "--real" in sys.argv:
        yield {}
        return
    from dsollama.testing import FakeDeepSeek, FakeOllama

    settings = {
        "models": ["deepseek-r1:8b", "deepseek-coder:6.7b"],
        "tokens_per_second": 80,
        **ollama_settings,
    }
    with FakeOllama(**settings) as ollama, FakeDeepSeek(tokens_per_second=120) as deepseek:
        ollama.preload(*settings["models"])  # as if the daemon had been answering for a while
        print(f"(simulated servers: Ollama at {ollama.url}, DeepSeek API at {deepseek.url})\n")
        yield {
            "host": ollama.url,
            "hosted_base_url": deepseek.url,
            "hosted_api_key": deepseek.api_key,
            "log": False,  # examples leave your request log alone
            "_ollama": ollama,
            "_deepseek": deepseek,
        }


def client_settings(env: dict[str, Any]) -> dict[str, Any]:
    """The settings a dsollama client takes (without the doubles' handles)."""
    return {k: v for k, v in env.items() if not k.startswith("_")}
