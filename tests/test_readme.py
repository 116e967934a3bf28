"""The README's promises that a test can check: its two commands, and its links."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_the_readme_opens_with_the_install_and_test_commands() -> None:
    first, second = (block.strip() for block in _shell_blocks()[:2])
    assert "pip install -e ." in first
    assert first.endswith("dsollama demo")
    assert second.endswith("pytest -n auto")


def test_ci_runs_the_readme_test_command_as_written() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = _shell_blocks()[1].strip()
    install_and_test = test_command.split(". .venv/bin/activate && ", 1)[1]
    assert install_and_test in ci


def test_every_relative_link_exists() -> None:
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


def test_every_command_the_readme_shows_exists() -> None:
    from dsollama.cli import _COMMANDS

    shown = {
        c for block in _shell_blocks() for c in re.findall(r"^dsollama (\w+)", block, flags=re.M)
    }
    assert {"pull", "chat", "serve"} <= shown
    for command in shown:
        assert command in _COMMANDS, command
