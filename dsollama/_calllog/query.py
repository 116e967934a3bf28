"""Reading the request log: recent calls with filters, full-text search, statistics.

Readers open the database read-write but never create it (``mode=rw``), apply pending
migrations when they can (so a database written by an older dsollama can be read), and
otherwise read it as it is. WAL mode lets them run while another process writes.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._exceptions import DsollamaError
from . import schema

__all__ = [
    "AttemptStats",
    "CallStats",
    "GroupStats",
    "Latency",
    "LoggedAttempt",
    "LoggedCall",
    "call_stats",
    "dropped_counts",
    "metadata_only_count",
    "parse_since",
    "percentile",
    "recent_calls",
    "search_mode",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_since(text: str, *, now: float | None = None) -> float:
    """A ``--since`` value as Unix time: ``90s``, ``30m``, ``1h``, ``2d``, ``1w`` ago, or ISO 8601.

    ISO times without an offset are local time.

    >>> parse_since("2h", now=10_000.0)
    2800.0
    >>> parse_since("2026-01-02T03:04:05+00:00")
    1767323045.0
    >>> parse_since("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: 'yesterday' is neither a duration like 30m, 1h, 2d nor an ISO 8601 time
    """
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return (time.time() if now is None else now) - amount * _UNITS[unit]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration like 30m, 1h, 2d nor an ISO 8601 time"
        ) from None
    return moment.timestamp()  # naive datetimes are taken as local time


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, as numpy's default.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> percentile([5.0], 99)
    5.0
    >>> percentile([], 50) is None
    True
    """
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(sorted_values[low])
    frac = rank - low
    return float(sorted_values[low] * (1 - frac) + sorted_values[high] * frac)


# -- connections ---------------------------------------------------------------------


def _open(path: Path) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    try:
        conn = schema.connect(path, busy_timeout=0.5, create=False)
    except sqlite3.Error as exc:
        raise _unreadable(path, exc) from None
    try:
        schema.migrate(conn)
    except sqlite3.OperationalError:
        pass  # locked by a writer: read the schema as it is
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _unreadable(path, exc) from None
    try:
        fresh = _check_layout(conn, path)
    except BaseException:
        conn.close()
        raise
    if fresh:
        conn.close()
        return None
    conn.row_factory = sqlite3.Row
    return conn


_RESET_HINT = (
    "move it aside with `dsollama logs --reset` (the next call starts a new log), "
    "or set DSOLLAMA_LOG_PATH to use another file"
)


def _unreadable(path: Path, exc: BaseException) -> DsollamaError:
    return DsollamaError(f"cannot read the request log {path}: {exc}", hint=_RESET_HINT)


@functools.cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """The columns of each table the migrations make (read from a scratch database)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        schema.migrate(conn)
        return {
            table: frozenset(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
            for table in ("calls", "attempts", "dropped")
        }
    finally:
        conn.close()


def _check_layout(conn: sqlite3.Connection, path: Path) -> bool:
    """Raise if the database is not a request log; True if it has no tables yet.

    A file another program wrote (or a damaged copy) would otherwise fail later with
    "no such column", which says nothing about the fix.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return True  # created by a writer that has not laid it out yet: no calls
    for table, wanted in _expected_columns().items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing = sorted(wanted - have)
        if missing:
            named = ", ".join(missing[:4]) + (
                f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            )
            what = (
                f"has no '{table}' table"
                if not have
                else f"has a '{table}' table without the column(s) {named}"
            )
            raise DsollamaError(
                f"the request log {path} {what}: it is not a dsollama request log, "
                "or a damaged one",
                hint=_RESET_HINT,
            )
    return False


def search_mode(path: Path) -> str | None:
    """'fts5' or 'like' (how ``search`` works on this database); None if there is none."""
    conn = _open(path)
    if conn is None:
        return None
    with _closing(conn):
        return "fts5" if _use_fts(conn) else "like"


def _use_fts(conn: sqlite3.Connection) -> bool:
    return schema.has_fts_index(conn) and schema.fts5_available(conn)


class _closing:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


# -- recent calls --------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedAttempt:
    route: str
    kind: str
    model: str
    outcome: str
    error: str | None
    status_code: int | None
    detail: str | None
    started_at: float | None
    duration_s: float | None
    ttft_s: float | None


@dataclass(frozen=True)
class LoggedCall:
    """One call as stored. ``kind``/``route``/``route_model`` name the route that served
    it, or for a failed call the last route tried."""

    id: int
    started_at: float
    operation: str
    source: str
    stream: bool
    model_requested: str
    ok: bool
    kind: str | None
    route: str | None
    endpoint: str | None
    route_model: str | None
    thinking: bool | None
    fallback_reason: str | None
    error_class: str | None
    error_message: str | None
    ttft_s: float | None
    total_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    cached_tokens: int | None
    cost_usd: float | None
    messages: list[Any] | None
    response_text: str | None
    response_thinking: str | None
    attempts: tuple[LoggedAttempt, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = datetime.fromtimestamp(self.started_at, timezone.utc).isoformat()
        out["content_logged"] = self.content_logged
        out["attempts"] = [asdict(a) for a in self.attempts]
        return out

    @property
    def content_logged(self) -> bool:
        """Whether the prompt and answer were kept (False: a metadata-only row)."""
        return not (
            self.messages is None and self.response_text is None and self.response_thinking is None
        )

    @property
    def prompt(self) -> str | None:
        """The last user message (the turn this call answered), when content was kept."""
        if not self.messages:
            return None
        texts = [m for m in self.messages if isinstance(m, dict)]
        users = [m for m in texts if m.get("role") == "user"] or texts
        content = users[-1].get("content") if users else None
        return content if isinstance(content, str) else None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _fts_query(text: str) -> str:
    """Each word becomes a quoted phrase, so user input never trips FTS5 syntax.

    >>> print(_fts_query("busy OR sk-x*"))
    "busy" "OR" "sk-x*"
    """
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


# A row that kept its content; metadata-only rows have none of the three.
_HAS_CONTENT = (
    "(messages IS NOT NULL OR response_text IS NOT NULL OR response_thinking IS NOT NULL)"
)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filters(
    conn: sqlite3.Connection,
    *,
    model: str | None,
    route: str | None,
    failed: bool,
    since: float | None,
    until: float | None,
    search: str | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    if until is not None:
        where.append("started_at < ?")
        args.append(until)
    if failed:
        where.append("ok = 0")
    if model:
        clause = "model_requested = ? OR route_model = ?"
        args += [model, model]
        if ":" not in model:  # 'deepseek-r1' also means every tag of it
            clause += " OR model_requested GLOB ? OR route_model GLOB ?"
            args += [_glob_escape(model) + ":*"] * 2
        where.append(f"({clause})")
    if route:
        if route in ("local", "hosted"):
            where.append("kind = ?")
            args.append(route)
        else:
            where.append("(route = ? OR route GLOB ?)")
            args += [route, _glob_escape(route) + "*"]
    words = (search or "").split()
    if words:
        # Search covers calls that kept their content: a metadata-only row is not indexed
        # (and older ones, indexed by their error alone, are left out the same way).
        where.append(_HAS_CONTENT)
        if _use_fts(conn):
            where.append("id IN (SELECT rowid FROM calls_fts WHERE calls_fts MATCH ?)")
            args.append(_fts_query(" ".join(words)))
        else:
            haystack = (
                "(coalesce(messages, '') || ' ' || coalesce(response_text, '') || ' ' || "
                "coalesce(response_thinking, '') || ' ' || coalesce(error_message, ''))"
            )
            for word in words:
                where.append(f"{haystack} LIKE ? ESCAPE '\\'")
                args.append(f"%{_like_escape(word)}%")
    return (" WHERE " + " AND ".join(where)) if where else "", args


def recent_calls(
    path: Path,
    *,
    limit: int = 10,
    model: str | None = None,
    route: str | None = None,
    failed: bool = False,
    since: float | None = None,
    search: str | None = None,
) -> list[LoggedCall]:
    """The last ``limit`` calls (0: all) matching the filters, newest first.

    ``route`` is 'local', 'hosted' or a route name (or its prefix); ``model`` matches the
    model asked for or the one that served (a name without a tag matches every tag);
    ``search`` is full-text over prompts, answers and error messages of the calls that
    kept their content (`metadata_only_count` says how many it could not look at).
    """
    conn = _open(path)
    if conn is None:
        return []
    with _closing(conn):
        where, args = _filters(
            conn,
            model=model,
            route=route,
            failed=failed,
            since=since,
            until=None,
            search=search,
        )
        sql = f"SELECT * FROM calls{where} ORDER BY started_at DESC, id DESC"
        if limit > 0:
            sql += " LIMIT ?"
            args.append(limit)
        rows = conn.execute(sql, args).fetchall()
        attempts = _attempts_for(conn, [int(r["id"]) for r in rows])
    return [_to_call(r, attempts.get(int(r["id"]), ())) for r in rows]


def metadata_only_count(
    path: Path,
    *,
    model: str | None = None,
    route: str | None = None,
    failed: bool = False,
    since: float | None = None,
) -> int:
    """How many calls matching the filters were logged without content (search skips them)."""
    conn = _open(path)
    if conn is None:
        return 0
    with _closing(conn):
        where, args = _filters(
            conn,
            model=model,
            route=route,
            failed=failed,
            since=since,
            until=None,
            search=None,
        )
        where = f"{where} AND NOT {_HAS_CONTENT}" if where else f" WHERE NOT {_HAS_CONTENT}"
        row = conn.execute(f"SELECT count(*) FROM calls{where}", args).fetchone()
    return int(row[0])


def _attempts_for(
    conn: sqlite3.Connection, ids: Sequence[int]
) -> dict[int, tuple[LoggedAttempt, ...]]:
    out: dict[int, list[LoggedAttempt]] = {}
    for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.execute(
            f"SELECT * FROM attempts WHERE call_id IN ({marks}) ORDER BY call_id, seq", chunk
        ):
            out.setdefault(int(r["call_id"]), []).append(
                LoggedAttempt(
                    route=r["route"],
                    kind=r["kind"],
                    model=r["model"],
                    outcome=r["outcome"],
                    error=r["error"],
                    status_code=r["status_code"],
                    detail=r["detail"],
                    started_at=r["started_at"],
                    duration_s=r["duration_s"],
                    ttft_s=r["ttft_s"],
                )
            )
    return {k: tuple(v) for k, v in out.items()}


def _to_call(r: sqlite3.Row, attempts: tuple[LoggedAttempt, ...]) -> LoggedCall:
    messages = None
    if r["messages"]:
        try:
            loaded = json.loads(r["messages"])
            messages = loaded if isinstance(loaded, list) else None
        except ValueError:
            messages = None
    return LoggedCall(
        id=int(r["id"]),
        started_at=float(r["started_at"]),
        operation=r["operation"],
        source=r["source"],
        stream=bool(r["stream"]),
        model_requested=r["model_requested"],
        ok=bool(r["ok"]),
        kind=r["kind"],
        route=r["route"],
        endpoint=r["endpoint"],
        route_model=r["route_model"],
        thinking=None if r["thinking"] is None else bool(r["thinking"]),
        fallback_reason=r["fallback_reason"],
        error_class=r["error_class"],
        error_message=r["error_message"],
        ttft_s=r["ttft_s"],
        total_s=float(r["total_s"] or 0.0),
        prompt_tokens=r["prompt_tokens"],
        completion_tokens=r["completion_tokens"],
        reasoning_tokens=r["reasoning_tokens"],
        cached_tokens=r["cached_tokens"],
        cost_usd=r["cost_usd"],
        messages=messages,
        response_text=r["response_text"],
        response_thinking=r["response_thinking"],
        attempts=attempts,
    )


def dropped_counts(path: Path, *, since: float | None = None) -> dict[str, int]:
    """Calls that were not recorded (persisted counts), by reason."""
    conn = _open(path)
    if conn is None:
        return {}
    with _closing(conn):
        return _dropped(conn, since)


def _dropped(conn: sqlite3.Connection, since: float | None) -> dict[str, int]:
    sql, args = "SELECT reason, sum(count) FROM dropped", []
    if since is not None:
        sql += " WHERE at >= ?"
        args.append(since)
    try:
        rows = conn.execute(sql + " GROUP BY reason ORDER BY reason", args).fetchall()
    except sqlite3.OperationalError:  # no such table: a database not yet migrated
        return {}
    return {str(r[0]): int(r[1]) for r in rows}


# -- statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    """Percentiles in seconds (None when there is no sample)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    samples: int = 0

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Latency:
        ordered = sorted(float(v) for v in values if v is not None)
        p50, p95, p99 = (percentile(ordered, q) for q in (50, 95, 99))
        return cls(p50=p50, p95=p95, p99=p99, samples=len(ordered))


@dataclass(frozen=True)
class GroupStats:
    """Calls served by (or, when failed, last tried on) one route and model.

    Latency percentiles cover answered calls only: a refused connection and a timed-out
    one would otherwise pull the numbers in opposite directions.
    """

    kind: str | None
    route: str | None
    model: str | None
    calls: int = 0
    failures: int = 0
    fallbacks: int = 0
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    total_s: Latency = Latency()
    ttft_s: Latency = Latency()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def fallback_share(self) -> float:
        return self.fallbacks / self.calls if self.calls else 0.0

    @property
    def failure_share(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["fallback_share"] = self.fallback_share
        out["failure_share"] = self.failure_share
        return out


@dataclass(frozen=True)
class AttemptStats:
    """Every try on one route, whether or not the call ended there."""

    route: str
    kind: str
    attempts: int
    outcomes: dict[str, int]
    errors: dict[str, int]


@dataclass(frozen=True)
class CallStats:
    since: float | None
    until: float
    overall: GroupStats
    groups: list[GroupStats]
    attempts: list[AttemptStats]
    dropped: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "overall": self.overall.to_json(),
            "groups": [g.to_json() for g in self.groups],
            "attempts": [asdict(a) for a in self.attempts],
            "dropped": self.dropped,
        }


def _group(key: tuple[str | None, str | None, str | None], rows: list[sqlite3.Row]) -> GroupStats:
    answered = [r for r in rows if r["ok"]]
    reasons = Counter(str(r["fallback_reason"]) for r in rows if r["fallback_reason"])

    def total(column: str) -> int:
        return sum(int(r[column] or 0) for r in rows)

    return GroupStats(
        kind=key[0],
        route=key[1],
        model=key[2],
        calls=len(rows),
        failures=sum(1 for r in rows if not r["ok"]),
        fallbacks=sum(reasons.values()),
        fallback_reasons=dict(reasons.most_common()),
        total_s=Latency.of(r["total_s"] for r in answered),
        ttft_s=Latency.of(r["ttft_s"] for r in answered),
        prompt_tokens=total("prompt_tokens"),
        completion_tokens=total("completion_tokens"),
        reasoning_tokens=total("reasoning_tokens"),
        cached_tokens=total("cached_tokens"),
        cost_usd=sum(float(r["cost_usd"] or 0.0) for r in rows),
    )


def call_stats(
    path: Path, *, since: float | None = None, until: float | None = None
) -> CallStats | None:
    """Per route and model over ``[since, until)``; None when there is no database."""
    until = time.time() if until is None else until
    conn = _open(path)
    if conn is None:
        return None
    with _closing(conn):
        where, args = _filters(
            conn,
            model=None,
            route=None,
            failed=False,
            since=since,
            until=until,
            search=None,
        )
        rows = conn.execute(
            "SELECT kind, route, route_model, ok, fallback_reason, ttft_s, total_s, "
            "prompt_tokens, completion_tokens, reasoning_tokens, cached_tokens, cost_usd "
            f"FROM calls{where}",
            args,
        ).fetchall()
        attempt_rows = conn.execute(
            "SELECT route, kind, outcome, error, count(*) AS n FROM attempts "
            f"WHERE call_id IN (SELECT id FROM calls{where}) "
            "GROUP BY route, kind, outcome, error",
            args,
        ).fetchall()
        dropped = _dropped(conn, since)

    by_key: dict[tuple[str | None, str | None, str | None], list[sqlite3.Row]] = {}
    for r in rows:
        by_key.setdefault((r["kind"], r["route"], r["route_model"]), []).append(r)
    groups = sorted(
        (_group(k, v) for k, v in by_key.items()),
        key=lambda g: (-g.calls, g.kind or "", g.route or "", g.model or ""),
    )

    per_route: dict[tuple[str, str], tuple[Counter[str], Counter[str]]] = {}
    for r in attempt_rows:
        outcomes, errors = per_route.setdefault((r["route"], r["kind"]), (Counter(), Counter()))
        outcomes[r["outcome"]] += int(r["n"])
        if r["error"]:
            errors[r["error"]] += int(r["n"])
    attempts = sorted(
        (
            AttemptStats(
                route=route,
                kind=kind,
                attempts=sum(outcomes.values()),
                outcomes=dict(outcomes.most_common()),
                errors=dict(errors.most_common()),
            )
            for (route, kind), (outcomes, errors) in per_route.items()
        ),
        key=lambda a: (-a.attempts, a.route),
    )
    return CallStats(
        since=since,
        until=until,
        overall=_group((None, None, None), rows),
        groups=groups,
        attempts=attempts,
        dropped=dropped,
    )


def last_route_errors(path: Path) -> dict[str, LoggedAttempt]:
    """The newest failed attempt of each route in the log (for `dsollama routes`)."""
    conn = _open(path)
    if conn is None:
        return {}
    out: dict[str, LoggedAttempt] = {}
    with _closing(conn):
        rows = conn.execute(
            "SELECT route, kind, model, outcome, error, status_code, detail, started_at,"
            " duration_s, ttft_s FROM attempts WHERE error IS NOT NULL"
            " ORDER BY started_at DESC LIMIT 2000"
        ).fetchall()
    for r in rows:
        if r["route"] not in out:
            out[r["route"]] = LoggedAttempt(
                route=r["route"],
                kind=r["kind"],
                model=r["model"],
                outcome=r["outcome"],
                error=r["error"],
                status_code=r["status_code"],
                detail=r["detail"],
                started_at=r["started_at"],
                duration_s=r["duration_s"],
                ttft_s=r["ttft_s"],
            )
    return out
