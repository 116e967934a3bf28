"""`dsollama models`: the DeepSeek catalogue against this machine and the local daemon."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from dsollama.cli.provision import host_option

if TYPE_CHECKING:
    from dsollama._catalogue import Catalogue, LocalModel
    from dsollama._hardware import Hardware, Recommendation

__all__ = ["models"]

_NUMERIC = {"PARAMS", "SIZE", "CONTEXT", "MEMORY"}


def _context(n: int) -> str:
    """131072 → '128K'."""
    return f"{n // 1024}K" if n >= 1024 else str(n)


def _machine(hw: Hardware) -> str:
    from dsollama._hardware import format_bytes

    ram = format_bytes(hw.ram_bytes) + " RAM" if hw.ram_bytes else "RAM unknown"
    if hw.unified:
        return f"Apple silicon, {ram} (unified; about {format_bytes(hw.vram_bytes)} for the GPU)"
    if hw.gpus:
        gpus = ", ".join(f"{g.name} {format_bytes(g.memory_bytes)}" for g in hw.gpus)
        return f"{ram}, {gpus}"
    return f"{ram}, no GPU found"


async def _pulled(host: str | None) -> tuple[set[str] | None, str, str]:
    """(normalised names on the daemon or None, host, why unknown)."""
    from dsollama._catalogue import normalise_model_name
    from dsollama._exceptions import DsollamaError
    from dsollama._provision import AsyncProvisioner

    async with AsyncProvisioner(host) as prov:
        try:
            resp = await prov.list()
        except DsollamaError as exc:
            return None, prov.host, exc.one_line()
        return {normalise_model_name(m.model or "") for m in resp.models}, prov.host, ""


def _is_pulled(model: LocalModel, pulled: set[str]) -> bool:
    library = model.tag.partition(":")[0]
    return model.tag in pulled or (model.default and f"{library}:latest" in pulled)


def _rows(
    catalogue: Catalogue, rec: Recommendation, pulled: set[str] | None
) -> list[dict[str, Any]]:
    rows = []
    for model in catalogue.local.values():
        fit = rec.fits.get(model.tag)
        rows.append(
            {
                "tag": model.tag,
                "library": model.library,
                "base_model": model.base_model,
                "distill": model.distill,
                "parameters": model.parameters,
                "size_bytes": model.size_bytes,
                "context_length": model.context_length,
                "memory_gb": model.memory_gb,
                "capabilities": list(model.capabilities),
                "hosted": model.hosted,
                "fits": (fit.where or None) if fit else None,
                "pulled": None if pulled is None else _is_pulled(model, pulled),
                "recommended": model.tag == rec.tag,
                "notes": model.notes,
            }
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@host_option
def models(as_json: bool, host: str | None) -> None:
    """List the DeepSeek models dsollama knows: what fits this machine, what is pulled.

    FITS says where a model would run with headroom kept (GPU, or CPU from RAM); the
    recommended model is marked with *. The assumptions behind both are printed below.
    """
    from dsollama._catalogue import load_catalogue
    from dsollama._config import load_settings
    from dsollama._hardware import detect_hardware, format_bytes, recommend

    settings = load_settings()
    catalogue = load_catalogue(settings.catalogue_path)
    hw = detect_hardware()
    rec = recommend(catalogue, hw)
    import asyncio

    pulled, daemon_host, why = asyncio.run(_pulled(host))
    rows = _rows(catalogue, rec, pulled)
    daemon_note = (
        f"no answer from the Ollama daemon at {daemon_host}, so PULLED is unknown ({why})"
        if pulled is None
        else ""
    )

    if as_json:
        payload = {
            "machine": {
                "ram_bytes": hw.ram_bytes,
                "vram_bytes": hw.vram_bytes,
                "unified_memory": hw.unified,
                "gpus": [{"name": g.name, "memory_bytes": g.memory_bytes} for g in hw.gpus],
            },
            "recommended": rec.tag,
            "reason": rec.reason,
            "assumptions": list(rec.assumptions),
            "daemon": {"host": daemon_host, "reachable": pulled is not None, "note": daemon_note},
            "models": rows,
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return

    from rich.console import Console
    from rich.table import Table

    # Off a terminal rich assumes 80 columns and would squeeze the table: give it room.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("", "TAG", "WHAT IT IS", "PARAMS", "SIZE", "CONTEXT", "MEMORY"):
        table.add_column(name, justify="right" if name in _NUMERIC else "left", no_wrap=True)
    for name in ("CAPABILITIES", "HOSTED", "FITS", "PULLED"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        pulled_text = "?" if row["pulled"] is None else "yes" if row["pulled"] else ""
        table.add_row(
            "*" if row["recommended"] else "",
            row["tag"],
            row["base_model"],
            row["parameters"],
            format_bytes(row["size_bytes"]),
            _context(row["context_length"]),
            f"{row['memory_gb']:g} GB",
            ", ".join(row["capabilities"]),
            row["hosted"],
            row["fits"].upper() if row["fits"] else "no",
            pulled_text,
        )
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())  # rich pads every cell, the last one too
    click.echo()
    click.echo(f"this machine: {_machine(hw)}")
    if rec.tag:
        click.echo(f"recommended: {rec.tag} - {rec.reason}")
    else:
        click.echo(f"recommended: none - {rec.reason}")
    for assumption in rec.assumptions:
        click.echo(f"  assumed: {assumption}")
    if daemon_note:
        click.echo(f"note: {daemon_note}")
