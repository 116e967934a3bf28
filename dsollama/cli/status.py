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
    import httpx

    from dsollama._exceptions import InsecureEndpointError, redact
    from dsollama._hosts import display_host

    key = settings.api_key()
    if not key:
        return Line(
            "--",
            "no hosted API key: fallback to the DeepSeek API is off (local only)",
            "set DEEPSEEK_API_KEY to enable it",
        )
    try:
        settings.check_hosted_endpoint()
    except InsecureEndpointError as exc:
        return Line("!!", str(exc), exc.hint or "")
    url = _balance_url(settings.hosted_base_url)
    where = display_host(settings.hosted_base_url)
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
            "check the network, or DEEPSEEK_BASE_URL",
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
            "check DEEPSEEK_API_KEY; create a key at https://platform.deepseek.com/api_keys",
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


@click.command()
@host_option
def status(host: str | None) -> None:
    """Check the daemon (reachable? version? loaded models?) and the hosted key."""
    from dsollama._config import load_settings

    settings = load_settings()

    async def gather() -> tuple[list[Line], bool, Line]:
        lines, reachable = await daemon_lines(host, settings)
        return lines, reachable, await hosted_line(settings)

    import asyncio

    lines, reachable, hosted = asyncio.run(gather())
    for line in [*lines, hosted]:
        click.echo(line.render())
    if not reachable:
        raise click.exceptions.Exit(1)
