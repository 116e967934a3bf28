"""pytest plugin: doubles of the Ollama daemon, the DeepSeek API, vLLM and llama-server as fixtures.

Registered through the ``pytest11`` entry point, so any project that installs dsollama
gets, with no configuration:

- ``fake_ollama``: a started `dsollama.testing.ollama.FakeOllama` with
  ``deepseek-r1:8b`` installed;
- ``fake_deepseek``: a started `dsollama.testing.deepseek.FakeDeepSeek`;
- ``fake_vllm``: a started `dsollama.testing.vllm.FakeVLLM` (reasoning parser on);
- ``fake_llamacpp``: a started `dsollama.testing.llamacpp.FakeLlamaServer` with
  ``/metrics`` on;
- ``dsollama_env``: both of the above, with ``OLLAMA_HOST``, ``DEEPSEEK_BASE_URL`` and
  ``DEEPSEEK_API_KEY`` pointing at them for the duration of the test.

Each double is stopped when its test ends. This module is imported by every pytest run of
every project that has dsollama installed, so it imports nothing heavy at the top: the
doubles (asyncio servers, threads) are imported inside the fixtures that need them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import pytest

if TYPE_CHECKING:
    from .deepseek import FakeDeepSeek
    from .llamacpp import FakeLlamaServer
    from .ollama import FakeOllama
    from .vllm import FakeVLLM

__all__ = [
    "DsollamaDoubles",
    "dsollama_env",
    "fake_deepseek",
    "fake_llamacpp",
    "fake_ollama",
    "fake_vllm",
]


class DsollamaDoubles(NamedTuple):
    """What ``dsollama_env`` gives a test: the two running doubles."""

    ollama: FakeOllama
    deepseek: FakeDeepSeek


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A started Ollama daemon double with ``deepseek-r1:8b`` installed."""
    from .ollama import FakeOllama

    fake = FakeOllama(models=["deepseek-r1:8b"])
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_deepseek() -> Iterator[FakeDeepSeek]:
    """A started DeepSeek API double; use ``.url`` and ``.api_key``."""
    from .deepseek import FakeDeepSeek

    fake = FakeDeepSeek()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_vllm() -> Iterator[FakeVLLM]:
    """A started vLLM double serving ``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` with the
    reasoning parser on; use ``.base_url``."""
    from .vllm import FakeVLLM

    fake = FakeVLLM(reasoning_parser=True)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_llamacpp() -> Iterator[FakeLlamaServer]:
    """A started llama-server double (one slot, ``/metrics`` on); use ``.base_url``."""
    from .llamacpp import FakeLlamaServer

    fake = FakeLlamaServer(metrics=True)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def dsollama_env(
    monkeypatch: pytest.MonkeyPatch, fake_ollama: FakeOllama, fake_deepseek: FakeDeepSeek
) -> DsollamaDoubles:
    """Both doubles, with the environment dsollama reads pointing at them."""
    monkeypatch.setenv("OLLAMA_HOST", fake_ollama.url)
    monkeypatch.setenv("DEEPSEEK_BASE_URL", fake_deepseek.url)
    monkeypatch.setenv("DEEPSEEK_API_KEY", fake_deepseek.api_key)
    return DsollamaDoubles(fake_ollama, fake_deepseek)
