"""Every example runs, as a user would run it, against the simulated servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "chat.py": "served by: local deepseek-r1:8b",
    "chat_stream.py": "— local deepseek-r1:8b",
    "async_chat.py": "→ hosted (local busy",
    "fallback.py": "seams: [Seam(",
    "hosted_first.py": "keep-alive(s) and no data",
    "provision.py": "everything is up to date",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert EXPECTED[name] in result.stdout
    assert "Traceback" not in result.stderr


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith(("_", "test_"))}
    assert scripts == set(EXPECTED)


def test_the_pytest_fixture_example_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(EXAMPLES / "test_my_fallback.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
