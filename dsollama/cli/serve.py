"""`dsollama serve`: a local Ollama- and OpenAI-format endpoint with fallback.

Prints where it listens and what it fronts, then serves until SIGTERM or Ctrl-C; answers
in flight get ``--grace`` seconds to finish. The first line on stdout is the base URL
(useful with ``--port 0``). Needs the ``serve`` extra; without it, says how to install it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import click

__all__ = ["serve"]

_EXTRA = ("starlette", "uvicorn")


def _require_extra() -> None:
    from dsollama._exceptions import ConfigError

    missing = [name for name in _EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ConfigError(
            f"dsollama serve needs {' and '.join(missing)}, which {verb} not installed",
            hint="install it with pip install 'dsollama[serve]'",
        )


def _client_url(base: str) -> str:
    """A URL a client on this machine can use (0.0.0.0 and :: are not destinations)."""
    return base.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")


@click.command(context_settings={"max_content_width": 100})
@click.option(
    "--host",
    metavar="ADDR",
    help="Address to listen on (default 127.0.0.1; any other address needs a token).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), help="Port (default 11435; 0 lets the OS choose)."
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (or set DSOLLAMA_SERVE_TOKEN, which other "
    "users of this machine cannot read in the process list).",
)
@click.option(
    "--admin-token",
    metavar="TOKEN",
    help="Require this other token for pull, create, copy, delete and push (or set "
    "DSOLLAMA_SERVE_ADMIN_TOKEN).",
)
@click.option(
    "--allow-admin",
    is_flag=True,
    default=None,
    help="Let every client pull, create, copy, delete and push models (by default only "
    "while listening on loopback).",
)
@click.option(
    "--policy",
    type=click.Choice(["local-first", "hosted-first", "local-only"]),
    help="Route order (default local-first).",
)
@click.option("--local-only", is_flag=True, help="Never send anything off this machine.")
@click.option(
    "--ollama-host", metavar="URL", help="The Ollama daemon to front (default OLLAMA_HOST)."
)
@click.option(
    "--state",
    "state_url",
    metavar="URL",
    help="Share routing state (what is in flight, breakers) with every replica and worker "
    "using this Redis: redis://[:password@]host:6379/0 (or set DSOLLAMA_STATE_URL; "
    "default: this process only).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Worker processes on the one port; more than 1 needs --state.",
)
@click.option(
    "--first-token-timeout", type=float, metavar="S", help="First-token budget per route."
)
@click.option("--gap-timeout", type=float, metavar="S", help="Longest silence between chunks.")
@click.option("--total-timeout", type=float, metavar="S", help="Deadline for a whole answer.")
@click.option(
    "--continue/--no-continue",
    "continue_streams",
    default=None,
    help="Continue a stream that breaks mid-answer on the hosted route.",
)
@click.option("--hedge/--no-hedge", default=None, help="Race local and hosted when local is late.")
@click.option(
    "--grace",
    type=click.IntRange(0),
    default=30,
    show_default=True,
    metavar="S",
    help="On shutdown, seconds answers in flight get to finish.",
)
@click.option(
    "--max-body",
    type=click.FloatRange(min=0.001),
    default=32.0,
    show_default=True,
    metavar="MIB",
    help="Largest JSON request body, in MiB (blob uploads are streamed, not limited).",
)
@click.option(
    "--model",
    "default_model",
    default="deepseek-r1:8b",
    show_default=True,
    help="Model of POST /generate when the request names none.",
)
@click.option(
    "--cors-origin",
    multiple=True,
    metavar="ORIGIN",
    help="Also allow this browser origin (repeatable); local pages and desktop apps always are.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="S",
    help="Seconds a client has to send a request's line and headers.",
)
@click.option(
    "--body-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="S",
    help="Seconds a client has to send a request's body (blob uploads: longest pause).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    metavar="N",
    help="Connections served at once; past it a request gets 503 and its connection closes.",
)
@click.option("--access-log/--no-access-log", default=False, help="Log every HTTP request.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    host: str | None,
    port: int | None,
    token: str | None,
    admin_token: str | None,
    allow_admin: bool | None,
    policy: str | None,
    local_only: bool,
    ollama_host: str | None,
    state_url: str | None,
    workers: int,
    first_token_timeout: float | None,
    gap_timeout: float | None,
    total_timeout: float | None,
    continue_streams: bool | None,
    hedge: bool | None,
    grace: int,
    max_body: float,
    default_model: str,
    cors_origin: tuple[str, ...],
    header_timeout: float,
    body_timeout: float,
    max_connections: int,
    access_log: bool,
    log_level: str,
) -> None:
    """Serve Ollama's API and OpenAI's API on one local port, with fallback.

    \b
    Point clients at it:
      Ollama clients, Open WebUI (OLLAMA_BASE_URL)   http://127.0.0.1:11435
      OpenAI clients, Cherry Studio, llm             http://127.0.0.1:11435/v1
    """
    _require_extra()
    from dsollama._config import load_settings

    if local_only and policy not in (None, "local-only"):
        raise click.UsageError(f"--local-only and --policy {policy} contradict each other")
    if allow_admin and admin_token:
        raise click.UsageError(
            "--allow-admin and --admin-token contradict each other: the first lets every "
            "client provision, the second only those with the admin token"
        )
    overrides: dict[str, Any] = {
        "serve_host": host,
        "serve_port": port,
        "serve_token": token,
        "serve_admin_token": admin_token,
        "policy": "local-only" if local_only else policy,
        "ollama_hosts": [ollama_host] if ollama_host else None,
        "state_url": state_url,
        "first_token_timeout": first_token_timeout,
        "gap_timeout": gap_timeout,
        "total_timeout": total_timeout,
        "continue_streams": continue_streams,
        "hedge": hedge,
    }
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    secret = settings.serve_token.get_secret_value() if settings.serve_token else None

    from dsollama.serve.security import check_bind

    check_bind(settings.serve_host, secret)
    if settings.api_key():
        settings.check_hosted_endpoint()
    shared = _shares_state(settings)
    if workers > 1 and not shared:
        raise click.UsageError(
            f"--workers {workers}: each worker would see only its own requests: "
            "add --state redis://… (see docs/serve.md)"
        )

    from dsollama.serve.admin import admin_policy
    from dsollama.serve.run import ServeOptions
    from dsollama.serve.run import serve as run
    from dsollama.serve.server import bind, url_for

    options = ServeOptions(
        settings=settings,
        token=secret,
        max_body=int(max_body * 1024 * 1024),
        default_model=default_model,
        cors_origins=cors_origin,
        allow_admin=allow_admin,
        grace=grace,
        log_level=log_level,
        access_log=access_log,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_connections=max_connections,
    )
    admin_secret = settings.serve_admin_token
    admin = admin_policy(
        allow_admin=allow_admin,
        admin_token=admin_secret.get_secret_value() if admin_secret else None,
        host=settings.serve_host,
    )
    sock = bind(settings.serve_host, settings.serve_port)
    url = _client_url(url_for(sock))
    _setup_logging(log_level)
    limits = (
        f"headers within {header_timeout:g}s, bodies within {body_timeout:g}s, "
        f"{max_connections} connections (503 past it)"
    )
    state = _state_row(settings.state_url if shared else None)
    _banner(url, settings, secret is not None, grace, admin.describe(), limits, state, workers)
    _content_notice(settings)
    try:
        run(options, sock, workers=workers)
    finally:
        sock.close()
    click.echo("dsollama serve stopped.", err=True)


def _setup_logging(level: str) -> None:
    # The process's "dsollama" logger is the command's to configure (tests keep it as is).
    from dsollama.serve.server import setup_logging

    setup_logging(level)


def _content_notice(settings: Any) -> None:
    # Once per log, under the banner; on stderr, since scripts read the banner's stdout.
    from dsollama._calllog import content_notice

    notice = content_notice(settings, "serve")
    if notice:
        click.echo(notice, err=True)


def _shares_state(settings: Any) -> bool:
    """Does ``state_url`` name a shared store? Checks it as the client will (a bad URL or
    a missing redis package is a one-line error now, not a failed startup)."""
    import asyncio

    from dsollama._state import BreakerConfig
    from dsollama._state.open import open_store

    store = open_store(
        settings.state_url, namespace=settings.state_namespace, breaker=BreakerConfig()
    )
    asyncio.run(store.aclose())  # made only to be checked: nothing was connected
    return store.kind != "memory"


def _state_row(shared_url: str | None) -> str:
    if shared_url is None:
        return "this process only (--state redis://… shares it with replicas and workers)"
    from dsollama._state.redis_store import public_url

    # Never the password: the banner ends up in logs.
    return f"{public_url(shared_url)} (shared with every replica and client using it)"


def _banner(
    url: str,
    settings: Any,
    has_token: bool,
    grace: int,
    admin: str,
    limits: str,
    state: str,
    workers: int,
) -> None:
    if settings.policy == "local-only":
        hosted = "off (--local-only: nothing leaves this machine)"
    elif settings.api_key():
        hosted = f"{settings.hosted_base_url} (fallback when local is down, failing or busy)"
    else:
        hosted = "off: set DEEPSEEK_API_KEY to fall back when local is down or busy"
    auth = (
        "bearer token required (every route but /healthz)"
        if has_token
        else "none (only this machine can connect)"
    )
    rows = [
        ("Ollama API", f"{url}  (Ollama host / OLLAMA_BASE_URL)"),
        ("OpenAI API", f"{url}/v1  (base_url; any API key unless a token is set)"),
        ("local", ", ".join(settings.ollama_hosts)),
        ("hosted", hosted),
        ("policy", settings.policy),
        ("state", state),
        ("auth", auth),
        ("admin", admin),
        ("limits", limits),
    ]
    if workers > 1:
        rows.append(("workers", f"{workers} processes sharing the port"))
    # The first line is the bare URL, for scripts that start the server on port 0.
    click.echo(url)
    for name, value in rows:
        click.echo(f"  {name:<11} {value}")
    click.echo(f"Ctrl-C stops it; answers in flight get {grace}s to finish.")
    sys.stdout.flush()
