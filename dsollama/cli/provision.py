"""`dsollama pull | create | list | show | ps | rm`: provisioning on the local daemon.

Thin: every command runs one coroutine over `AsyncProvisioner` and prints what it
returns. Errors are dsollama errors; `dsollama.cli` turns them into one line on stderr.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dsollama._config import Settings
    from dsollama._provision import AsyncProvisioner

__all__ = ["create", "list_models", "ps", "pull", "rm", "show"]

T = TypeVar("T")

host_option = click.option(
    "--host",
    metavar="URL",
    default=None,
    help="Ollama daemon to use (default: OLLAMA_HOST, else http://127.0.0.1:11434).",
)

min_speed_option = click.option(
    "--min-speed",
    type=click.FloatRange(min=0),
    metavar="TOK/S",
    default=None,
    help=(
        "Recommend only models estimated to answer at least this fast "
        "(default: the min_speed setting, 8; 0 picks by memory alone)."
    ),
)


def _provisioner(host: str | None, settings: Settings | None = None) -> AsyncProvisioner:
    from dsollama._provision import AsyncProvisioner

    return AsyncProvisioner(host, settings=settings)


def run_with(
    host: str | None,
    work: Callable[[AsyncProvisioner], Coroutine[Any, Any, T]],
    settings: Settings | None = None,
) -> T:
    """Run ``work(provisioner)`` on a fresh event loop, closing the provisioner after."""

    async def main() -> T:
        async with _provisioner(host, settings) as prov:
            return await work(prov)

    import asyncio  # here, not at the top: `dsollama CMD --help` stays fast

    return asyncio.run(main())


@click.command()
@click.argument("models", nargs=-1, metavar="[MODEL]...")
@click.option("--dry-run", is_flag=True, help="Print the plan; download and create nothing.")
@click.option(
    "--modelfiles",
    "modelfiles_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of <name>.Modelfile files (default: modelfiles_dir setting, else ./Modelfiles).",
)
@min_speed_option
@host_option
def pull(
    models: tuple[str, ...],
    dry_run: bool,
    modelfiles_dir: str | None,
    min_speed: float | None,
    host: str | None,
) -> None:
    """Pull DeepSeek models and create the Modelfile models, doing only what is missing.

    \b
    Without MODEL: the model recommended for this machine plus every Modelfile.
    The recommendation is the largest model that fits and is estimated to answer
    at --min-speed tokens/s; the plan says why it was chosen.
    A MODEL is a library tag (deepseek-r1:8b) or the name of a Modelfile model
    (deepseek-r1-reasoner for Modelfiles/deepseek-r1-reasoner.Modelfile).
    Running it again downloads nothing and says "up to date"; a changed Modelfile
    re-creates only that model. An interrupted pull resumes when rerun.
    """
    wanted = list(models) or None
    settings = None
    if min_speed is not None:
        from dsollama._config import load_settings

        settings = load_settings(min_speed=min_speed)
    if dry_run:

        async def plan(prov: AsyncProvisioner) -> list[str]:
            return (await prov.plan(wanted, modelfiles_dir)).describe()

        for line in run_with(host, plan, settings):
            click.echo(line)
        return

    from dsollama.cli._render import make_renderer

    renderer = make_renderer()

    async def work(prov: AsyncProvisioner) -> None:
        async for event in prov.provision(wanted, modelfiles_dir):
            renderer.handle(event)

    try:
        run_with(host, work, settings)
    finally:
        renderer.close()


@click.command()
@click.argument("name")
@click.option(
    "-f",
    "--file",
    "modelfile",
    type=click.Path(dir_okay=False),
    default="Modelfile",
    show_default=True,
    help="The Modelfile to build from.",
)
@click.option("-q", "--quantize", default=None, help="Quantize the weights (e.g. q4_K_M).")
@host_option
def create(name: str, modelfile: str, quantize: str | None, host: str | None) -> None:
    """Create model NAME from a Modelfile (uploads local weights the daemon lacks).

    Always creates, like `ollama create`; `dsollama pull` skips up-to-date models.
    """
    from dsollama.cli._render import make_renderer

    renderer = make_renderer()

    async def work(prov: AsyncProvisioner) -> None:
        async for event in prov.create(name, modelfile, quantize=quantize):
            renderer.handle(event)

    try:
        run_with(host, work)
    finally:
        renderer.close()


def _ago(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """'3 days ago' style, as `ollama list` prints it."""
    if when is None:
        return ""
    now = now or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    seconds = (now - when).total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def _until(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if when is None:
        return ""
    now = now or dt.datetime.now(dt.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    seconds = (when - now).total_seconds()
    if seconds > 365 * 86400:
        return "forever"
    if seconds <= 0:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''} from now"
    return "less than a minute from now"


def processor(size: int | None, size_vram: int | None) -> str:
    """Where a loaded model sits, as `ollama ps` says it.

    >>> processor(100, 100), processor(100, 0), processor(100, 48)
    ('100% GPU', '100% CPU', '52%/48% CPU/GPU')
    """
    size = int(size or 0)
    vram = int(size_vram or 0)
    if not size or vram >= size:
        return "100% GPU" if size else ""
    if vram == 0:
        return "100% CPU"
    gpu = round(vram * 100 / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's JSON.")
@host_option
def list_models(as_json: bool, host: str | None) -> None:
    """List the models on the local daemon."""
    from dsollama._hardware import format_bytes

    resp = run_with(host, lambda prov: prov.list())
    if as_json:
        click.echo(json.dumps(resp.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    if not resp.models:
        click.echo("no models on the daemon; `dsollama pull` provisions the recommended one")
        return
    rows = [("NAME", "ID", "SIZE", "MODIFIED")]
    for m in resp.models:
        rows.append(
            (
                m.model or "",
                (m.digest or "")[:12],
                format_bytes(int(m.size or 0)),
                _ago(m.modified_at),
            )
        )
    for line in _table(rows):
        click.echo(line)


@click.command()
@click.argument("model")
@click.option("--modelfile", "what", flag_value="modelfile", help="Print the Modelfile.")
@click.option("--parameters", "what", flag_value="parameters", help="Print the parameters.")
@host_option
def show(model: str, what: str | None, host: str | None) -> None:
    """Show a local model's details (or its Modelfile, or its parameters)."""
    resp = run_with(host, lambda prov: prov.show(model))
    if what == "modelfile":
        click.echo(resp.modelfile or "", nl=not (resp.modelfile or "").endswith("\n"))
        return
    if what == "parameters":
        click.echo(resp.parameters or "(no parameters)")
        return
    info = dict(resp.modelinfo or {})
    details = resp.details
    arch = str(info.get("general.architecture") or (details.family if details else "") or "")
    rows = [
        ("architecture", arch),
        ("parameters", details.parameter_size if details else ""),
        ("context length", str(info.get(f"{arch}.context_length", ""))),
        ("quantization", details.quantization_level if details else ""),
        ("based on", details.parent_model if details else ""),
    ]
    click.echo(f"{model}")
    for key, value in rows:
        if value:
            click.echo(f"  {key:<16}{value}")
    if resp.capabilities:
        click.echo(f"  {'capabilities':<16}{', '.join(resp.capabilities)}")
    if resp.parameters:
        click.echo("  parameters")
        for line in resp.parameters.splitlines():
            click.echo(f"    {' '.join(line.split(None, 1))}")
    if resp.license:
        click.echo(f"  {'license':<16}{resp.license.strip().splitlines()[0]}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's JSON.")
@host_option
def ps(as_json: bool, host: str | None) -> None:
    """List the models loaded in memory, and where (GPU/CPU)."""
    from dsollama._hardware import format_bytes

    resp = run_with(host, lambda prov: prov.ps())
    if as_json:
        click.echo(json.dumps(resp.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    if not resp.models:
        click.echo("no model is loaded; the first request loads one (seconds to minutes)")
        return
    rows = [("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")]
    for m in resp.models:
        rows.append(
            (
                m.model or m.name or "",
                (m.digest or "")[:12],
                format_bytes(int(m.size or 0)),
                processor(m.size, m.size_vram),
                str(m.context_length or ""),
                _until(m.expires_at),
            )
        )
    for line in _table(rows):
        click.echo(line)


@click.command()
@click.argument("models", nargs=-1, required=True, metavar="MODEL...")
@host_option
def rm(models: tuple[str, ...], host: str | None) -> None:
    """Remove models from the local daemon."""

    async def work(prov: AsyncProvisioner) -> None:
        for model in models:
            await prov.delete(model)
            click.echo(f"deleted {model}")

    run_with(host, work)
