"""The request log under load: many writers (threads, async tasks, processes), a database
locked by another process, a full queue. Calls must never wait on the log, and every row
is either stored or counted as dropped."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dsollama._calllog import CallLog, LogSink, dropped_counts, recent_calls, store
from dsollama._types import Attempt, CallRecord, ServedBy

LOCAL = ServedBy(
    kind="local",
    route="local:127.0.0.1:11434",
    endpoint="http://127.0.0.1:11434",
    model="deepseek-r1:8b",
)


def make_record(tag: str = "", **overrides: Any) -> CallRecord:
    fields: dict[str, Any] = {
        "operation": "chat",
        "model_requested": "deepseek-r1:8b",
        "ok": True,
        "served_by": LOCAL,
        "attempts": (
            Attempt(route=LOCAL.route, kind="local", model="deepseek-r1:8b", outcome="ok"),
        ),
        "total_s": 0.2,
        "messages": [{"role": "user", "content": f"question {tag}"}],
        "response_text": f"answer {tag}",
    }
    fields.update(overrides)
    return CallRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "logs.db"


@pytest.fixture
def make_log(db: Path) -> Iterator[Any]:
    logs: list[CallLog] = []

    def factory(**kwargs: Any) -> CallLog:
        kwargs.setdefault("log_content", True)  # these tests count rows by their prompts
        log = CallLog(db, **kwargs)
        logs.append(log)
        return log

    yield factory
    for log in logs:
        log.close()


def _prompts(db: Path) -> list[str]:
    return sorted(str(c.prompt) for c in recent_calls(db, limit=0))


def test_many_threads_write_without_loss(make_log: Any, db: Path) -> None:
    log = make_log()
    threads, per_thread = 16, 150
    start = threading.Barrier(threads)

    def writer(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.record(make_record(f"t{n}-{i}"))

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert log.flush()
    assert log.dropped == 0
    expected = sorted(f"question t{n}-{i}" for n in range(threads) for i in range(per_thread))
    assert _prompts(db) == expected


@pytest.mark.anyio
async def test_many_async_tasks_and_threads_write_without_loss(make_log: Any, db: Path) -> None:
    log = make_log()

    async def task(n: int) -> None:
        for i in range(10):
            log.record(make_record(f"a{n}-{i}"))
            await anyio.lowlevel.checkpoint()  # interleave with the other tasks

    def blocking(n: int) -> None:
        for i in range(10):
            log.record(make_record(f"s{n}-{i}"))

    async with anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(task, n)
        for n in range(8):
            tg.start_soon(anyio.to_thread.run_sync, blocking, n)
    assert await anyio.to_thread.run_sync(log.flush)
    assert log.dropped == 0
    prompts = _prompts(db)
    assert len(prompts) == 1080
    assert len(set(prompts)) == 1080


def test_calls_in_quick_succession_wake_the_writer_once(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A wake-up per call competes with the caller for the CPU and the GIL: the writer,
    # woken by the first record, lets the others gather and stores them in one go.
    monkeypatch.setattr(store, "GATHER_S", 60.0)
    log = make_log()
    transactions: list[int] = []
    insert = log._insert

    def counted(conn: Any, rows: list[Any], pending: dict[str, int]) -> None:
        transactions.append(len(rows))
        insert(conn, rows, pending)

    monkeypatch.setattr(log, "_insert", counted)
    for i in range(10):
        log.record(make_record(str(i)))
        time.sleep(0.005)  # calls a few milliseconds apart, as a busy program makes them
    started = time.monotonic()
    assert log.flush()  # a flush does not wait out the gathering
    assert time.monotonic() - started < 30
    assert transactions == [10]
    assert len(_prompts(db)) == 10


def test_a_backlog_of_whole_batches_is_stored_without_waiting_to_gather(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Gathering is for a trickle of calls. With a whole batch already queued, a wait per
    # batch would cap the writer at one batch per GATHER_S: past that rate the queue, and
    # the memory of a busy serve, would grow until rows were dropped.
    monkeypatch.setattr(store, "GATHER_S", 60.0)
    log = make_log()
    transactions: list[int] = []
    stored = threading.Event()
    insert = log._insert

    def counted(conn: Any, rows: list[Any], pending: dict[str, int]) -> None:
        insert(conn, rows, pending)
        transactions.append(len(rows))
        if sum(transactions) >= 2 * store._BATCH:
            stored.set()

    monkeypatch.setattr(log, "_insert", counted)
    start = log._start
    monkeypatch.setattr(log, "_start", lambda: None)  # queue the backlog first
    for i in range(2 * store._BATCH + 5):
        log.record(make_record(str(i)))
    start()
    # The first two batches go in at once; only the last few wait to gather.
    assert stored.wait(30), f"stored only {transactions} while a backlog waited"
    assert transactions[:2] == [store._BATCH, store._BATCH]
    assert log.flush()
    assert len(_prompts(db)) == 2 * store._BATCH + 5


def test_two_sinks_in_one_process_share_the_file(make_log: Any, db: Path) -> None:
    first, second = make_log(), make_log(log_content=False)
    for i in range(200):
        (first if i % 2 else second).record(make_record(str(i)))
    assert first.flush()
    assert second.flush()
    calls = recent_calls(db, limit=0)
    assert len(calls) == 200
    assert sum(c.messages is None for c in calls) == 100


def test_sinks_with_different_content_switches_share_one_writer(make_log: Any, db: Path) -> None:
    log = make_log(log_content=False)
    keeping, metadata_only = LogSink(log, content=True), LogSink(log, content=False)

    def writer(sink: LogSink, tag: str) -> None:
        for i in range(150):
            sink.record(make_record(f"{tag}-{i}"))

    workers = [
        threading.Thread(target=writer, args=(keeping, "kept")),
        threading.Thread(target=writer, args=(metadata_only, "secret")),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert log.flush()
    calls = recent_calls(db, limit=0)
    assert len(calls) == 300
    kept = [c for c in calls if c.content_logged]
    assert sorted(str(c.prompt) for c in kept) == sorted(f"question kept-{i}" for i in range(150))
    assert all(c.response_text == "answer " + str(c.prompt)[len("question ") :] for c in kept)
    assert b"secret-" not in b"".join(p.read_bytes() for p in db.parent.glob("logs.db*"))


_WRITER_PROCESS = textwrap.dedent(
    """
    import sys
    from dsollama._calllog import CallLog
    from dsollama._types import CallRecord

    log = CallLog(sys.argv[1], busy_timeout=10.0, log_content=True)
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(200):
        log.record(CallRecord(
            operation="generate", model_requested="deepseek-r1:8b", ok=True,
            messages=[{"role": "user", "content": f"p{sys.argv[2]}-{i}"}],
        ))
    assert log.flush(10.0)
    print(log.dropped, flush=True)
    """
)


def test_a_lock_reported_at_once_is_tried_again_within_the_busy_timeout(
    make_log: Any, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In some races (processes setting WAL mode on a new file) SQLite says "locked"
    # without waiting out the busy timeout: that is no reason yet to drop the batch.
    import sqlite3

    log = make_log(busy_timeout=10.0)
    insert = log._insert
    refusals = [sqlite3.OperationalError("database is locked")] * 2

    def racing(conn: Any, rows: list[Any], pending: dict[str, int]) -> None:
        if refusals:
            raise refusals.pop()
        insert(conn, rows, pending)

    monkeypatch.setattr(log, "_insert", racing)
    log.record(make_record("raced"))
    assert log.flush()
    assert refusals == []
    assert log.dropped == 0
    assert _prompts(db) == ["question raced"]


def test_several_processes_create_migrate_and_write_one_database(make_log: Any, db: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER_PROCESS, str(db), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # release them together: they race to create the schema
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        log = make_log(busy_timeout=10.0)  # and this process joins the race
        for i in range(200):
            log.record(make_record(f"here-{i}"))
        outputs = [p.communicate(timeout=30)[0].strip() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert log.flush()
    assert outputs == ["0", "0"]
    assert log.dropped == 0
    assert len(recent_calls(db, limit=0)) == 600


_LOCKER_PROCESS = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    print("released", flush=True)
    """
)


class _Locker:
    """Another process holding an exclusive lock on the database until released."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOCKER_PROCESS, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "released"
        self.proc.wait(timeout=10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


# A sink that waited on the lock would spend the whole busy timeout in record(); half of
# it is a bound that fails such a sink and still holds on a loaded machine.
BUSY = 0.4


def test_a_database_locked_by_another_process_drops_rows_not_calls(
    make_log: Any, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(busy_timeout=BUSY)
    log.record(make_record("before"))
    assert log.flush()

    locker = _Locker(db)
    try:
        with caplog.at_level(logging.WARNING, logger="dsollama"):
            started = time.perf_counter()
            log.record(make_record("during-1"))
            spent = time.perf_counter() - started
            assert log.flush()  # the writer gave up after its busy timeout
            log.record(make_record("during-2"))
            assert log.flush()
        assert spent < BUSY / 2, f"record() waited {spent * 1000:.1f} ms on a locked database"
        assert log.dropped == 2
        assert log.drop_reasons == {"locked": 2}
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # one warning, then only counting
        assert "not recorded (locked)" in warnings[0].getMessage()
        locker.release()
    finally:
        locker.close()

    log.record(make_record("after"))
    assert log.flush()
    assert _prompts(db) == ["question after", "question before"]
    assert dropped_counts(db) == {"locked": 2}


@pytest.mark.anyio
async def test_a_locked_database_never_stalls_the_event_loop(make_log: Any, db: Path) -> None:
    # A long busy timeout: had any record() call waited on the lock, the 200 calls would
    # take at least this long, so staying far below it proves none did.
    busy = 3.0
    log = make_log(busy_timeout=busy)
    log.record(make_record("warm-up"))
    assert await anyio.to_thread.run_sync(log.flush)
    locker = _Locker(db)
    try:
        started = time.perf_counter()
        for i in range(200):
            log.record(make_record(str(i)))
        spent = time.perf_counter() - started
        # Each batch the writer takes waits out the busy timeout; on a loaded machine the
        # 200 rows can arrive as two or three batches, so allow for more than one wait.
        assert await anyio.to_thread.run_sync(lambda: log.flush(timeout=busy * 4))
    finally:
        locker.close()
    assert spent < busy / 3, f"200 record() calls took {spent * 1000:.1f} ms"
    assert log.dropped == 200


def test_a_full_queue_drops_and_counts(
    make_log: Any, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(max_queue=4)
    entered, release = threading.Event(), threading.Event()
    write = log._write

    def stalled(conn: Any, records: Any) -> Any:
        entered.set()
        release.wait(10)
        return write(conn, records)

    log._write = stalled  # the writer is busy, as behind a slow disk
    log.record(make_record("first"))
    assert entered.wait(5)
    with caplog.at_level(logging.WARNING, logger="dsollama"):
        for i in range(4 + 3):
            log.record(make_record(str(i)))
    assert log.dropped == 3
    assert log.drop_reasons == {"queue full": 3}
    assert "not recorded (queue full)" in caplog.text
    release.set()
    assert log.flush()
    assert len(recent_calls(db, limit=0)) == 5
    assert dropped_counts(db) == {"queue full": 3}


def test_close_waits_for_queued_rows(make_log: Any, db: Path) -> None:
    log = make_log()
    for i in range(300):
        log.record(make_record(str(i)))
    log.close(timeout=10)
    assert log.dropped == 0
    assert len(recent_calls(db, limit=0)) == 300


_EXITING_PROCESS = textwrap.dedent(
    """
    from dsollama._calllog import open_call_log
    from dsollama._config import load_settings
    from dsollama._types import CallRecord

    log = open_call_log(load_settings())
    for i in range(50):
        log.record(CallRecord(operation="chat", model_requested="m", ok=True))
    # no flush, no close: the exit hook must store what is queued
    """
)


def test_queued_rows_are_stored_at_interpreter_exit() -> None:
    from dsollama._calllog import default_log_path

    # The child inherits this test's isolated XDG_DATA_HOME, so both agree on the path.
    subprocess.run([sys.executable, "-c", _EXITING_PROCESS], check=True, timeout=30)
    assert len(recent_calls(default_log_path(), limit=0)) == 50
