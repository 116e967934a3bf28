"""Testing your own fallback handling with dsollama's pytest fixtures.

`pip install dsollama` registers a pytest plugin with `fake_ollama` and `fake_deepseek`:
real HTTP servers on 127.0.0.1 that behave like the daemon and the hosted API, including
their faults.

    pytest examples/test_my_fallback.py
"""

from __future__ import annotations

import dsollama
from dsollama.testing import Fault


def ask(client: dsollama.Client, question: str) -> str:
    """The application code under test."""
    return (
        client.chat("deepseek-r1:8b", [{"role": "user", "content": question}]).message.content or ""
    )


def test_my_app_still_answers_when_the_daemon_is_busy(fake_ollama, fake_deepseek) -> None:  # type: ignore[no-untyped-def]
    fake_ollama.add_fault(Fault("status", status=503, times=None, path="/api/chat"))
    with dsollama.Client(
        fake_ollama.url,
        hosted_base_url=fake_deepseek.url,
        hosted_api_key=fake_deepseek.api_key,
        log=False,
    ) as client:
        assert ask(client, "hi")
    assert fake_deepseek.recorded("/chat/completions")  # the hosted API answered


def test_my_app_keeps_private_data_local(fake_ollama, fake_deepseek) -> None:  # type: ignore[no-untyped-def]
    fake_ollama.refuse_connections()
    with dsollama.Client(
        fake_ollama.url,
        hosted_base_url=fake_deepseek.url,
        hosted_api_key=fake_deepseek.api_key,
        log=False,
    ) as client:
        try:
            client.chat("deepseek-r1:8b", [{"role": "user", "content": "secret"}], local_only=True)
        except dsollama.DaemonUnreachableError:
            pass  # the one reason the call failed, as its own class
    assert fake_deepseek.requests == []  # nothing left the machine
