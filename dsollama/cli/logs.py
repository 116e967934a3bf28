"""`dsollama logs` and `dsollama stats`: read the request log.

Data goes to stdout (a table, or JSON with ``--json``); notes (logging off, no log yet,
calls that could not be recorded) go to stderr, so ``--json`` output stays parseable.
Everything in the log came from outside (model names, prompts, answers, server errors):
it is shown through `printable` (escaped control characters, bounded length), and JSON
output escapes what a terminal would act on.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dsollama._text_safety import json_for_terminal, printable

if TYPE_CHECKING:
    from dsollama._calllog import CallStats, GroupStats, LoggedCall

__all__ = ["logs", "stats"]


def _parse_since(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``30m``, ``1h``, ``2d``, ``1w``, an ISO 8601 time, or ``all`` (no lower bound)."""
    if value is None or value.strip().lower() == "all":
        return None
    from dsollama._calllog import parse_since

    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _log_settings() -> tuple[bool, Path, str]:
    """(logging on?, database path, where the on/off setting came from)."""
    from dsollama._calllog import log_path_for
    from dsollama._config import explain_settings, load_settings

    settings = load_settings()
    source = next((s.source for s in explain_settings() if s.name == "log"), "default")
    return settings.log, log_path_for(settings), source


def _note_off(source: str) -> None:
    click.echo(
        f"Request logging is off ({source}). Turn it on with DSOLLAMA_LOG=on, "
        "or `log = true` in the config file.",
        err=True,
    )


def _note_dropped(dropped: dict[str, int], when: str = "") -> None:
    total = sum(dropped.values())
    if total:
        detail = ", ".join(f"{reason}: {n}" for reason, n in dropped.items())
        click.echo(
            f"Note: {total} call(s){when} could not be recorded ({detail}); the calls "
            "themselves were answered.",
            err=True,
        )


@click.command()
@click.option(
    "-n",
    "--count",
    "limit",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many calls to show (0: all).",
)
@click.option("-m", "--model", help="Only calls that asked for or were served by this model.")
@click.option(
    "-r",
    "--route",
    metavar="local|hosted|ROUTE",
    help="Only calls served by this kind of route, or this route (a prefix works).",
)
@click.option("--failed", is_flag=True, help="Only calls that failed.")
@click.option(
    "--since",
    metavar="DURATION|TIME",
    callback=_parse_since,
    help="Only calls since then: 30m, 1h, 2d, 1w or an ISO time.",
)
@click.option(
    "-q",
    "--query",
    "search",
    help="Full-text search in prompts, answers and errors (of calls that kept their content).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON with full content.")
@click.option("--path", "show_path", is_flag=True, help="Print the log's file path and exit.")
@click.option(
    "--reset",
    is_flag=True,
    help="Move the log aside (renamed with the time) so the next call starts a new one.",
)
def logs(
    limit: int,
    model: str | None,
    route: str | None,
    failed: bool,
    since: float | None,
    search: str | None,
    as_json: bool,
    show_path: bool,
    reset: bool,
) -> None:
    """Show recent calls from the request log, newest first.

    Each call shows the model asked for and what served it (route and model), the
    outcome, why it fell back, time to first token, total time, tokens and estimated
    hosted cost, and the prompt and answer when they were kept: by default for
    `dsollama chat`, `generate` and `serve`, not for programs using the library.
    DSOLLAMA_LOG_CONTENT=on or off (or log_content in the config file) decides for all;
    DSOLLAMA_LOG=off records nothing.

    \b
    Examples:
      dsollama logs -n 20
      dsollama logs --failed --since 1h
      dsollama logs --route hosted -q "timeout" --json
    """
    from dsollama._calllog import dropped_counts, metadata_only_count, recent_calls

    enabled, path, source = _log_settings()
    if show_path:
        click.echo(str(path))
        return
    if reset:
        _reset(path)
        return
    if not enabled:
        _note_off(source)
    if not path.exists():
        if as_json:
            click.echo("[]")
        if enabled:
            click.echo(f"No calls recorded yet; the log will be created at {path}.", err=True)
        return
    calls = recent_calls(
        path,
        limit=limit,
        model=model,
        route=route,
        failed=failed,
        since=since,
        search=search,
    )
    if as_json:
        click.echo(json_for_terminal([c.to_json() for c in calls]))
    elif calls:
        _print_calls(calls)
    else:
        click.echo("No calls match.", err=True)
    if not as_json and limit and len(calls) == limit:
        click.echo(f"Showing the last {limit} calls; -n 0 shows all.", err=True)
    if search and search.split():
        unsearched = metadata_only_count(path, model=model, route=route, failed=failed, since=since)
        if unsearched:
            click.echo(
                f"Note: {unsearched} call(s) were logged without prompts and answers "
                "(metadata only), so -q could not search them.",
                err=True,
            )
    _note_dropped(dropped_counts(path, since=since))


@click.command()
@click.option(
    "--since",
    metavar="DURATION|TIME",
    callback=_parse_since,
    default="24h",
    show_default=True,
    help="Period to summarise: 30m, 1h, 2d, 1w, an ISO time, or 'all'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def stats(since: float | None, as_json: bool) -> None:
    """Summarise calls per route and model: failures, fallbacks, latency, tokens, cost.

    Latency percentiles (p50/p95/p99) cover answered calls; a failed call is counted
    under the last route it tried.
    """
    from dsollama._calllog import call_stats

    enabled, path, source = _log_settings()
    if not enabled:
        _note_off(source)
    result = call_stats(path, since=since)
    if result is None:
        if as_json:
            click.echo(json.dumps(None))
        if enabled:
            click.echo(f"No calls recorded yet; the log will be created at {path}.", err=True)
        return
    if as_json:
        click.echo(json_for_terminal(result.to_json()))
    elif result.overall.calls:
        _print_stats(result)
    else:
        click.echo("No calls in this period.", err=True)
    _note_dropped(result.dropped, " in this period")


def _reset(path: Path) -> None:
    """Rename the database and its WAL companions to ``<name>.<time>`` next to it.

    Moved, not deleted: a log that cannot be read may still hold calls worth a look.
    """
    if not path.exists():
        click.echo(f"No request log at {path}; nothing to reset.", err=True)
        return
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{stamp}-{n}")
    # Companions first: a new log must never be created next to the old one's WAL.
    for suffix in ("-wal", "-shm", ""):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    click.echo(f"Moved the request log to {target}; the next call starts a new one at {path}.")
    click.echo(
        "A dsollama process that is running now keeps writing to the moved file until it restarts.",
        err=True,
    )


# -- rendering -----------------------------------------------------------------------


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 100:
        return f"{value:.2f}s"
    return f"{value:.0f}s"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return "$0" if value == 0 else f"${value:.4f}"


def _count(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f}k" if value >= 10_000 else str(value)


def _tokens(prompt: int | None, completion: int | None) -> str:
    if prompt is None and completion is None:
        return "- tok"
    return f"{_count(prompt)} → {_count(completion)} tok"


def _short(text: str | None, width: int = 70) -> str:
    """One line of at most ``width`` characters, control characters escaped."""
    flat = printable(" ".join((text or "").split()), limit=None)
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _name(text: str | None) -> str:
    """A model or route name from the log, safe to print."""
    return printable(text or "", limit=100)


def _served(call: LoggedCall) -> str:
    """' → deepseek-flash @ hosted:api.deepseek.com', ' @ local:…' when the model is the one asked."""
    if not call.ok:
        return f" failed (last tried {_name(call.route)})" if call.route else " failed"
    model = f" → {_name(call.route_model)}" if call.route_model != call.model_requested else ""
    return f"{model} @ {_name(call.route)}"


def _print_calls(calls: list[LoggedCall]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Narrow stacked cells keep a call readable in 80 columns; content lines are cut to
    # the column, never wrapped (--json has them in full).
    console = Console(highlight=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("time", no_wrap=True, width=10)
    # The call column takes what the two fixed columns (and padding) leave.
    call_width = max(console.width - 10 - 15 - 8, 24)
    table.add_column("call", width=call_width, no_wrap=True, overflow="ellipsis")
    table.add_column("timing, usage", justify="right", no_wrap=True, width=15)
    for call in calls:
        cell = Text(_name(call.model_requested), style="bold")
        cell.append(_served(call))
        if not call.ok:
            error = _name(call.error_class or "error")
            cell.append(f"\n{error}: {_short(call.error_message)}", "red")
        if call.fallback_reason:
            cell.append(f"\nfallback: {_short(call.fallback_reason)}", "yellow")
        if not call.content_logged:
            cell.append("\n(content not logged)", "dim italic")
        if call.prompt is not None:
            cell.append(f"\n> {_short(call.prompt, 200)}", "dim")
        if call.response_text is not None:
            cell.append(f"\n< {_short(call.response_text, 200)}", "dim")
        moment = datetime.fromtimestamp(call.started_at)
        usage = "\n".join(
            [
                f"ttft {_secs(call.ttft_s)}",
                f"total {_secs(call.total_s)}",
                _tokens(call.prompt_tokens, call.completion_tokens),
                _money(call.cost_usd),
            ]
        )
        table.add_row(f"{moment:%Y-%m-%d}\n{moment:%H:%M:%S}", cell, usage)
    console.print(table)


def _print_stats(result: CallStats) -> None:
    overall = result.overall
    since = (
        f"since {datetime.fromtimestamp(result.since):%Y-%m-%d %H:%M}"
        if result.since is not None
        else "in the whole log"
    )
    click.echo(
        f"{overall.calls} call(s) {since}: {overall.failures} failed "
        f"({overall.failure_share:.0%}), {overall.fallbacks} fell back "
        f"({overall.fallback_share:.0%}), hosted cost {_money(overall.cost_usd)}"
    )
    for group in result.groups:
        click.echo("")
        click.echo(_group_title(group))
        for line in _group_lines(group):
            click.echo(f"  {line}")
    if overall.fallback_reasons:
        click.echo("\nFallback reasons:")
        for reason, n in overall.fallback_reasons.items():
            click.echo(f"  {n:>6}  {printable(reason)}")
    if result.attempts:
        click.echo("\nAttempts by route (every try, including those that moved on):")
        routes = [_name(a.route) for a in result.attempts]
        width = max(len(r) for r in routes)
        for route, a in zip(routes, result.attempts, strict=True):
            outcomes = ", ".join(f"{_name(k)} {v}" for k, v in a.outcomes.items())
            errors = ", ".join(f"{_name(k)} {v}" for k, v in a.errors.items())
            suffix = f"; errors: {errors}" if errors else ""
            click.echo(f"  {route:<{width}}  {a.attempts:>6}  {outcomes}{suffix}")


def _group_title(group: GroupStats) -> str:
    if group.route is None:
        return "(no route tried)"
    return f"{_name(group.kind)} {_name(group.model or '?')} on {_name(group.route)}"


def _group_lines(group: GroupStats) -> list[str]:
    t, f = group.total_s, group.ttft_s
    return [
        f"calls   {group.calls}, failed {group.failures} ({group.failure_share:.0%}), "
        f"fell back {group.fallbacks} ({group.fallback_share:.0%})",
        f"total   p50 {_secs(t.p50)}  p95 {_secs(t.p95)}  p99 {_secs(t.p99)}",
        f"ttft    p50 {_secs(f.p50)}  p95 {_secs(f.p95)}  p99 {_secs(f.p99)}",
        f"tokens  {group.prompt_tokens} in, {group.completion_tokens} out, "
        f"{group.reasoning_tokens} reasoning, {group.cached_tokens} cached",
        f"cost    {_money(group.cost_usd)}",
    ]
