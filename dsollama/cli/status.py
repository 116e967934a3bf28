"""`dsollama status`: is everything ready? One line per check, each with the next step.

Exit code 1 when the daemon cannot be reached (scripts can wait on it); 0 otherwise,
even when the hosted key is missing, because local-only use is a valid setup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import click

from dsollama.cli.provision import host_option

if TYPE_CHECKING:
    from dsollama._config import Settings
    from dsollama._routes import RouteConfig

__all__ = ["status"]

Mark = Literal["ok", "!!", "--"]

BALANCE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Line:
    mark: Mark
    text: str
    next_step: str = ""

    def render(self) -> str:
        tail = f" -> {self.next_step}" if self.next_step else ""
        return f"[{self.mark}] {self.text}{tail}"


async def daemon_lines(host: str | None, settings: Settings) -> tuple[list[Line], bool]:
    """Lines about the daemon, and whether it was reachable."""
    from dsollama._catalogue import normalise_model_name
    from dsollama._exceptions import DaemonTooOldError, DaemonUnreachableError, DsollamaError
    from dsollama._hardware import format_bytes
    from dsollama._provision import AsyncProvisioner
    from dsollama.cli.provision import _until, processor

    lines: list[Line] = []
    async with AsyncProvisioner(host, settings=settings) as prov:
        try:
            info = await prov.check()
        except DaemonUnreachableError as exc:
            return [Line("!!", str(exc), exc.hint or "")], False
        except DaemonTooOldError as exc:
            return [Line("!!", str(exc), exc.hint or "")], True
        lines.append(Line("ok", f"Ollama {info.version} answers at {info.host}"))
        lines.extend(Line("--", w) for w in info.warnings)
        try:
            tags = await prov.list()
            loaded = await prov.ps()
        except DsollamaError as exc:
            lines.append(Line("!!", exc.one_line()))
            return lines, True
        names = [m.model or "" for m in tags.models]
        deepseek = [
            n
            for n in names
            if prov.catalogue.resolve(n) is not None
            or normalise_model_name(n).rsplit("/", 1)[-1].startswith("deepseek")
        ]
        if deepseek:
            lines.append(
                Line(
                    "ok", f"{len(deepseek)} DeepSeek model(s) on the daemon: {', '.join(deepseek)}"
                )
            )
        else:
            rec = await prov.recommendation()
            pick = f"dsollama pull {rec.tag}" if rec.tag else "dsollama models"
            lines.append(Line("!!", "no DeepSeek model on the daemon", f"run `{pick}`"))
        if loaded.models:
            for m in loaded.models:
                lines.append(
                    Line(
                        "ok",
                        f"loaded: {m.model or m.name} ({format_bytes(int(m.size or 0))}, "
                        f"{processor(m.size, m.size_vram)}, unloads {_until(m.expires_at)})",
                    )
                )
        else:
            lines.append(
                Line(
                    "--",
                    "no model loaded: the first request waits while one loads",
                    "`dsollama chat` once to warm it up",
                )
            )
    return lines, True


def _balance_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    for suffix in ("/v1", "/beta"):
        base = base.removesuffix(suffix)
    return base + "/user/balance"


def _describe_balance(data: Any) -> str:
    infos = data.get("balance_infos") if isinstance(data, dict) else None
    if not infos:
        return ""
    return ", ".join(
        f"{i.get('total_balance', '?')} {i.get('currency', '')}".strip()
        for i in infos
        if isinstance(i, dict)
    )


async def hosted_line(settings: Settings) -> Line:
    """Is a hosted key configured, and does the endpoint accept it? Never shows the key."""
    key = settings.api_key()
    if not key:
        return Line(
            "--",
            "no hosted API key: fallback to the DeepSeek API is off (local only)",
            "set DEEPSEEK_API_KEY to enable it",
        )
    return await _deepseek_line(settings.hosted_base_url, key, settings, "DEEPSEEK_API_KEY")


async def _deepseek_line(base_url: str, key: str, settings: Settings, variable: str) -> Line:
    """Does DeepSeek's API (or one like it) accept the key? Asks the balance endpoint."""
    import httpx

    from dsollama._exceptions import InsecureEndpointError, redact
    from dsollama._hosts import display_host, key_may_travel_to

    if not key_may_travel_to(base_url):
        exc = InsecureEndpointError(base_url)
        return Line("!!", str(exc), exc.hint or "")
    url = _balance_url(base_url)
    where = display_host(base_url)
    timeout = httpx.Timeout(BALANCE_TIMEOUT, connect=settings.connect_timeout)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(
                url, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
            )
    except httpx.HTTPError as exc:
        detail = redact(str(exc) or type(exc).__name__, [key])
        return Line(
            "!!",
            f"hosted key set, but {where} could not be reached ({detail})",
            "check the network, or the base URL (DEEPSEEK_BASE_URL, or the route's base_url)",
        )
    if resp.status_code == 200:
        try:
            data = resp.json()
        except ValueError:
            data = {}
        balance = _describe_balance(data)
        if isinstance(data, dict) and data.get("is_available") is False:
            return Line(
                "!!",
                f"hosted key accepted by {where}, but the account cannot pay for calls"
                + (f" (balance {balance})" if balance else ""),
                "top up at https://platform.deepseek.com/top_up",
            )
        return Line(
            "ok", f"hosted key accepted by {where}" + (f" (balance {balance})" if balance else "")
        )
    if resp.status_code == 401:
        return Line(
            "!!",
            f"hosted key refused by {where} (401)",
            f"check {variable}; create a key at https://platform.deepseek.com/api_keys",
        )
    if resp.status_code == 402:
        return Line(
            "!!",
            f"{where}: the account is out of credit (402)",
            "top up at https://platform.deepseek.com/top_up",
        )
    if resp.status_code == 404:
        return Line(
            "--",
            f"hosted key set; {where} has no balance endpoint, so the key was not checked",
        )
    return Line(
        "!!",
        f"hosted key set, but {where} answered HTTP {resp.status_code} to the key check",
        "try again later; `dsollama config` shows the hosted settings",
    )


async def openai_route_line(config: RouteConfig, key: str | None, settings: Settings) -> Line:
    """Does an OpenAI-format route answer, accept its key, and serve what it says it does?"""
    import httpx

    from dsollama._exceptions import redact
    from dsollama._hosts import key_may_travel_to

    name = config.name
    if key and not key_may_travel_to(config.base_url):
        return Line(
            "!!",
            f"{name}: refusing to send the API key over plain HTTP to {config.base_url}",
            "use an https:// base_url (plain http only for this machine)",
        )
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(BALANCE_TIMEOUT, connect=settings.connect_timeout)
    try:
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            resp = await client.get(config.base_url.rstrip("/") + "/models", headers=headers)
    except httpx.HTTPError as exc:
        detail = redact(str(exc) or type(exc).__name__, [key] if key else [])
        return Line(
            "!!",
            f"{name}: nothing answers at {config.base_url} ({detail})",
            "start the server, or fix base_url in its [[routes]] table",
        )
    if resp.status_code in (401, 403):
        return Line(
            "!!",
            f"{name}: the key was refused ({resp.status_code})",
            f"check {config.key_env}" if config.key_env else "set key_env for this route",
        )
    if resp.status_code != 200:
        return Line("!!", f"{name}: {config.base_url}/models answered HTTP {resp.status_code}")
    try:
        served = {str(m.get("id")) for m in resp.json().get("data", []) if isinstance(m, dict)}
    except (ValueError, AttributeError):
        served = set()
    wanted = set(config.models) | set(config.model_map.values())
    missing = sorted(wanted - served) if served else []
    if missing:
        return Line(
            "!!",
            f"{name}: answers, but does not serve {', '.join(missing)}",
            "fix models / model_map in its [[routes]] table (the server lists: "
            + (", ".join(sorted(served)[:5]) or "nothing")
            + ")",
        )
    what = "private" if config.private else "third party"
    return Line("ok", f"{name}: answers at {config.base_url} ({what}, {len(served)} model(s))")


async def route_lines(host: str | None, settings: Settings) -> tuple[list[Line], bool]:
    """A check per route with its next step, and whether any route is usable."""
    from dsollama._routes import resolve_routes

    if host is not None or not settings.routes:
        daemon, reachable = await daemon_lines(host, settings)
        return [*daemon, await hosted_line(settings)], reachable
    usable = False
    lines: list[Line] = []
    for config in resolve_routes(settings):
        if config.api == "ollama":
            daemon, reachable = await daemon_lines(config.base_url, settings)
            lines.extend(
                Line(line.mark, f"{config.name}: {line.text}", line.next_step) for line in daemon
            )
            usable = usable or reachable
            continue
        key = config.key()
        if config.key_env and key is None:
            lines.append(Line("--", f"{config.name}: no key", f"set {config.key_env} to use it"))
            continue
        if config.names == "hosted" and key:
            line = await _deepseek_line(config.base_url, key, settings, config.key_env or "its key")
            line = Line(line.mark, f"{config.name}: {line.text}", line.next_step)
        else:
            line = await openai_route_line(config, key, settings)
        if config.unverified:
            line = Line(
                line.mark, f"{line.text} (preset unverified: {config.unverified})", line.next_step
            )
        lines.append(line)
        usable = usable or line.mark == "ok"
    return lines, usable


@click.command()
@host_option
def status(host: str | None) -> None:
    """Check every route: does it answer, is its key accepted, are its models there?

    Without [[routes]] in the config file: the Ollama daemon (reachable? version? models?)
    and the hosted key. Exit code 1 when no route can answer.
    """
    import asyncio

    from dsollama._config import load_settings

    settings = load_settings()
    lines, usable = asyncio.run(route_lines(host, settings))
    for line in lines:
        click.echo(line.render())
    if not usable:
        raise click.exceptions.Exit(1)
