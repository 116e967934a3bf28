"""The request log: every call recorded in a local SQLite database, off the request path.

    sink = open_call_log(settings, source="library")  # None when logging is off
    sink.record(call_record)     # from any thread or event loop; never blocks or raises

`store` holds the writer thread (one per database in a process) and the per-client sinks,
`content` decides whose calls keep their prompt and answer, `schema` the versioned
migrations, `query` the readers behind `dsollama logs` and `dsollama stats`. See
docs/request-log.md.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .content import claim_notice, keeps_content, notice_text
from .query import (
    AttemptStats,
    CallStats,
    GroupStats,
    Latency,
    LoggedAttempt,
    LoggedCall,
    call_stats,
    dropped_counts,
    metadata_only_count,
    parse_since,
    recent_calls,
    search_mode,
)
from .store import CallLog, LogSink, close_all

if TYPE_CHECKING:
    from .._config import Settings

__all__ = [
    "AttemptStats",
    "CallLog",
    "CallStats",
    "GroupStats",
    "Latency",
    "LogSink",
    "LoggedAttempt",
    "LoggedCall",
    "call_stats",
    "close_all",
    "content_notice",
    "default_log_path",
    "dropped_counts",
    "keeps_content",
    "log_path_for",
    "metadata_only_count",
    "open_call_log",
    "parse_since",
    "recent_calls",
    "search_mode",
]

LOG_FILE = "logs.db"

_shared: dict[str, CallLog] = {}
_shared_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork time; the child must not inherit it.
    global _shared_lock
    _shared_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def default_log_path() -> Path:
    """``logs.db`` in the user data folder."""
    from .._config import user_data_dir

    return user_data_dir() / LOG_FILE


def log_path_for(settings: Settings) -> Path:
    """Where ``settings`` put the log (``log_path``, else the default), even when off."""
    if settings.log_path:
        return Path(settings.log_path).expanduser()
    return default_log_path()


def open_call_log(settings: Settings, *, source: str = "library") -> LogSink | None:
    """The sink through which a client made by ``source`` logs, or None when logging is off.

    ``source`` is 'library', 'cli' or 'serve'; with ``settings.log_content`` unset it
    decides whether calls keep their prompt and answer (`keeps_content`). Every sink on
    one database shares one `CallLog` (``sink.log``), so a process has one writer thread
    per database whatever its clients' content switches; it is flushed at interpreter
    exit with a bounded wait. Touches no file: the writer creates the database on the
    first record.
    """
    if not settings.log:
        return None
    path = log_path_for(settings)
    key = os.path.abspath(path)
    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    secrets = [s for s in (settings.api_key(), token) if s]
    with _shared_lock:
        log = _shared.get(key)
        if log is None or log.closed:
            log = CallLog(path, secrets=secrets)
            _shared[key] = log
        else:
            # Clients with different keys may share the log; redact every one of them.
            log.add_secrets(secrets)
    return LogSink(log, content=keeps_content(settings, source))


def content_notice(settings: Settings, source: str) -> str | None:
    """The line to show the first time ``source`` keeps prompts and answers in this log.

    None when logging or content logging is off for ``source``, or when the notice was
    already shown for this log (on this machine, by any process).
    """
    if not settings.log or not keeps_content(settings, source):
        return None
    path = log_path_for(settings)
    return notice_text(path) if claim_notice(path) else None
