"""`dsollama config`: the effective settings and where each one came from."""

from __future__ import annotations

import json

import click

__all__ = ["config"]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def config(as_json: bool) -> None:
    """Show the effective settings and the source of each (the API key is redacted).

    Order of precedence: command-line arguments, then environment variables, then the
    config file (DSOLLAMA_CONFIG, or config.toml in the user config folder), then defaults.
    """
    from dsollama._config import config_path, explain_settings

    rows = explain_settings()
    if as_json:
        payload = {
            "config_file": str(config_path()),
            "settings": {r.name: {"value": _jsonable(r.value), "source": r.source} for r in rows},
        }
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"config file: {config_path()}")
    width = max(len(r.name) for r in rows)
    for r in rows:
        shown = "(unset)" if r.value is None else _display(r.value)
        click.echo(f"{r.name:<{width}}  {shown:<40}  {r.source}")


def _jsonable(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return value


def _display(value: object) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
