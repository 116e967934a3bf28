"""The command line as a whole: light to start, one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

from click.testing import CliRunner

from dsollama.cli import _COMMANDS, cli


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import sys; from dsollama.cli import cli;\n"
        "try: cli.main(['--help'], standalone_mode=False)\n"
        "except SystemExit: pass\n"
        "heavy = [m for m in ('httpx', 'ollama', 'rich', 'pydantic', 'sqlite3', 'starlette') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for name in _COMMANDS:
        assert name in out
    assert "HEAVY []" in out


def test_import_dsollama_is_light() -> None:
    code = "import sys, dsollama; print(sorted(m for m in ('httpx', 'ollama', 'pydantic', 'rich') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dsollama", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("dsollama ")


def test_unknown_commands_are_usage_errors() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_debug_shows_the_traceback_and_plain_errors_do_not() -> None:
    # The log is off so that the first-use note on content logging is not among the lines.
    env = {"OLLAMA_HOST": "127.0.0.1:9", "DSOLLAMA_CONNECT_TIMEOUT": "0.5", "DSOLLAMA_LOG": "off"}
    plain = subprocess.run(
        [sys.executable, "-m", "dsollama", "chat", "deepseek-r1:8b", "hi", "--local-only"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr
    assert [
        line for line in plain.stderr.splitlines() if line.startswith("Error:")
    ] == plain.stderr.splitlines()
    debug = subprocess.run(
        [
            sys.executable,
            "-m",
            "dsollama",
            "--debug",
            "chat",
            "deepseek-r1:8b",
            "hi",
            "--local-only",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
