"""`dsollama logs` and `dsollama stats` through click's CliRunner: data on stdout, notes on
stderr, exit codes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dsollama._calllog import CallLog, default_log_path
from dsollama._types import Attempt, CallRecord, ServedBy
from dsollama.cli import cli

LOCAL = ServedBy(
    kind="local",
    route="local:127.0.0.1:11434",
    endpoint="http://127.0.0.1:11434",
    model="deepseek-r1:8b",
)
HOSTED = ServedBy(
    kind="hosted",
    route="hosted:api.deepseek.com",
    endpoint="https://api.deepseek.com",
    model="deepseek-flash",
)
LONG_ANSWER = "A semaphore counts permits; " + "and so on " * 60 + "THE-END"


def run(*args: str, **env: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "160", **env})


@pytest.fixture
def populated() -> Path:
    now = time.time()
    log = CallLog(default_log_path(), log_content=True)
    log.record(
        CallRecord(
            operation="chat",
            model_requested="deepseek-r1:8b",
            ok=True,
            started_at=now - 120,
            served_by=LOCAL,
            attempts=(Attempt(route=LOCAL.route, kind="local", model=LOCAL.model, outcome="ok"),),
            ttft_s=0.25,
            total_s=1.5,
            prompt_tokens=12,
            completion_tokens=34,
            cost_usd=0.0,
            messages=[{"role": "user", "content": "write a haiku about ponds"}],
            response_text="old pond, frog jumps in",
        )
    )
    log.record(
        CallRecord(
            operation="chat",
            model_requested="deepseek-r1:8b",
            ok=True,
            started_at=now - 60,
            served_by=HOSTED,
            attempts=(
                Attempt(
                    route=LOCAL.route,
                    kind="local",
                    model=LOCAL.model,
                    outcome="fallback",
                    error="BusyError",
                    status_code=503,
                ),
                Attempt(route=HOSTED.route, kind="hosted", model=HOSTED.model, outcome="ok"),
            ),
            fallback_reason="local busy: no first token within 10s",
            ttft_s=0.8,
            total_s=4.0,
            prompt_tokens=100,
            completion_tokens=900,
            cost_usd=0.0021,
            messages=[{"role": "user", "content": "explain semaphores"}],
            response_text=LONG_ANSWER,
        )
    )
    log.record(
        CallRecord(
            operation="generate",
            model_requested="deepseek-coder-v2:16b",
            ok=False,
            started_at=now - 30,
            attempts=(
                Attempt(
                    route=LOCAL.route,
                    kind="local",
                    model="deepseek-coder-v2:16b",
                    outcome="failed",
                    error="DaemonUnreachableError",
                ),
            ),
            error_class="AllRoutesFailedError",
            error_message="no route could answer: connection refused",
            total_s=0.01,
            messages=[{"role": "user", "content": "fix my code"}],
        )
    )
    log.close()
    return default_log_path()


def test_logs_shows_the_last_calls_newest_first(populated: Path) -> None:
    result = run("logs")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("deepseek-coder-v2:16b failed") < out.index("explain semaphores")
    assert out.index("explain semaphores") < out.index("write a haiku")
    assert "deepseek-r1:8b → deepseek-flash @ hosted:api.deepseek.com" in out
    assert "deepseek-r1:8b @ local:127.0.0.1:11434" in out
    assert "fallback: local busy: no first token within 10s" in out
    assert "AllRoutesFailedError: no route could answer" in out
    assert "$0.0021" in out
    assert "100 → 900 tok" in out
    assert "ttft 800ms" in out
    assert "THE-END" not in out  # content is cut in the table
    assert result.stderr == ""


def test_logs_filters(populated: Path) -> None:
    failed = run("logs", "--failed")
    assert "fix my code" in failed.stdout
    assert "semaphores" not in failed.stdout
    hosted = run("logs", "--route", "hosted")
    assert "semaphores" in hosted.stdout
    assert "haiku" not in hosted.stdout
    coder = run("logs", "-m", "deepseek-coder-v2")
    assert "fix my code" in coder.stdout
    assert "haiku" not in coder.stdout
    search = run("logs", "-q", "frog")
    assert "haiku" in search.stdout
    assert "semaphores" not in search.stdout
    recent = run("logs", "--since", "45s")
    assert "fix my code" in recent.stdout
    assert "semaphores" not in recent.stdout
    one = run("logs", "-n", "1")
    assert "fix my code" in one.stdout
    assert "haiku" not in one.stdout
    assert "Showing the last 1 calls; -n 0 shows all." in one.stderr


def test_logs_json_has_the_full_content(populated: Path) -> None:
    result = run("logs", "--json", "-n", "0")
    assert result.exit_code == 0
    calls = json.loads(result.stdout)
    assert [c["model_requested"] for c in calls] == [
        "deepseek-coder-v2:16b",
        "deepseek-r1:8b",
        "deepseek-r1:8b",
    ]
    assert calls[1]["response_text"] == LONG_ANSWER
    assert calls[1]["attempts"][0]["error"] == "BusyError"
    assert calls[1]["cost_usd"] == pytest.approx(0.0021)
    assert result.stderr == ""


def test_logs_when_nothing_matches(populated: Path) -> None:
    result = run("logs", "-q", "nothing-like-this")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No calls match." in result.stderr


def test_logs_before_the_first_call_says_so() -> None:
    result = run("logs")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No calls recorded yet" in result.stderr
    assert str(default_log_path()) in result.stderr
    as_json = run("logs", "--json")
    assert json.loads(as_json.stdout) == []
    assert not default_log_path().exists()


def test_logs_when_logging_is_off_says_how_to_turn_it_on() -> None:
    result = run("logs", DSOLLAMA_LOG="off")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "Request logging is off (environment (DSOLLAMA_LOG))" in result.stderr
    assert "DSOLLAMA_LOG=on" in result.stderr
    assert "No calls recorded yet" not in result.stderr


def test_logs_when_off_still_shows_earlier_calls(populated: Path) -> None:
    result = run("logs", DSOLLAMA_LOG="off")
    assert "Request logging is off" in result.stderr
    assert "explain semaphores" in result.stdout


def test_logs_path(tmp_path: Path) -> None:
    assert run("logs", "--path").stdout.strip() == str(default_log_path())
    custom = tmp_path / "elsewhere.db"
    assert run("logs", "--path", DSOLLAMA_LOG_PATH=str(custom)).stdout.strip() == str(custom)


def test_a_bad_since_is_a_usage_error() -> None:
    result = run("logs", "--since", "last tuesday")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "neither a duration" in result.stderr


def test_logs_mentions_calls_that_could_not_be_recorded(populated: Path) -> None:
    conn = sqlite3.connect(populated)
    conn.execute("INSERT INTO dropped VALUES (?, 'locked', 7)", (time.time(),))
    conn.commit()
    conn.close()
    result = run("logs", "--json")
    json.loads(result.stdout)  # the note does not spoil the JSON
    assert "7 call(s) could not be recorded (locked: 7)" in result.stderr


def test_stats_per_route_and_model(populated: Path) -> None:
    result = run("stats")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("3 call(s) since ")
    assert "1 failed (33%), 1 fell back (33%), hosted cost $0.0021" in out
    assert "hosted deepseek-flash on hosted:api.deepseek.com" in out
    assert "local deepseek-r1:8b on local:127.0.0.1:11434" in out
    assert "local deepseek-coder-v2:16b on local:127.0.0.1:11434" in out
    assert "total   p50 4.00s" in out
    assert "1  local busy: no first token within 10s" in out
    assert "errors: DaemonUnreachableError 1" in out
    assert result.stderr == ""


def test_stats_json_and_period(populated: Path) -> None:
    data: dict[str, Any] = json.loads(run("stats", "--json").stdout)
    assert data["overall"]["calls"] == 3
    assert data["overall"]["failures"] == 1
    by_model = {g["model"]: g for g in data["groups"]}
    assert by_model["deepseek-flash"]["fallback_share"] == 1.0
    assert by_model["deepseek-flash"]["cost_usd"] == pytest.approx(0.0021)
    assert by_model["deepseek-r1:8b"]["ttft_s"]["p50"] == 0.25
    recent = json.loads(run("stats", "--json", "--since", "45s").stdout)
    assert recent["overall"]["calls"] == 1
    everything = json.loads(run("stats", "--json", "--since", "all").stdout)
    assert everything["since"] is None
    assert everything["overall"]["calls"] == 3


def test_stats_without_a_log() -> None:
    result = run("stats")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No calls recorded yet" in result.stderr
    off = run("stats", DSOLLAMA_LOG="off")
    assert "Request logging is off" in off.stderr


# -- text from outside, shown safely -------------------------------------------------------

HOSTILE_MODEL = "evil\x1b]0;pwned\x07\x1b[2J:1b"
RAW_CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\x00")


@pytest.fixture
def hostile() -> Path:
    log = CallLog(default_log_path())
    log.record(
        CallRecord(
            operation="chat",
            model_requested=HOSTILE_MODEL,
            ok=False,
            started_at=time.time() - 5,
            attempts=(
                Attempt(
                    route=HOSTED.route,
                    kind="hosted",
                    model="deepseek-flash",
                    outcome="fallback",
                    error="Bad\x9bError",
                ),
                Attempt(route=LOCAL.route, kind="local", model=HOSTILE_MODEL, outcome="failed"),
            ),
            fallback_reason="model not pulled \u202eevil\u202c",
            error_class="AllRoutesFailedError",
            error_message="no route could answer\r\nFAKE LINE\x00",
            total_s=0.01,
            messages=[{"role": "user", "content": "hi\x1b[31m red"}],
        )
    )
    log.record(
        CallRecord(
            operation="chat",
            model_requested="m" * 100_000,
            ok=True,
            started_at=time.time() - 1,
            served_by=LOCAL,
            attempts=(Attempt(route=LOCAL.route, kind="local", model=LOCAL.model, outcome="ok"),),
            total_s=0.5,
            response_text="answer\x9b2J",
        )
    )
    log.close()
    return default_log_path()


@pytest.mark.parametrize("command", [["logs"], ["stats"]])
def test_outside_text_is_printed_escaped_and_bounded(hostile: Path, command: list[str]) -> None:
    result = run(*command)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for char in RAW_CONTROLS:
        assert char not in out, repr(char)
    assert "evil\\x1b]0;pwned\\x07\\x1b[2J:1b" in out
    assert len(out) < 20_000  # the 100,000-character name is cut
    if command == ["stats"]:
        assert "model not pulled \\u202eevil\\u202c" in out
        assert "Bad\\x9bError" in out


def test_outside_text_in_json_is_escaped_and_parses_back(hostile: Path) -> None:
    for command in ("logs", "stats"):
        result = run(command, "--json")
        assert result.exit_code == 0, result.stderr
        for char in RAW_CONTROLS:
            assert char not in result.stdout, (command, repr(char))
        json.loads(result.stdout)
    calls = json.loads(run("logs", "--json").stdout)
    hostile_call = next(c for c in calls if not c["ok"])
    assert hostile_call["model_requested"] == HOSTILE_MODEL  # escaped, not changed
    assert hostile_call["fallback_reason"] == "model not pulled \u202eevil\u202c"
    assert hostile_call["error_message"] == "no route could answer\r\nFAKE LINE\x00"


def _foreign_log() -> Path:
    path = default_log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY, started_at REAL, note TEXT)")
    conn.execute("INSERT INTO calls (started_at, note) VALUES (?, 'not ours')", (time.time(),))
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("command", [["logs"], ["stats"], ["logs", "-q", "x"]])
def test_a_log_with_the_wrong_schema_says_what_is_wrong_and_the_fix(command: list[str]) -> None:
    _foreign_log()
    result = run(*command)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unexpected" not in result.stderr
    assert "is not a dsollama request log" in result.stderr
    assert "'calls' table without the column(s)" in result.stderr
    assert "dsollama logs --reset" in result.stderr


def test_reset_moves_the_log_aside_and_a_new_one_starts(populated: Path) -> None:
    broken = _foreign_log() if not populated.exists() else populated
    moved = run("logs", "--reset")
    assert moved.exit_code == 0, moved.stderr
    assert "Moved the request log to" in moved.stdout
    assert not broken.exists()
    aside = [p for p in broken.parent.iterdir() if p.name.startswith(f"{broken.name}.")]
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert "No calls recorded yet" in run("logs").stderr
    again = run("logs", "--reset")
    assert again.exit_code == 0
    assert "nothing to reset" in again.stderr


def test_metadata_only_calls_say_so_and_search_says_what_it_skipped(populated: Path) -> None:
    log = CallLog(populated)  # metadata only, as a program using the library logs
    log.record(
        CallRecord(
            operation="chat",
            model_requested="deepseek-coder:6.7b",
            ok=True,
            served_by=LOCAL.model_copy(update={"model": "deepseek-coder:6.7b"}),
            total_s=0.7,
            messages=[{"role": "user", "content": "private haiku request"}],
            response_text="private pond",
        )
    )
    log.close()

    table = run("logs", "-n", "0")
    assert table.exit_code == 0, table.output
    assert table.stdout.count("(content not logged)") == 1
    assert "deepseek-coder:6.7b @ local" in table.stdout
    assert "private" not in table.stdout
    assert "write a haiku about ponds" in table.stdout  # calls that kept content show it

    search = run("logs", "-q", "haiku")
    assert "write a haiku about ponds" in search.stdout
    assert "deepseek-coder:6.7b" not in search.stdout
    assert "1 call(s) were logged without prompts and answers" in search.stderr
    assert "-q could not search them" in search.stderr
    as_json = run("logs", "-q", "haiku", "--json")
    assert [c["content_logged"] for c in json.loads(as_json.stdout)] == [True]
    # Without -q, and when every call kept its content, there is nothing to say.
    assert "without prompts" not in table.stderr
    assert (
        "without prompts"
        not in run("logs", "-q", "haiku", "--since", "90m", "-m", "deepseek-r1").stderr
    )
