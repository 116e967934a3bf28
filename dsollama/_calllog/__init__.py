"""The request log: every call recorded in a local SQLite database, off the request path.

    log = open_call_log(settings)     # None when logging is off; shared per path
    log.record(call_record)           # from any thread or event loop; never blocks or raises

`store` holds the sink and its writer thread, `schema` the versioned migrations, `query`
the readers behind `dsollama logs` and `dsollama stats`. See docs/request-log.md.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .query import (
    AttemptStats,
    CallStats,
    GroupStats,
    Latency,
    LoggedAttempt,
    LoggedCall,
    call_stats,
    dropped_counts,
    parse_since,
    recent_calls,
    search_mode,
)
from .store import CallLog, close_all

if TYPE_CHECKING:
    from .._config import Settings

__all__ = [
    "AttemptStats",
    "CallLog",
    "CallStats",
    "GroupStats",
    "Latency",
    "LoggedAttempt",
    "LoggedCall",
    "call_stats",
    "close_all",
    "default_log_path",
    "dropped_counts",
    "log_path_for",
    "open_call_log",
    "parse_since",
    "recent_calls",
    "search_mode",
]

LOG_FILE = "logs.db"

_shared: dict[tuple[str, bool], CallLog] = {}
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


def open_call_log(settings: Settings) -> CallLog | None:
    """The process-wide sink for ``settings``' log, or None when logging is off.

    One instance per (path, content switch), so every client in a process shares one
    writer thread; it is flushed at interpreter exit with a bounded wait. Touches no
    file: the database is created by the writer on the first record.
    """
    if not settings.log:
        return None
    path = log_path_for(settings)
    key = (os.path.abspath(path), settings.log_content)
    token = settings.serve_token.get_secret_value() if settings.serve_token else None
    secrets = [s for s in (settings.api_key(), token) if s]
    with _shared_lock:
        log = _shared.get(key)
        if log is None or log.closed:
            log = CallLog(path, log_content=settings.log_content, secrets=secrets)
            _shared[key] = log
        else:
            # Clients with different keys may share the log; redact every one of them.
            log.add_secrets(secrets)
    return log
