"""Whose calls keep their prompt and answer in the request log, and the notice that says so.

A program using the library logs metadata only unless it asks; `dsollama chat`,
`generate` and `serve` keep content by default and say so once per log; explicit
configuration (argument, environment, config file) always wins.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import dsollama
from dsollama._calllog import (
    content_notice,
    default_log_path,
    keeps_content,
    open_call_log,
    recent_calls,
)
from dsollama._calllog.content import notice_marker
from dsollama._config import explain_settings, load_settings
from dsollama.cli import cli
from dsollama.testing import FakeOllama

from .conftest import Result, Stack
from .serve_harness import MODEL, http, serving

SECRET_PROMPT = "zebra-plan-4471 for the merger"


def close_writer(**settings: Any) -> Path:
    """Store what the shared writer holds and stop it; return the database path."""
    sink = open_call_log(load_settings(**settings))
    assert sink is not None
    sink.log.close()
    return sink.log.path


def database_bytes(path: Path) -> bytes:
    """The database file and every companion (-wal, -shm) as they are on disk."""
    files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
    assert path in files
    return b"".join(p.read_bytes() for p in files)


def indexed_rows(path: Path) -> int:
    """Rows in the full-text index (FTS5 keeps one size record per indexed row)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM calls_fts_docsize").fetchone()[0])
    finally:
        conn.close()


# -- who keeps content by default ---------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "source", "kept"),
    [
        (None, "library", False),
        (None, "cli", True),
        (None, "serve", True),
        (True, "library", True),
        (False, "cli", False),
        (False, "serve", False),
    ],
)
def test_content_is_kept_by_who_runs_the_call_unless_configured(
    setting: bool | None, source: str, kept: bool
) -> None:
    assert keeps_content(load_settings(log_content=setting), source) is kept


def test_dsollama_config_says_what_an_unset_switch_means() -> None:
    row = next(r for r in explain_settings() if r.name == "log_content")
    assert row.source == "default"
    assert row.value == "unset: library off, CLI and serve on"
    off = next(
        r for r in explain_settings(env={"DSOLLAMA_LOG_CONTENT": "off"}) if r.name == "log_content"
    )
    assert off.value is False


# -- the library: metadata only unless asked -----------------------------------------


@pytest.mark.anyio
async def test_a_library_call_leaves_no_prompt_or_answer_on_disk(stack: Stack, kind: str) -> None:
    client = stack.client(kind, log=True)
    result: Result = await stack.call(
        kind, client, "chat", MODEL, [{"role": "user", "content": SECRET_PROMPT}], stream=True
    )
    assert result.text
    assert result.thinking
    path = close_writer(**stack.settings(log=True))

    [call] = recent_calls(path)
    assert (call.source, call.model_requested, call.ok) == ("library", MODEL, True)
    assert call.completion_tokens  # the metadata is all there
    assert not call.content_logged
    assert (call.messages, call.response_text, call.response_thinking) == (None, None, None)
    blob = database_bytes(path)
    for text in (SECRET_PROMPT, "zebra", result.text, result.thinking):
        assert text.encode() not in blob, text
    assert recent_calls(path, search="zebra") == []
    assert indexed_rows(path) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["argument", "environment", "config file"])
async def test_a_library_client_that_asks_keeps_content(
    stack: Stack, how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overrides: dict[str, Any] = {"log": True}
    if how == "argument":
        overrides["log_content"] = True
    elif how == "environment":
        monkeypatch.setenv("DSOLLAMA_LOG_CONTENT", "on")
    else:
        config = tmp_path / "with-content.toml"
        config.write_text("log_content = true\n")
        monkeypatch.setenv("DSOLLAMA_CONFIG", str(config))
    client = stack.client("sync", **overrides)
    result = await stack.call(
        "sync", client, "chat", MODEL, [{"role": "user", "content": SECRET_PROMPT}]
    )
    path = close_writer(**stack.settings(**overrides))

    [call] = recent_calls(path, search="zebra")
    assert call.content_logged
    assert call.prompt == SECRET_PROMPT
    assert call.response_text == result.text
    assert SECRET_PROMPT.encode() in database_bytes(path)


@pytest.mark.anyio
async def test_library_and_cli_clients_in_one_process_share_a_writer_not_a_switch(
    stack: Stack,
) -> None:
    settings = stack.settings(log=True)
    library = dsollama.AsyncClient(**settings)
    command_line = dsollama.AsyncClient(**settings, source="cli")
    try:
        await library.chat(MODEL, [{"role": "user", "content": SECRET_PROMPT}])
        await command_line.chat(
            MODEL, [{"role": "user", "content": "a question typed at the shell"}]
        )
    finally:
        await library.aclose()
        await command_line.aclose()
    sinks = [open_call_log(load_settings(**settings), source=s) for s in ("library", "cli")]
    assert sinks[0] is not None
    assert sinks[1] is not None
    assert sinks[0].log is sinks[1].log  # one writer thread for the file
    path = close_writer(**settings)

    by_source = {c.source: c for c in recent_calls(path)}
    assert by_source["cli"].prompt == "a question typed at the shell"
    assert not by_source["library"].content_logged
    assert b"zebra" not in database_bytes(path)


# -- the command line: content by default, said once ---------------------------------


@pytest.fixture
def doubles() -> Iterator[FakeOllama]:
    with FakeOllama(models=[MODEL]) as ollama:
        ollama.preload(MODEL)
        yield ollama
        ollama.release()


def chat(ollama: FakeOllama, prompt: str, **env: str) -> Any:
    result = CliRunner().invoke(
        cli, ["chat", MODEL, prompt], env={"OLLAMA_HOST": ollama.url, **env}
    )
    assert result.exit_code == 0, result.output
    return result


def test_the_cli_logs_content_and_says_so_once(doubles: FakeOllama) -> None:
    first = chat(doubles, SECRET_PROMPT)
    path = default_log_path()
    notes = [line for line in first.stderr.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1
    assert str(path) in notes[0]
    assert "DSOLLAMA_LOG_CONTENT=off" in notes[0]
    assert "Note" not in first.stdout  # piped answers stay clean
    assert notice_marker(path).exists()

    second = chat(doubles, "and a second question")
    assert "Note:" not in second.stderr
    generated = CliRunner().invoke(
        cli, ["generate", MODEL, "complete me"], env={"OLLAMA_HOST": doubles.url}
    )
    assert generated.exit_code == 0, generated.output
    assert "Note:" not in generated.stderr

    close_writer()
    calls = recent_calls(path, limit=0)
    assert {c.source for c in calls} == {"cli"}
    assert [c.prompt for c in calls] == ["complete me", "and a second question", SECRET_PROMPT]
    assert all(c.response_text for c in calls)


def test_the_cli_with_content_off_keeps_none_and_says_nothing(doubles: FakeOllama) -> None:
    result = chat(doubles, SECRET_PROMPT, DSOLLAMA_LOG_CONTENT="off")
    assert "Note:" not in result.stderr
    path = close_writer()
    [call] = recent_calls(path)
    assert call.source == "cli"
    assert not call.content_logged
    blob = database_bytes(path)
    assert b"zebra" not in blob
    assert result.stdout.strip().encode() not in blob
    assert not notice_marker(path).exists()


def test_the_cli_with_logging_off_writes_nothing_at_all(doubles: FakeOllama) -> None:
    result = chat(doubles, SECRET_PROMPT, DSOLLAMA_LOG="off")
    assert "Note:" not in result.stderr
    assert not default_log_path().parent.exists()


def test_the_notice_is_per_log_and_claimed_once(tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "project" / "calls.db")
    settings = load_settings(log_path=elsewhere)
    notice = content_notice(settings, "cli")
    assert notice is not None
    assert elsewhere in notice
    assert content_notice(settings, "serve") is None  # said for this log: not again
    assert content_notice(load_settings(), "cli") is not None  # another log, another notice
    assert content_notice(load_settings(log_path=str(tmp_path / "x.db")), "library") is None
    assert notice_marker(Path(elsewhere)).stat().st_mode & 0o777 == 0o600


# -- serve: content by default --------------------------------------------------------


@pytest.mark.anyio
async def test_serve_logs_content_by_default(stack: Stack) -> None:
    with serving(stack, log=True) as served:
        response = await http(
            "POST",
            f"{served.url}/api/chat",
            json={
                "model": MODEL,
                "messages": [{"role": "user", "content": SECRET_PROMPT}],
                "stream": False,
            },
        )
        assert response.status_code == 200, response.text
        answer = response.json()["message"]["content"]
    path = close_writer(**stack.settings(log=True))
    [call] = recent_calls(path, search="zebra")
    assert call.source == "serve"
    assert call.prompt == SECRET_PROMPT
    assert call.response_text == answer


class _NoServer:
    """Stands in for uvicorn: `dsollama serve` prints its banner, then returns at once."""

    def run(self, sockets: Any) -> None:
        return None


@pytest.fixture
def serve_command(monkeypatch: pytest.MonkeyPatch) -> Any:
    pytest.importorskip("uvicorn")
    from dsollama.cli import serve
    from dsollama.serve import server

    monkeypatch.setattr(server, "make_server", lambda *args, **kwargs: _NoServer())
    # The command configures the process's "dsollama" logger; keep it as other tests expect.
    monkeypatch.setattr(serve, "_setup_logging", lambda level: None)

    def run(**env: str) -> Any:
        result = CliRunner().invoke(cli, ["serve", "--port", "0"], env=env)
        assert result.exit_code == 0, result.output
        return result

    return run


def test_the_serve_banner_carries_the_notice_once(serve_command: Any) -> None:
    first = serve_command()
    assert first.stdout.splitlines()[0].startswith("http://127.0.0.1:")
    assert "Note" not in first.stdout  # the banner's stdout stays for scripts
    assert str(default_log_path()) in first.stderr
    assert "DSOLLAMA_LOG_CONTENT=off" in first.stderr
    assert "Note:" not in serve_command().stderr


def test_serve_with_content_off_shows_no_notice(serve_command: Any) -> None:
    assert "Note:" not in serve_command(DSOLLAMA_LOG_CONTENT="off").stderr
