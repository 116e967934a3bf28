"""`dsollama models`: the DeepSeek catalogue against this machine and the local daemon."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from dsollama.cli.provision import host_option, min_speed_option

if TYPE_CHECKING:
    from dsollama._catalogue import Catalogue, LocalModel
    from dsollama._hardware import Hardware, Recommendation

__all__ = ["models"]

_NUMERIC = {"PARAMS", "SIZE", "CONTEXT", "MEMORY", "~TOK/S"}


def _context(n: int) -> str:
    """131072 → '128K'."""
    return f"{n // 1024}K" if n >= 1024 else str(n)


def _machine(hw: Hardware) -> str:
    from dsollama._hardware import format_bytes

    ram = format_bytes(hw.ram_bytes) + " RAM" if hw.ram_bytes else "RAM unknown"
    if hw.memory_type:
        ram += f" ({hw.memory_type}-{hw.memory_mts})" if hw.memory_mts else f" ({hw.memory_type})"
    if hw.unified:
        chip = hw.cpu_name or "Apple silicon"
        return f"{chip}, {ram} (unified; about {format_bytes(hw.vram_bytes)} for the GPU)"
    if hw.cpu_cores:
        ram += f", {hw.cpu_cores} CPU core{'s' if hw.cpu_cores != 1 else ''}"
    if hw.gpus:
        gpus = ", ".join(f"{g.name} {format_bytes(g.memory_bytes)}" for g in hw.gpus)
        return f"{ram}, {gpus}"
    return f"{ram}, no GPU found"


def _speed_cell(tokens_per_second: float | None) -> str:
    from dsollama._speed import format_speed

    return "-" if tokens_per_second is None else format_speed(tokens_per_second)


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
                "tokens_per_second": (
                    round(fit.tokens_per_second, 1)
                    if fit and fit.tokens_per_second is not None
                    else None
                ),
                "pulled": None if pulled is None else _is_pulled(model, pulled),
                "recommended": model.tag == rec.tag,
                "notes": model.notes,
            }
        )
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@min_speed_option
@host_option
def models(as_json: bool, min_speed: float | None, host: str | None) -> None:
    """List the DeepSeek models dsollama knows: what fits this machine, what is pulled.

    FITS says where a model would run with headroom kept (GPU, or CPU from RAM);
    ~TOK/S is the estimated answer speed there. The recommended model (marked *) is
    the largest that fits and answers at --min-speed or faster. The assumptions behind
    all three are printed below.
    """
    from dsollama._catalogue import load_catalogue
    from dsollama._config import load_settings
    from dsollama._hardware import detect_hardware, format_bytes, recommend_for

    settings = load_settings(min_speed=min_speed)
    catalogue = load_catalogue(settings.catalogue_path)
    hw = detect_hardware()
    rec = recommend_for(catalogue, hw, settings)
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
                "cpu_cores": hw.cpu_cores,
                "cpu_name": hw.cpu_name,
                "memory_type": hw.memory_type,
            },
            "recommended": rec.tag,
            "reason": rec.reason,
            "min_speed": rec.min_speed,
            "slow": rec.slow,
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
    for name in ("CAPABILITIES", "HOSTED", "FITS", "~TOK/S", "PULLED"):
        table.add_column(name, justify="right" if name in _NUMERIC else "left", no_wrap=True)
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
            _speed_cell(row["tokens_per_second"]),
            pulled_text,
        )
    with console.capture() as captured:
        console.print(table)
    for line in captured.get().splitlines():
        click.echo(line.rstrip())  # rich pads every cell, the last one too
    click.echo()
    bar = (
        f"the recommendation needs {rec.min_speed:g} or more (--min-speed)"
        if rec.min_speed
        else "the recommendation ignores it (--min-speed 0)"
    )
    click.echo(
        "~TOK/S is an estimate of the answer speed (tokens a second at a 4K context), "
        f"not a measurement; {bar}"
    )
    click.echo(f"this machine: {_machine(hw)}")
    if rec.tag:
        click.echo(f"recommended: {rec.tag} - {rec.reason}")
    else:
        click.echo(f"recommended: none - {rec.reason}")
    for assumption in rec.assumptions:
        click.echo(f"  assumed: {assumption}")
    if daemon_note:
        click.echo(f"note: {daemon_note}")
