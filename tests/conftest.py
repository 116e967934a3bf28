"""Shared fixtures: a clean environment for every test, and anyio on asyncio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Variables that would let a developer's own setup leak into a test.
_ISOLATED_ENV = (
    "OLLAMA_HOST",
    "OLLAMA_API_KEY",
    "OLLAMA_NUM_PARALLEL",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    import os

    for name in list(os.environ):
        if name in _ISOLATED_ENV or name.startswith("DSOLLAMA_"):
            monkeypatch.delenv(name, raising=False)
    # Config file and request log live in the test's own folder.
    monkeypatch.setenv("DSOLLAMA_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
