"""The request log's SQLite schema and its versioned migrations.

Migrations are an ordered tuple of functions, each applied once and recorded in the
``schema_migrations`` table. They only ever *add* (tables, columns, indexes), so a
database written by a newer dsollama still works with an older one and an upgrade never
rewrites or loses rows. Each migration runs in its own ``BEGIN IMMEDIATE`` transaction
and re-checks that table under the write lock, so two processes opening an old database
at the same moment apply every step exactly once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MIGRATIONS",
    "Migration",
    "applied_versions",
    "configure",
    "connect",
    "fts5_available",
    "has_fts_index",
    "migrate",
    "prompt_text",
]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


def _m001_initial(conn: sqlite3.Connection) -> None:
    # kind/route/route_model: the route that served the call, or for a failed call the
    # last route tried, so `logs --route` and `stats` can place failures too.
    conn.execute(
        """
        CREATE TABLE calls (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            operation TEXT NOT NULL,
            source TEXT NOT NULL,
            stream INTEGER NOT NULL DEFAULT 0,
            model_requested TEXT NOT NULL,
            ok INTEGER NOT NULL,
            kind TEXT,
            route TEXT,
            endpoint TEXT,
            route_model TEXT,
            thinking INTEGER,
            fallback_reason TEXT,
            error_class TEXT,
            error_message TEXT,
            ttft_s REAL,
            total_s REAL NOT NULL DEFAULT 0,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            reasoning_tokens INTEGER,
            cached_tokens INTEGER,
            cost_usd REAL,
            attempt_count INTEGER NOT NULL DEFAULT 0,
            messages TEXT,
            response_text TEXT,
            response_thinking TEXT
        )
        """
    )
    conn.execute("CREATE INDEX calls_started_at ON calls (started_at)")
    conn.execute(
        """
        CREATE TABLE attempts (
            call_id INTEGER NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            route TEXT NOT NULL,
            kind TEXT NOT NULL,
            model TEXT NOT NULL,
            outcome TEXT NOT NULL,
            error TEXT,
            status_code INTEGER,
            detail TEXT,
            started_at REAL,
            duration_s REAL,
            ttft_s REAL,
            PRIMARY KEY (call_id, seq)
        ) WITHOUT ROWID
        """
    )
    # Rows the writer could not store (queue full, database locked or full), persisted
    # later so `dsollama logs` / `stats` can say how much is missing.
    conn.execute(
        "CREATE TABLE dropped (at REAL NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL)"
    )


def _m002_fulltext(conn: sqlite3.Connection) -> None:
    # Contentless FTS5: the text already lives in `calls`; the index keeps only terms.
    # Without FTS5 in this sqlite3 build the step is recorded anyway and search falls
    # back to LIKE (query.py checks for the table, not the version).
    if not fts5_available(conn):
        return
    conn.execute(
        "CREATE VIRTUAL TABLE calls_fts USING fts5"
        "(prompt, answer, error, content='', tokenize='unicode61 remove_diacritics 2')"
    )
    rows = conn.execute(
        "SELECT id, messages, response_text, response_thinking, error_message FROM calls"
    )
    conn.executemany(
        "INSERT INTO calls_fts (rowid, prompt, answer, error) VALUES (?, ?, ?, ?)",
        (
            (id_, prompt_text(_loads(messages)), _join(text, thinking), error)
            for id_, messages, text, thinking, error in rows.fetchall()
        ),
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "calls, attempts and dropped tables", _m001_initial),
    Migration(2, "full-text index over content", _m002_fulltext),
)


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _join(*parts: str | None) -> str:
    return "\n".join(p for p in parts if p)


def prompt_text(messages: Any) -> str:
    """The searchable text of a message list: every string ``content``, one per line.

    >>> prompt_text([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    'be brief\\nhi'
    >>> prompt_text(None)
    ''
    """
    if not isinstance(messages, list):
        return ""
    return _join(*(m.get("content") for m in messages if isinstance(m, dict)))


def fts5_available(conn: sqlite3.Connection) -> bool:
    """Whether this sqlite3 build can create FTS5 tables."""
    try:
        conn.execute("CREATE VIRTUAL TABLE temp._dsollama_fts_probe USING fts5(x)")
        conn.execute("DROP TABLE temp._dsollama_fts_probe")
    except sqlite3.Error:
        return False
    return True


def has_fts_index(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calls_fts'"
    ).fetchone()
    return row is not None


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings. WAL lets readers (`dsollama logs`) run beside the writer;
    NORMAL sync is durable in WAL except for the last commits on power loss, which is
    the right trade for a log that must stay off the request path."""
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def _create_private(path: Path) -> None:
    # Prompts and answers are private: folder 0700, file 0600. SQLite gives the -wal and
    # -shm files the main file's permissions, so creating it first covers them too.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)


def connect(path: Path, *, busy_timeout: float, create: bool = True) -> sqlite3.Connection:
    """Open (and, with ``create``, make) the log database in autocommit mode.

    ``busy_timeout`` bounds every wait for another process's lock; past it SQLite raises
    ``database is locked`` instead of stalling.
    """
    if create:
        _create_private(path)
        target, uri = str(path), False
    else:
        # mode=rw: a reader must never create an empty database where none was.
        target, uri = path.absolute().as_uri() + "?mode=rw", True
    conn = sqlite3.connect(
        target, timeout=busy_timeout, isolation_level=None, uri=uri, check_same_thread=False
    )
    try:
        configure(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return set()
    return {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}


def migrate(
    conn: sqlite3.Connection,
    *,
    migrations: Iterable[Migration] | None = None,
    target: int | None = None,
) -> list[int]:
    """Apply the pending migrations (up to ``target``) in order; return those applied.

    Idempotent: a second call, or a call racing another process, applies nothing twice.
    """
    steps = sorted(MIGRATIONS if migrations is None else migrations, key=lambda m: m.version)
    done = applied_versions(conn)
    pending = [
        m for m in steps if m.version not in done and (target is None or m.version <= target)
    ]
    applied: list[int] = []
    for step in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            # Re-check under the write lock: another process may have just applied it.
            seen = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (step.version,)
            ).fetchone()
            if seen is None:
                step.apply(conn)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (step.version, step.name, time.time()),
                )
                applied.append(step.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied
