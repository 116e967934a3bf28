"""Running `dsollama serve` on a bound socket: one process, or N worker processes.

One process (the default) serves the app with `server.make_server`. With ``workers`` > 1,
uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) starts that many processes
(spawned, not forked), hands each the one listening socket the command bound — the kernel
gives each connection to one of them — restarts a worker that dies, and on SIGINT or
SIGTERM asks each to shut down gracefully (answers in flight get ``grace`` seconds) and
waits for them all.

Each worker builds its own app — its own client, connections and store connection — from
the same `ServeOptions`, which reach it pickled inside uvicorn's config, never through
the environment or a command line where another user could read the token.

Workers share no memory, so they must share routing state elsewhere: with the in-process
store each worker would count only its own requests, and together they would over-admit
a daemon that queues silently. The command refuses ``--workers`` > 1 without a shared
store (``--state redis://…``).
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from .._config import Settings
from .._exceptions import ConfigError
from . import server
from .app import DEFAULT_MAX_BODY, create_app
from .server import DEFAULT_MAX_CONNECTIONS, config_options, setup_logging
from .slow_clients import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, guarded_protocol

__all__ = ["ServeOptions", "serve"]


@dataclass(frozen=True)
class ServeOptions:
    """Everything a serving process needs to build its app and its server."""

    settings: Settings
    token: str | None = field(default=None, repr=False)
    max_body: int = DEFAULT_MAX_BODY
    default_model: str = "deepseek-r1:8b"
    cors_origins: tuple[str, ...] = ()
    allow_admin: bool | None = None
    grace: int = 30
    log_level: str = "info"
    access_log: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def app(self) -> Any:
        """A new app (each worker calls this once, as uvicorn's app factory)."""
        return create_app(
            settings=self.settings,
            token=self.token,
            max_body=self.max_body,
            default_model=self.default_model,
            cors_origins=self.cors_origins,
            allow_admin=self.allow_admin,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """`uvicorn.Config` keywords (all but the app and its HTTP protocol)."""
        return config_options(
            grace=self.grace,
            log_level=self.log_level,
            access_log=self.access_log,
            max_connections=self.max_connections,
        )


class WorkerConfig(uvicorn.Config):
    """uvicorn's config for the workers: pickled to each, where it builds the app.

    What crosses to a worker must pickle: the options do (the app factory is their bound
    method), our HTTP protocol class — made per deadline pair — does not, so each worker
    makes it when it loads the config.
    """

    def __init__(self, options: ServeOptions, workers: int) -> None:
        self.options = options  # before uvicorn's __init__, which sets up logging
        super().__init__(
            options.app, factory=True, workers=workers, http="h11", **options.uvicorn_options()
        )

    def configure_logging(self) -> None:
        super().configure_logging()
        setup_logging(self.options.log_level)

    def load(self) -> None:
        self.http = guarded_protocol(
            header_timeout=self.options.header_timeout, body_timeout=self.options.body_timeout
        )
        try:
            super().load()
        except Exception as exc:
            # It would fail the same way after every restart: tell the supervisor to stop
            # (uvicorn's own exit status for a worker that could not start).
            logging.getLogger("uvicorn.error").error("the worker could not build the app: %s", exc)
            sys.exit(STARTUP_FAILURE)


def serve(options: ServeOptions, sock: socket.socket, *, workers: int = 1) -> None:
    """Serve on ``sock`` until SIGINT or SIGTERM (see the module docstring)."""
    if workers == 1:
        # Looked up when called (not imported by name), so a test can stand in for it.
        single = server.make_server(
            options.app(),
            grace=options.grace,
            log_level=options.log_level,
            access_log=options.access_log,
            header_timeout=options.header_timeout,
            body_timeout=options.body_timeout,
            max_connections=options.max_connections,
        )
        single.run(sockets=[sock])
        return
    supervisor = Multiprocess(WorkerConfig(options, workers), sockets=[sock])
    supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise ConfigError(
            "a worker process failed to start, so the server stopped",
            hint="its error is in the log above",
        )
