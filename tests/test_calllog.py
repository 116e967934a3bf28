"""The request log: what is stored, filters and search, stats, disabling, migrations,
losses (disk full, unwritable), and that no secret reaches the database file."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from dsollama._calllog import (
    CallLog,
    LogSink,
    call_stats,
    default_log_path,
    dropped_counts,
    log_path_for,
    metadata_only_count,
    open_call_log,
    parse_since,
    recent_calls,
    schema,
    search_mode,
)
from dsollama._config import load_settings
from dsollama._types import Attempt, CallRecord, ServedBy

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
LOCAL_BUSY = Attempt(
    route=LOCAL.route,
    kind="local",
    model="deepseek-r1:8b",
    outcome="fallback",
    error="BusyError",
    status_code=503,
    detail="no first token within 10s",
)


def _ok_attempt(served: ServedBy) -> Attempt:
    return Attempt(route=served.route, kind=served.kind, model=served.model, outcome="ok")


def make_record(**overrides: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "operation": "chat",
        "model_requested": "deepseek-r1:8b",
        "ok": True,
        "served_by": LOCAL,
        "attempts": (_ok_attempt(LOCAL),),
        "ttft_s": 0.1,
        "total_s": 0.5,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.0,
        "messages": [{"role": "user", "content": "hello there"}],
        "response_text": "hi",
    }
    fields.update(overrides)
    return CallRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log" / "logs.db"


@pytest.fixture
def make_log(db: Path) -> Iterator[Any]:
    logs: list[CallLog] = []

    def factory(path: Path = db, **kwargs: Any) -> CallLog:
        kwargs.setdefault("log_content", True)  # most tests read the content back
        log = CallLog(path, **kwargs)
        logs.append(log)
        return log

    yield factory
    for log in logs:
        log.close()


def write(log: CallLog | LogSink, *records: CallRecord) -> None:
    for rec in records:
        log.record(rec)
    writer = log.log if isinstance(log, LogSink) else log
    assert writer.flush()


# -- what is stored ------------------------------------------------------------------


def test_a_fallback_call_is_stored_with_every_field(make_log: Any, db: Path) -> None:
    log = make_log()
    rec = make_record(
        served_by=HOSTED,
        attempts=(LOCAL_BUSY, _ok_attempt(HOSTED)),
        fallback_reason="local: no first token within 10s",
        stream=True,
        source="serve",
        ttft_s=0.42,
        total_s=2.5,
        prompt_tokens=120,
        completion_tokens=300,
        reasoning_tokens=200,
        cached_tokens=64,
        cost_usd=0.00123,
        response_thinking="let me think",
        started_at=1_700_000_000.0,
    )
    write(log, rec)

    [call] = recent_calls(db)
    assert (call.kind, call.route, call.route_model) == (
        "hosted",
        "hosted:api.deepseek.com",
        "deepseek-flash",
    )
    assert call.model_requested == "deepseek-r1:8b"
    assert call.ok
    assert call.stream
    assert call.source == "serve"
    assert call.fallback_reason == "local: no first token within 10s"
    assert (call.ttft_s, call.total_s) == (0.42, 2.5)
    assert (call.prompt_tokens, call.completion_tokens) == (120, 300)
    assert (call.reasoning_tokens, call.cached_tokens) == (200, 64)
    assert call.cost_usd == pytest.approx(0.00123)
    assert call.messages == [{"role": "user", "content": "hello there"}]
    assert (call.response_text, call.response_thinking) == ("hi", "let me think")
    assert [(a.route, a.outcome, a.error, a.status_code) for a in call.attempts] == [
        ("local:127.0.0.1:11434", "fallback", "BusyError", 503),
        ("hosted:api.deepseek.com", "ok", None, None),
    ]
    out = call.to_json()
    assert out["time"] == "2023-11-14T22:13:20+00:00"
    assert out["attempts"][0]["detail"] == "no first token within 10s"
    json.dumps(out)  # JSON-able as it is


def test_a_batch_keeps_each_call_with_its_own_attempts_and_search_terms(
    make_log: Any, db: Path
) -> None:
    log = make_log()
    write(log, make_record(messages=[{"role": "user", "content": "earlier row"}]))
    # Several calls stored in one transaction, after a row already in the table.
    shapes = {
        "alpha question": (LOCAL_BUSY, _ok_attempt(HOSTED)),
        "beta question": (_ok_attempt(LOCAL),),
        "gamma question": (LOCAL_BUSY, LOCAL_BUSY, _ok_attempt(HOSTED)),
    }
    write(
        log,
        *(
            make_record(
                messages=[{"role": "user", "content": prompt}],
                attempts=attempts,
                response_text=f"answer to {prompt.split()[0]}",
            )
            for prompt, attempts in shapes.items()
        ),
    )
    by_prompt = {c.prompt: c for c in recent_calls(db, limit=0)}
    assert set(by_prompt) == {"earlier row", *shapes}
    for prompt, attempts in shapes.items():
        call = by_prompt[prompt]
        assert [(a.route, a.outcome) for a in call.attempts] == [
            (a.route, a.outcome) for a in attempts
        ]
        word = prompt.split()[0]
        assert [c.prompt for c in recent_calls(db, search=word)] == [prompt]
        assert call.response_text == f"answer to {word}"


def test_a_failed_call_is_placed_on_the_last_route_tried(make_log: Any, db: Path) -> None:
    log = make_log()
    failed_hosted = Attempt(
        route=HOSTED.route,
        kind="hosted",
        model="deepseek-flash",
        outcome="failed",
        error="HostedAuthError",
        status_code=401,
    )
    write(
        log,
        make_record(
            ok=False,
            served_by=None,
            attempts=(LOCAL_BUSY, failed_hosted),
            error_class="AllRoutesFailedError",
            error_message="no route could answer",
            response_text=None,
        ),
    )
    [call] = recent_calls(db)
    assert not call.ok
    assert (call.kind, call.route, call.route_model) == ("hosted", HOSTED.route, "deepseek-flash")
    assert call.error_class == "AllRoutesFailedError"


def test_the_messages_are_logged_as_sent_even_if_the_caller_changes_them(
    make_log: Any, db: Path
) -> None:
    log = make_log()
    history = [{"role": "user", "content": "first question"}]
    log.record(make_record(messages=history))
    # The usual chat loop: append the answer right after the call returns.
    history.append({"role": "assistant", "content": "answer"})
    history[0]["content"] = "edited"
    assert log.flush()
    assert recent_calls(db)[0].messages == [{"role": "user", "content": "first question"}]


def test_a_lone_surrogate_never_costs_a_call_or_its_batch(make_log: Any, db: Path) -> None:
    # From a JSON escape like "\ud800": not encodable as UTF-8. Before, the insert failed
    # and the whole batch of rows around it was dropped.
    log = make_log()
    write(
        log,
        make_record(model_requested="before"),
        make_record(
            model_requested="half\ud800", messages=[{"role": "user", "content": "x\udfff"}]
        ),
        make_record(model_requested="after"),
    )
    calls = recent_calls(db)
    assert [c.model_requested for c in calls] == ["after", "half\ufffd", "before"]
    assert calls[1].messages == [{"role": "user", "content": "x\ufffd"}]


def test_images_are_not_stored_and_ollama_messages_are_accepted(make_log: Any, db: Path) -> None:
    log = make_log()
    image = b"\x89PNG" + b"\x00" * 5000
    messages = [
        ollama.Message(role="user", content="what is this?", images=[ollama.Image(value=image)]),
        {"role": "user", "content": "and this?", "images": ["aGVsbG8=" * 1000]},
    ]
    write(log, make_record(messages=messages))
    [call] = recent_calls(db)
    assert call.messages is not None
    assert [m["content"] for m in call.messages] == ["what is this?", "and this?"]
    assert all(m["images"] == ["<image omitted (1)>"] for m in call.messages)
    assert b"aGVsbG8=aGVsbG8=" not in db.read_bytes()


def test_record_never_raises_and_counts_what_it_cannot_store(make_log: Any, db: Path) -> None:
    log = make_log()
    log.record(object())  # type: ignore[arg-type]
    write(log, make_record())
    assert log.dropped == 1
    assert len(recent_calls(db)) == 1
    log.close()
    log.record(make_record())  # after close: dropped, not raised
    assert log.dropped == 2
    assert log.drop_reasons == {"error": 1, "closed": 1}


def test_flush_and_close_without_any_record_touch_nothing(make_log: Any, db: Path) -> None:
    log = make_log()
    assert log.flush(timeout=0.1)
    log.close()
    log.close()
    assert not db.exists()


def test_the_database_is_private_to_the_user(make_log: Any, db: Path) -> None:
    write(make_log(), make_record())
    assert db.stat().st_mode & 0o777 == 0o600
    assert db.parent.stat().st_mode & 0o777 == 0o700


# -- queries -------------------------------------------------------------------------


@pytest.fixture
def sample(make_log: Any, db: Path) -> Path:
    now = time.time()
    log = make_log()
    write(
        log,
        make_record(started_at=now - 7200, messages=[{"role": "user", "content": "old question"}]),
        make_record(
            started_at=now - 60,
            served_by=HOSTED,
            attempts=(LOCAL_BUSY, _ok_attempt(HOSTED)),
            fallback_reason="local busy",
            messages=[{"role": "user", "content": "explain semaphores"}],
            response_text="a semaphore counts permits",
        ),
        make_record(
            started_at=now - 30,
            model_requested="deepseek-coder-v2:16b",
            served_by=LOCAL.model_copy(update={"model": "deepseek-coder-v2:16b"}),
            messages=[{"role": "user", "content": "write a haiku"}],
        ),
        make_record(
            started_at=now - 10,
            ok=False,
            served_by=None,
            attempts=(LOCAL_BUSY,),
            error_class="AllRoutesFailedError",
            error_message="no route could answer: timeout on local",
            response_text=None,
        ),
    )
    return db


def test_recent_calls_are_newest_first_and_limited(sample: Path) -> None:
    calls = recent_calls(sample, limit=0)
    assert len(calls) == 4
    assert [c.started_at for c in calls] == sorted((c.started_at for c in calls), reverse=True)
    assert len(recent_calls(sample, limit=2)) == 2


def test_filters_by_model_route_failure_and_time(sample: Path) -> None:
    def prompts(**filters: Any) -> list[str | None]:
        return [c.prompt for c in recent_calls(sample, limit=0, **filters)]

    assert prompts(model="deepseek-coder-v2:16b") == ["write a haiku"]
    assert prompts(model="deepseek-coder-v2") == ["write a haiku"]  # every tag
    assert prompts(model="deepseek-flash") == ["explain semaphores"]  # the model that served
    assert prompts(route="hosted") == ["explain semaphores"]
    assert prompts(route="hosted:api.deepseek") == ["explain semaphores"]  # a prefix
    assert len(prompts(route="local")) == 3  # the failed call last tried local
    assert [c.error_class for c in recent_calls(sample, failed=True)] == ["AllRoutesFailedError"]
    assert "old question" not in prompts(since=time.time() - 3600)
    assert len(prompts(since=time.time() - 3600)) == 3


def test_full_text_search_over_prompts_answers_and_errors(sample: Path) -> None:
    assert search_mode(sample) == "fts5"
    assert [c.prompt for c in recent_calls(sample, search="semaphores")] == ["explain semaphores"]
    assert [c.prompt for c in recent_calls(sample, search="permits")] == ["explain semaphores"]
    assert [c.error_class for c in recent_calls(sample, search="timeout")] == [
        "AllRoutesFailedError"
    ]
    assert recent_calls(sample, search="explain haiku") == []  # every word must match
    # FTS5 syntax in user input is taken literally, never an error.
    assert recent_calls(sample, search='"unbalanced OR ( sk-* NEAR') == []


def test_search_falls_back_to_like_without_fts5(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema, "fts5_available", lambda conn: False)
    write(make_log(), make_record(messages=[{"role": "user", "content": "100% Semaphores_x"}]))
    monkeypatch.undo()
    assert search_mode(db) == "like"
    assert len(recent_calls(db, search="semaphores")) == 1
    assert len(recent_calls(db, search="100%")) == 1
    assert recent_calls(db, search="100_") == []  # LIKE wildcards are escaped


def test_stats_per_route_and_model(make_log: Any, db: Path) -> None:
    now = time.time()
    records = [
        make_record(started_at=now - 5, total_s=float(t), ttft_s=t / 10, prompt_tokens=100)
        for t in (1, 2, 3, 4)
    ]
    records += [
        make_record(
            started_at=now - 5,
            served_by=HOSTED,
            attempts=(LOCAL_BUSY, _ok_attempt(HOSTED)),
            fallback_reason=reason,
            total_s=10.0,
            ttft_s=1.0,
            prompt_tokens=1000,
            completion_tokens=50,
            reasoning_tokens=20,
            cached_tokens=500,
            cost_usd=0.002,
        )
        for reason in ("local busy", "local busy", "local down")
    ]
    records.append(
        make_record(
            started_at=now - 5,
            ok=False,
            served_by=None,
            attempts=(LOCAL_BUSY,),
            total_s=99.0,
            error_class="AllRoutesFailedError",
        )
    )
    records.append(make_record(started_at=now - 90_000))  # outside the default window
    write(make_log(), *records)

    stats = call_stats(db, since=now - 86_400)
    assert stats is not None
    assert stats.overall.calls == 8
    assert stats.overall.failures == 1
    assert stats.overall.fallback_share == pytest.approx(3 / 8)
    assert stats.overall.fallback_reasons == {"local busy": 2, "local down": 1}
    local, hosted = stats.groups
    assert (local.route, local.model, local.calls, local.failures) == (
        LOCAL.route,
        LOCAL.model,
        5,
        1,
    )
    # Latency covers answered calls only: the failed 99 s call is not in it.
    assert (local.total_s.p50, local.total_s.p95, local.total_s.samples) == (2.5, 3.85, 4)
    assert local.ttft_s.p99 == pytest.approx(0.397)
    assert (hosted.kind, hosted.model, hosted.calls) == ("hosted", "deepseek-flash", 3)
    assert hosted.fallback_share == 1.0
    assert (hosted.prompt_tokens, hosted.completion_tokens) == (3000, 150)
    assert (hosted.reasoning_tokens, hosted.cached_tokens) == (60, 1500)
    assert hosted.cost_usd == pytest.approx(0.006)
    by_route = {a.route: a for a in stats.attempts}
    assert by_route[LOCAL.route].outcomes == {"ok": 4, "fallback": 4}
    assert by_route[LOCAL.route].errors == {"BusyError": 4}
    json.dumps(stats.to_json())

    everything = call_stats(db)
    assert everything is not None
    assert everything.overall.calls == 9


def test_queries_on_a_missing_database_create_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none" / "logs.db"
    assert recent_calls(path) == []
    assert call_stats(path) is None
    assert dropped_counts(path) == {}
    assert search_mode(path) is None
    assert not path.exists()


def test_parse_since() -> None:
    assert parse_since("30m", now=10_000.0) == 8200.0
    assert parse_since("1w", now=1_000_000.0) == 1_000_000.0 - 604_800
    assert parse_since("2026-01-02T00:00:00Z") == 1767312000.0
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("soon")


# -- settings: shared instance, path, disabling ---------------------------------------


def test_open_call_log_shares_one_instance_per_path() -> None:
    settings = load_settings()
    sink = open_call_log(settings)
    assert sink is not None
    log = sink.log
    try:
        # One writer per path, whoever opens it and whatever their content switch.
        assert open_call_log(load_settings()).log is log  # type: ignore[union-attr]
        assert open_call_log(settings, source="cli").log is log  # type: ignore[union-attr]
        assert open_call_log(load_settings(log_content=True)).log is log  # type: ignore[union-attr]
        assert log.path == default_log_path() == log_path_for(settings)
        assert default_log_path().name == "logs.db"
    finally:
        log.close()
    again = open_call_log(settings)
    assert again is not None
    assert again.log is not log
    again.log.close()


def test_log_path_setting_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSOLLAMA_LOG_PATH", str(tmp_path / "custom.db"))
    sink = open_call_log(load_settings())
    assert sink is not None
    write(sink, make_record())
    sink.log.close()
    assert len(recent_calls(tmp_path / "custom.db")) == 1
    assert not default_log_path().exists()


def test_dsollama_log_off_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSOLLAMA_LOG", "off")
    settings = load_settings()
    assert open_call_log(settings) is None
    assert not default_log_path().exists()
    assert not default_log_path().parent.exists()


def test_content_logging_off_keeps_only_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSOLLAMA_LOG_CONTENT", "off")
    sink = open_call_log(load_settings(), source="cli")  # off wins over the CLI's default
    assert sink is not None
    assert not sink.content
    write(
        sink,
        make_record(
            messages=[{"role": "user", "content": "confidential-plan-alpha"}],
            response_text="confidential-answer-beta",
            response_thinking="confidential-thought-gamma",
        ),
    )
    sink.log.close()
    path = default_log_path()
    [call] = recent_calls(path)
    assert call.messages is None
    assert call.response_text is None
    assert call.response_thinking is None
    assert (call.model_requested, call.total_s, call.prompt_tokens) == ("deepseek-r1:8b", 0.5, 10)
    assert recent_calls(path, search="confidential") == []
    for name in ("logs.db", "logs.db-wal"):
        file = path.with_name(name)
        if file.exists():
            assert b"confidential" not in file.read_bytes()


def _indexed_rows(path: Path) -> int:
    """Rows in the full-text index (FTS5 keeps one size record per indexed row)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM calls_fts_docsize").fetchone()[0])
    finally:
        conn.close()


def test_metadata_only_rows_hold_no_text_and_are_not_indexed(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = CallLog(db)  # the writer's own default is the library's: metadata only
    log.record(
        make_record(
            messages=[
                {"role": "user", "content": "zebra-question", "tool_calls": [{"x": "zebra-args"}]}
            ],
            response_text="zebra-answer",
            response_thinking="zebra-thought",
            ok=False,
            error_class="ServerError",
            error_message="no route could answer: timeout",
        )
    )
    log.record(make_record(messages=[{"role": "user", "content": "kept question"}]), content=True)
    log.close()
    files = [p for p in db.parent.iterdir() if p.name.startswith("logs.db")]
    assert b"zebra" not in b"".join(p.read_bytes() for p in files)
    assert _indexed_rows(db) == 1  # the content row only
    metadata_only, kept = sorted(recent_calls(db, limit=0), key=lambda c: c.content_logged)
    assert metadata_only.error_message == "no route could answer: timeout"  # metadata stays
    assert json.loads(json.dumps(metadata_only.to_json()))["content_logged"] is False
    assert kept.to_json()["content_logged"] is True
    assert metadata_only_count(db) == 1
    assert metadata_only_count(db, failed=True) == 1
    assert metadata_only_count(db, since=time.time() + 60) == 0
    # A metadata-only row is never searched, by FTS5 or by the LIKE fallback alike.
    for fts in (True, False):
        monkeypatch.setattr(schema, "fts5_available", lambda conn, fts=fts: fts)
        assert search_mode(db) == ("fts5" if fts else "like")
        assert [c.prompt for c in recent_calls(db, search="kept")] == ["kept question"]
        assert recent_calls(db, search="timeout") == []


# -- secrets -------------------------------------------------------------------------

DEEPSEEK_KEY = "sk-4f1c0ffee5ecre7Qz9w"
CUSTOM_KEY = "vllm-token-Zq81xPq03"  # no recognisable shape: only known because configured
SERVE_TOKEN = "serve-tok-Hh27LmNn"
URL_PASSWORD = "pa55w0rd-XYZ"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.sig"


def test_no_secret_ever_reaches_the_database_file(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(hosted_api_key=CUSTOM_KEY, serve_token=SERVE_TOKEN, log_content=True)
    sink = open_call_log(settings)
    assert sink is not None
    assert CUSTOM_KEY not in repr(sink)
    leak = (
        f"my key is {DEEPSEEK_KEY} and {CUSTOM_KEY}; token {SERVE_TOKEN}; "
        f"host http://alice:{URL_PASSWORD}@localhost:11434; Authorization: Bearer {BEARER}"
    )
    write(
        sink,
        make_record(
            model_requested=f"deepseek-r1:8b {CUSTOM_KEY}",
            messages=[
                {"role": "system", "content": f"please-remember-this {leak}"},
                {"role": "user", "content": leak, "tool_calls": [{"arguments": {"k": leak}}]},
            ],
            response_text=leak,
            response_thinking=leak,
            fallback_reason=leak,
            attempts=(LOCAL_BUSY.model_copy(update={"detail": leak}),),
        ),
        make_record(
            ok=False,
            served_by=None,
            error_class="HostedAuthError",
            error_message=f"Authentication Fails, Your api key: ****Qz9w is invalid ({leak})",
        ),
    )
    sink.log.close()

    path = default_log_path()
    files = [p for p in path.parent.iterdir() if p.name.startswith("logs.db")]
    blob = b"".join(p.read_bytes() for p in files)
    assert b"please-remember-this" in blob  # the content is there, so the grep can see
    for secret in (DEEPSEEK_KEY, CUSTOM_KEY, SERVE_TOKEN, URL_PASSWORD, BEARER, "Qz9w"):
        assert secret.encode() not in blob, secret
    assert recent_calls(path, search="Qz9w") == []
    assert recent_calls(path, search="please-remember-this")[0].response_text is not None


# -- migrations ----------------------------------------------------------------------


def _v1_database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    schema.configure(conn)
    assert schema.migrate(conn, target=1) == [1]
    conn.execute(
        "INSERT INTO calls (started_at, operation, source, model_requested, ok, total_s, "
        "messages, response_text) VALUES (?, 'chat', 'library', 'deepseek-r1:8b', 1, 1.5, ?, ?)",
        (time.time() - 100, json.dumps([{"role": "user", "content": "legacy question"}]), "ok"),
    )
    conn.close()


def test_an_old_database_is_upgraded_and_keeps_its_rows(make_log: Any, db: Path) -> None:
    _v1_database(db)
    write(make_log(), make_record(messages=[{"role": "user", "content": "new question"}]))

    conn = sqlite3.connect(db)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    conn.close()
    assert versions == [m.version for m in schema.MIGRATIONS] == [1, 2]
    assert [c.prompt for c in recent_calls(db)] == ["new question", "legacy question"]
    # Migration 2 indexed the rows written before it existed.
    assert [c.prompt for c in recent_calls(db, search="legacy")] == ["legacy question"]


def test_future_migrations_apply_once_in_order(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(make_log(), make_record())
    applied: list[int] = []

    def add_column(conn: sqlite3.Connection) -> None:
        applied.append(3)
        conn.execute("ALTER TABLE calls ADD COLUMN note TEXT")

    monkeypatch.setattr(
        schema, "MIGRATIONS", (*schema.MIGRATIONS, schema.Migration(3, "note", add_column))
    )
    write(make_log(), make_record())  # a new writer upgrades the database
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert schema.migrate(conn) == []  # idempotent
        assert schema.applied_versions(conn) == {1, 2, 3}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(calls)")}
    finally:
        conn.close()
    assert applied == [3]
    assert "note" in columns
    assert len(recent_calls(db)) == 2


def test_a_database_from_a_newer_version_still_works(make_log: Any, db: Path) -> None:
    write(make_log(), make_record())
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 0)")
    conn.close()
    log = make_log()
    write(log, make_record())
    assert log.dropped == 0
    assert len(recent_calls(db)) == 2


# -- losing rows ---------------------------------------------------------------------


def test_a_full_disk_drops_rows_and_writing_resumes_when_space_returns(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write(make_log(), make_record())
    configure = schema.configure

    def full(conn: sqlite3.Connection) -> None:
        configure(conn)
        # SQLite's page cap answers SQLITE_FULL exactly as a full disk does.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(schema, "configure", full)
    log = make_log()
    with caplog.at_level(logging.WARNING, logger="dsollama"):
        write(log, make_record(response_text="x" * 200_000))
    assert log.drop_reasons == {"full": 1}
    assert "not recorded (full)" in caplog.text

    monkeypatch.setattr(schema, "configure", configure)
    write(log, make_record())
    assert log.dropped == 1
    assert len(recent_calls(db, limit=0)) == 2
    assert dropped_counts(db) == {"full": 1}  # persisted at the next write


def test_an_unwritable_location_drops_rows_without_raising(make_log: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = make_log(blocker / "logs.db")
    write(log, make_record(), make_record())
    assert log.drop_reasons == {"unavailable": 2}
