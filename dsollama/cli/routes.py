"""`dsollama routes`: every place that can answer, and how each one is doing.

For each route: its API and whether it is private (may serve ``local_only`` calls), the
models it serves, its capacity, the load the server itself reports (vLLM, llama-server,
SGLang), its breaker (shared across processes when ``state_url`` is set), and the last
error the request log holds for it. ``--presets`` lists the kinds of route there are.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dsollama._client import AsyncClient
    from dsollama._routes import RouteConfig

__all__ = ["routes"]


def _served(config: RouteConfig, catalogue_hosted: list[str]) -> list[str]:
    if config.names == "local":
        declared = list(config.models) + list(config.model_map)
        return declared or ["any model on the daemon"]
    if config.names == "hosted":
        return [*catalogue_hosted, *config.model_map]
    return list(dict.fromkeys([*config.model_map, *config.models]))


async def describe(client: AsyncClient) -> list[dict[str, Any]]:
    """One JSON-able description per configured route (usable or not)."""
    from dsollama._calllog import log_path_for
    from dsollama._calllog.query import last_route_errors
    from dsollama._exceptions import DsollamaError

    try:
        errors = last_route_errors(log_path_for(client.settings))
    except DsollamaError:
        errors = {}
    router = client.router
    backends = {b.route: b for b in router.backends}
    hosted_names = sorted(client.catalogue.hosted)
    out: list[dict[str, Any]] = []
    for config in client.route_configs:
        backend = backends.get(config.name)
        entry: dict[str, Any] = {
            "name": config.name,
            "api": config.api,
            "private": config.private,
            "base_url": config.base_url,
            "preset": config.preset,
            "models": _served(config, hosted_names),
            "capacity": config.capacity,
            "over_capacity": config.over_capacity,
            "load_signal": config.load_signal,
            "usable": backend is not None,
            "why_not": client.unavailable.get(config.name),
            "unverified": config.unverified,
        }
        if backend is not None:
            breaker = await router.breaker_state(config.name)
            entry["breaker"] = {
                "state": breaker.state,
                "retry_in_s": round(breaker.retry_in, 1),
                "reason": breaker.reason,
            }
            if config.load_signal != "none":
                loads: dict[str, Any] = {}
                for model in config.models or list(config.model_map.values()):
                    queue = await backend.server_queue(model)
                    loads[model] = (
                        None
                        if queue is None
                        else {"running": queue.running, "waiting": queue.waiting}
                    )
                entry["server_load"] = loads
        last = errors.get(config.name)
        entry["last_error"] = (
            None
            if last is None
            else {
                "error": last.error,
                "status_code": last.status_code,
                "detail": last.detail,
                "at": last.started_at,
            }
        )
        out.append(entry)
    return out


def _load_cell(entry: dict[str, Any]) -> str:
    loads = entry.get("server_load")
    if not loads:
        return "-"
    parts = []
    for model, load in loads.items():
        short = model.rsplit("/", 1)[-1]
        parts.append(
            f"{short}: ?" if load is None else f"{short}: {load['running']}+{load['waiting']}"
        )
    return ", ".join(parts)


def _breaker_cell(entry: dict[str, Any]) -> str:
    breaker = entry.get("breaker")
    if breaker is None:
        return "-"
    if breaker["state"] == "open":
        return f"open {breaker['retry_in_s']:g}s"
    return str(breaker["state"])


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--presets", is_flag=True, help="List the kinds of route (presets) instead.")
def routes(as_json: bool, presets: bool) -> None:
    """Every route: API, private or not, models, capacity, live load, breaker, last error.

    Configure routes with [[routes]] tables in the config file (`dsollama config` shows
    where it is); without them, OLLAMA_HOST and the DeepSeek settings are the routes.
    LOAD is what the server reports (running+waiting); a private route may serve
    --local-only calls, a third party never.
    """
    import asyncio

    from dsollama._client import AsyncClient
    from dsollama._text_safety import printable

    if presets:
        _show_presets(as_json)
        return

    async def gather() -> list[dict[str, Any]]:
        async with AsyncClient(source="cli", log=False) as client:
            return await describe(client)

    described = asyncio.run(gather())
    if as_json:
        click.echo(json.dumps({"routes": described}, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("NAME", "API", "PRIVATE", "MODELS", "CAPACITY", "LOAD", "BREAKER", "LAST ERROR"):
        table.add_column(name, no_wrap=name != "MODELS")
    for entry in described:
        last = entry["last_error"]
        table.add_row(
            printable(entry["name"]),
            entry["api"],
            "yes" if entry["private"] else "no",
            printable(", ".join(entry["models"]), limit=80),
            str(entry["capacity"] or "-"),
            _load_cell(entry),
            _breaker_cell(entry) if entry["usable"] else f"unusable: {entry['why_not']}",
            "-"
            if last is None
            else printable(f"{last['error']}: {last['detail'] or ''}".rstrip(": "), limit=60),
        )
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())
    unverified = [e for e in described if e["unverified"]]
    for entry in unverified:
        click.echo(
            f"note: {entry['name']} (preset {entry['preset']}): unverified {entry['unverified']}"
        )


def _show_presets(as_json: bool) -> None:
    from dsollama._config import load_settings
    from dsollama._routes import load_presets

    presets = {
        name: dict(fields)
        for name, fields in load_presets(load_settings().catalogue_path).items()
        if not name.startswith("_")
    }
    if as_json:
        click.echo(json.dumps({"presets": presets}, indent=2, ensure_ascii=False))
        return
    for name, fields in presets.items():
        where = fields.get("base_url", "")
        key = f", key from {fields['key_env']}" if fields.get("key_env") else ""
        load = fields.get("load_signal", "none")
        line = f"{name:12} {fields.get('api', 'openai'):7} {where}{key}"
        if load != "none":
            line += f", load from {load} metrics"
        click.echo(line)
        if fields.get("unverified"):
            click.echo(f"{'':12} unverified: {fields['unverified']}")
