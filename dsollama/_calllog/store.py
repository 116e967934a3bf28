"""`CallLog`: the request-log sink. ``record()`` enqueues; one writer thread stores.

The caller's side of ``record()`` is a shallow copy of the message list and a
``put_nowait`` (a few microseconds): no I/O, no lock held across I/O, nothing that can
raise. Everything else (JSON, redaction, SQLite) happens on the writer thread, which
drains the queue in batches, one transaction per batch. Woken by a record, the writer
first lets the calls that follow gather for `GATHER_S` (a flush or close cuts that
short): a busy caller then wakes it a few times a second instead of once per call, and
a wake-up that competes with the caller's threads for the GIL and the CPU, on every
call, would cost the caller more than the row itself. When the database cannot take a
batch (locked by another process past the busy timeout, disk full, unwritable folder)
the batch is dropped and counted: the log loses rows, never an answer. Counts of lost
rows are persisted in the ``dropped`` table at the next successful write, so
`dsollama logs` and `dsollama stats` can say how much is missing.

Content (messages, answer, reasoning) is kept only for records whose sink asks for it:
a process has one `CallLog` per database, and each client reaches it through its own
`LogSink`, so a library client that keeps metadata only and a CLI client that keeps
content can share one writer.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .._exceptions import redact
from . import schema

if TYPE_CHECKING:
    from .._types import CallRecord

__all__ = ["CallLog", "LogSink", "Row", "record_to_row", "scrub"]

logger = logging.getLogger("dsollama")

# Largest batch per transaction: big enough to amortise the commit, small enough that a
# flush marker queued behind a burst is answered quickly.
_BATCH = 256

_WRITER_CACHE_KIB = 512
"SQLite page cache of the writer's connection (its default is 2 MiB)."

GATHER_S = 0.2
"How long the writer, woken by a record, lets further records gather before it stores."
_ROWS_PER_YIELD = 16
"Rows converted between two hand-backs of the GIL (a few hundred microseconds of work)."

# In a str every surrogate code point is a lone one (a pair would be one character).
_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """Text fit for the log: redacted (`redact`), and storable.

    A lone surrogate (``"\\ud800"`` from a JSON escape) cannot be encoded as UTF-8: it
    becomes U+FFFD here instead of failing the whole batch of rows at the insert.

    >>> scrub("GET http://bob:pw@host:11434/api/chat?key=abc123&x=1")
    'GET http://****@host:11434/api/chat?key=****&x=1'
    >>> scrub("half a pair: \\ud800!")
    'half a pair: \\ufffd!'
    """
    text = redact(text, secrets)
    if not text.isascii():
        text = _SURROGATE.sub("\ufffd", text)
    return text


def _scrub_opt(text: str | None, secrets: Sequence[str]) -> str | None:
    return None if text is None else scrub(str(text), secrets)


_SHORT = 160


def _scrub_name(text: str | None, secrets: Sequence[str]) -> str | None:
    """`scrub` for a name (operation, route, endpoint, model): its result is remembered,
    as the same names come back with every call and three regular expressions per field
    were most of a row's cost. Texts (errors, reasons, content) are scrubbed each time."""
    if text is None:
        return None
    if len(text) > _SHORT:
        return scrub(text, secrets)
    return _scrub_short(text, tuple(secrets))


@functools.lru_cache(maxsize=1024)
def _scrub_short(text: str, secrets: tuple[str, ...]) -> str:
    return scrub(text, secrets)


def _jsonable(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON-safe, scrubbed copy of message data; images become a placeholder."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "images" and item:
                # Base64 images would bloat the log and are rarely what one searches for.
                count = len(item) if isinstance(item, (list, tuple)) else 1
                out["images"] = [f"<image omitted ({count})>"]
            else:
                out[str(key)] = _jsonable(item, secrets)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, secrets) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes omitted>"
    dump = getattr(value, "model_dump", None)  # pydantic messages (ollama.Message)
    if callable(dump):
        return _jsonable(dump(exclude_none=True), secrets)
    return scrub(str(value), secrets)


@dataclass(frozen=True)
class Row:
    """One call ready for SQLite: the ``calls`` values, its attempts, its search text.

    ``search`` is None for a metadata-only row: it leaves no terms in the full-text index.
    """

    call: dict[str, Any]
    attempts: list[tuple[Any, ...]]
    search: tuple[str, str, str] | None


def record_to_row(
    rec: CallRecord,
    messages: list[Any] | None,
    *,
    log_content: bool,
    secrets: Sequence[str] = (),
) -> Row:
    """Turn a `CallRecord` into storable values; every text passes through `scrub`.

    Without ``log_content`` the row holds no prompt, answer or reasoning, and nothing of
    it goes to the full-text index.
    """
    s = secrets
    served = rec.served_by
    last = rec.attempts[-1] if rec.attempts else None
    kind: str | None
    route: str | None
    endpoint: str | None
    model: str | None
    thinking: bool | None
    if served is not None:
        kind, route, endpoint, model = served.kind, served.route, served.endpoint, served.model
        thinking = served.thinking
    elif last is not None:
        kind, route, endpoint, model, thinking = last.kind, last.route, None, last.model, None
    else:
        kind = route = endpoint = model = None
        thinking = None

    msgs_json: str | None = None
    prompt = ""
    answer = thinking_text = None
    if log_content:
        if messages is not None:
            clean = _jsonable(messages, s)
            msgs_json = json.dumps(clean, ensure_ascii=False)
            prompt = schema.prompt_text(clean)
        answer = _scrub_opt(rec.response_text, s)
        thinking_text = _scrub_opt(rec.response_thinking, s)
    error_message = _scrub_opt(rec.error_message, s)

    call = {
        "started_at": float(rec.started_at),
        "operation": _scrub_name(str(rec.operation), s),
        "source": _scrub_name(str(rec.source), s),
        "stream": int(bool(rec.stream)),
        "model_requested": _scrub_name(str(rec.model_requested), s),
        "ok": int(bool(rec.ok)),
        "kind": kind,
        "route": _scrub_name(route, s),
        "endpoint": _scrub_name(endpoint, s),
        "route_model": _scrub_name(model, s),
        "thinking": None if thinking is None else int(thinking),
        "fallback_reason": _scrub_opt(rec.fallback_reason, s),
        "error_class": _scrub_opt(rec.error_class, s),
        "error_message": error_message,
        "ttft_s": rec.ttft_s,
        "total_s": float(rec.total_s),
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "reasoning_tokens": rec.reasoning_tokens,
        "cached_tokens": rec.cached_tokens,
        "cost_usd": rec.cost_usd,
        "attempt_count": len(rec.attempts),
        "messages": msgs_json,
        "response_text": answer,
        "response_thinking": thinking_text,
    }
    attempts = [
        (
            seq,
            _scrub_name(a.route, s),
            a.kind,
            _scrub_name(a.model, s),
            a.outcome,
            _scrub_opt(a.error, s),
            a.status_code,
            _scrub_opt(a.detail, s),
            a.started_at,
            a.duration_s,
            a.ttft_s,
        )
        for seq, a in enumerate(rec.attempts)
    ]
    search = None
    if log_content:
        search = (prompt, "\n".join(t for t in (answer, thinking_text) if t), error_message or "")
    return Row(call=call, attempts=attempts, search=search)


_CALL_COLUMNS = (
    "started_at, operation, source, stream, model_requested, ok, kind, route, endpoint, "
    "route_model, thinking, fallback_reason, error_class, error_message, ttft_s, total_s, "
    "prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_usd, "
    "attempt_count, messages, response_text, response_thinking"
)
_CALL_NAMES = tuple(c.strip() for c in _CALL_COLUMNS.split(","))
# The id is given: a batch's ids are chosen together (see `CallLog._insert`).
_INSERT_CALL = (
    f"INSERT INTO calls (id, {_CALL_COLUMNS}) "
    f"VALUES (:id, {', '.join(':' + n for n in _CALL_NAMES)})"
)
_INSERT_FTS = "INSERT INTO calls_fts (rowid, prompt, answer, error) VALUES (?, ?, ?, ?)"
_INSERT_ATTEMPT = (
    "INSERT INTO attempts (call_id, seq, route, kind, model, outcome, error, status_code, "
    "detail, started_at, duration_s, ttft_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Stop:
    """Queue sentinel: finish what is queued, then end the writer."""


_STOP = _Stop()
# A record, the messages copied when it was recorded, and whether to keep its content.
_Queued = tuple["CallRecord", "list[Any] | None", bool]
_Item = Union[_Queued, threading.Event, _Stop]

# Every live CallLog, so a fork can reset them and interpreter exit can flush them.
_LIVE: weakref.WeakSet[CallLog] = weakref.WeakSet()


def _classify(exc: BaseException) -> str:
    """A short reason for a failed write, as stored in the ``dropped`` table."""
    if isinstance(exc, OSError):  # the folder or file could not be made
        return "unavailable"
    text = f"{getattr(exc, 'sqlite_errorname', '')} {exc}".lower()
    if "locked" in text or "busy" in text:
        return "locked"
    if "full" in text:
        return "full"
    if any(word in text for word in ("unable to open", "readonly", "i/o", "cantopen")):
        return "unavailable"
    return "error"


class CallLog:
    """The request-log writer: `record()` never blocks or raises; a writer thread stores.

    ``log_content``: keep the prompt and answer of records that do not say otherwise
    (`record`'s ``content``); off unless asked, like the library. ``dropped`` counts rows
    this instance lost (queue full, database locked or full, closed); the counts are also
    persisted in the database when it can be written.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        log_content: bool = False,
        max_queue: int = 10_000,
        secrets: Iterable[str] = (),
        busy_timeout: float = 1.0,
    ) -> None:
        self.path = Path(path).expanduser()
        self.log_content = log_content
        self.max_queue = max_queue
        self.busy_timeout = busy_timeout
        self._secrets: tuple[str, ...] = tuple(dict.fromkeys(s for s in secrets if s))
        self._reset_runtime()
        _LIVE.add(self)

    def _reset_runtime(self) -> None:
        self._queue: queue.Queue[_Item] = queue.Queue(self.max_queue)
        self._hurry = threading.Event()
        "Set by flush and close: store what has gathered now."
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dropped = 0
        self._unpersisted: dict[str, int] = {}
        self._drop_reasons: dict[str, int] = {}
        self._warned = False

    def __repr__(self) -> str:  # never shows the secrets it redacts
        return f"CallLog({str(self.path)!r}, log_content={self.log_content})"

    # -- caller side -------------------------------------------------------------

    def record(self, rec: CallRecord, *, content: bool | None = None) -> None:
        """Queue one finished call for the writer. Never blocks, never raises.

        ``content``: keep its messages, answer and reasoning (None: ``log_content``).
        """
        try:
            if self._closed:
                self._drop("closed")
                return
            if self._thread is None:
                self._start()
            keep = self.log_content if content is None else bool(content)
            messages = None
            if keep and rec.messages is not None:
                # Callers commonly append the answer to their history right after the
                # call; a shallow copy now keeps the logged request as it was sent.
                messages = [dict(m) if isinstance(m, dict) else m for m in rec.messages]
            self._queue.put_nowait((rec, messages, keep))
        except queue.Full:
            self._drop("queue full")
        except Exception:
            self._drop("error")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="dsollama-calllog", daemon=True)
                thread.start()
                self._thread = thread

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every call recorded before now is stored or counted as dropped.

        Returns False if that did not happen within ``timeout`` seconds.
        """
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        if self._closed:  # the writer is finishing; its queue takes no more markers
            thread.join(timeout)
            return not thread.is_alive()
        deadline = time.monotonic() + timeout
        marker = threading.Event()
        try:
            self._queue.put(marker, timeout=max(timeout, 0.0))
        except queue.Full:
            return False
        self._hurry.set()
        return marker.wait(max(deadline - time.monotonic(), 0.0))

    def close(self, timeout: float = 5.0) -> None:
        """Store what is queued (waiting at most ``timeout`` seconds), then stop."""
        self._closed = True
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=max(timeout, 0.0))
        except queue.Full:
            return
        self._hurry.set()
        thread.join(max(deadline - time.monotonic(), 0.0))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Rows this instance could not store."""
        return self._dropped

    @property
    def drop_reasons(self) -> dict[str, int]:
        """Rows lost so far, by reason (queue full, locked, full, unavailable, closed, error)."""
        with self._lock:
            return dict(self._drop_reasons)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also redact these exact strings (configured keys) from everything stored."""
        self._secrets = tuple(dict.fromkeys([*self._secrets, *(s for s in secrets if s)]))

    def _drop(self, reason: str, count: int = 1) -> None:
        try:
            with self._lock:
                self._dropped += count
                self._drop_reasons[reason] = self._drop_reasons.get(reason, 0) + count
                self._unpersisted[reason] = self._unpersisted.get(reason, 0) + count
                first = not self._warned
                self._warned = True
            if first and reason != "closed":
                logger.warning(
                    "request log %s: %d call(s) not recorded (%s); calls are unaffected, "
                    "further losses are counted and shown by `dsollama logs`",
                    self.path,
                    count,
                    reason,
                )
        except Exception:  # a broken logging handler must not reach the caller
            pass

    # -- writer thread -----------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        stop = False
        try:
            while not stop:
                batch = [self._queue.get()]
                if (
                    not isinstance(batch[0], (_Stop, threading.Event))
                    and self._queue.qsize() < _BATCH - 1
                ):
                    # Let the calls that follow this one gather (see the module docstring).
                    # Not when a whole batch is already waiting: one wait per batch would
                    # cap the writer at _BATCH rows per GATHER_S, and past that rate the
                    # queue (and the process's memory) would grow until rows were dropped.
                    self._hurry.wait(GATHER_S)
                self._hurry.clear()
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                records: list[_Queued] = []
                markers: list[threading.Event] = []
                for item in batch:
                    if isinstance(item, _Stop):
                        stop = True
                    elif isinstance(item, threading.Event):
                        markers.append(item)
                    else:
                        records.append(item)
                if records or (stop and self._unpersisted):
                    conn = self._write(conn, records)
                for marker in markers:
                    marker.set()
        finally:
            if conn is not None:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._abandon_queue()

    def _abandon_queue(self) -> None:
        """Count what a record() racing close() left behind; release any flush waiter."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, threading.Event):
                item.set()
            elif not isinstance(item, _Stop):
                self._drop("closed")

    def _open(self) -> sqlite3.Connection:
        conn = schema.connect(self.path, busy_timeout=self.busy_timeout)
        try:
            # The writer appends: the pages it touches are the right edges of a few
            # B-trees. SQLite's default cache (2 MiB) would only hold a long-running
            # process's memory higher; this is plenty for appending.
            conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            schema.migrate(conn)
            self._fts = schema.has_fts_index(conn) and schema.fts5_available(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _write(
        self,
        conn: sqlite3.Connection | None,
        records: list[_Queued],
    ) -> sqlite3.Connection | None:
        rows: list[Row] = []
        secrets = self._secrets
        for n, (rec, messages, keep) in enumerate(records, 1):
            try:
                rows.append(record_to_row(rec, messages, log_content=keep, secrets=secrets))
            except Exception:
                self._drop("error")
            if n % _ROWS_PER_YIELD == 0:
                # Hand the GIL back now and then: JSON and regexes hold it, and a burst
                # would otherwise make the caller's threads (the event loop) wait a
                # switch interval. Not after every row: each hand-back is a system call,
                # which on a busy machine gives the CPU away as well.
                time.sleep(0)
        with self._lock:
            pending, self._unpersisted = self._unpersisted, {}
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                if conn is None:
                    conn = self._open()
                self._insert(conn, rows, pending)
                return conn
            except Exception as exc:
                reason = _classify(exc)
                if reason == "locked" and time.monotonic() + pause < deadline:
                    # SQLite waits out another writer's lock up to the busy timeout, but
                    # in some races it answers "locked" at once (processes setting WAL
                    # mode on a new file, a WAL recovery): try again within the timeout.
                    time.sleep(pause)
                    pause = min(pause * 2, 0.1)
                    continue
                with self._lock:  # not stored: keep the earlier counts for a later write
                    for key, count in pending.items():
                        self._unpersisted[key] = self._unpersisted.get(key, 0) + count
                if rows:
                    self._drop(reason, len(rows))
                if conn is not None and reason != "locked":
                    # Reopen next time: the file may have been replaced or the disk freed.
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                    conn = None
                return conn

    def _insert(self, conn: sqlite3.Connection, rows: list[Row], pending: dict[str, int]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                # The write lock is ours until COMMIT, so the next ids are known: each
                # table gets the whole batch in one statement instead of one per row (a
                # statement hands the GIL back and forth; the event loop wants it too).
                (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM calls").fetchone()
                ids = range(last + 1, last + 1 + len(rows))
                conn.executemany(
                    _INSERT_CALL, [{"id": i, **row.call} for i, row in zip(ids, rows, strict=True)]
                )
                attempts = [(i, *a) for i, row in zip(ids, rows, strict=True) for a in row.attempts]
                if attempts:
                    conn.executemany(_INSERT_ATTEMPT, attempts)
                if self._fts:
                    terms = [
                        (i, *row.search)
                        for i, row in zip(ids, rows, strict=True)
                        if row.search is not None and any(row.search)
                    ]
                    if terms:
                        conn.executemany(_INSERT_FTS, terms)
            now = time.time()
            if pending:
                conn.executemany(
                    "INSERT INTO dropped (at, reason, count) VALUES (?, ?, ?)",
                    [(now, reason, count) for reason, count in pending.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise

    _fts: bool = False


@dataclass(frozen=True)
class LogSink:
    """One client's way into a shared `CallLog`: the same writer, its own content switch.

    A call sink (``record(rec)``); ``content`` says whether this client's calls keep their
    prompt, answer and reasoning.
    """

    log: CallLog
    content: bool

    def record(self, rec: CallRecord) -> None:
        self.log.record(rec, content=self.content)


def _after_fork_in_child() -> None:
    # The writer thread does not survive fork(); the parent still owns its queued rows.
    for log in list(_LIVE):
        log._reset_runtime()


def close_all(timeout: float = 2.0) -> None:
    """Flush and stop every live CallLog, sharing one bounded wait (used at exit)."""
    deadline = time.monotonic() + timeout
    for log in list(_LIVE):
        log.close(max(deadline - time.monotonic(), 0.0))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# Daemon writer threads are frozen after atexit handlers run, so this is the last chance
# to store queued rows; the wait is bounded so a locked database cannot hang exit.
atexit.register(close_all)
