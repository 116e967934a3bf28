"""Running the app under uvicorn: our own listening socket, graceful shutdown.

The socket is bound before uvicorn starts so that the address is known (and printed)
even with port 0, a port in use is reported as a one-line error, and connections made
while the app starts up wait in the backlog instead of being refused.

Shutdown (SIGTERM, Ctrl-C, or ``server.should_exit = True``): uvicorn stops accepting,
lets running requests — streams included — finish for up to ``grace`` seconds, then
cancels what is left (each cut stream ends with an error event saying so), and the
app's lifespan closes the client.

Slow clients: requests must arrive within ``header_timeout`` / ``body_timeout`` seconds
(`slow_clients`), and at most ``max_connections`` connections are served at once; a
request past that gets 503 and its connection is closed. uvicorn's own log lines (the
access log shows request paths) are escaped like ours.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from .._exceptions import ConfigError
from .._text_safety import PrintableLogArgs
from .info import dsollama_version
from .slow_clients import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, guarded_protocol

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "Server",
    "bind",
    "config_options",
    "make_server",
    "setup_logging",
    "url_for",
]

DEFAULT_MAX_CONNECTIONS = 1000
"Connections served at once; GUI clients hold a few each, a burst of scripts a few hundred."


def bind(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: the OS picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio switches Nagle off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and accepted sockets inherit it. With Nagle on, every
    # response whose body follows its headers in a second write waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use",
                hint="is another dsollama serve (or Ollama) running there? pick another with --port",
            ) from None
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="check --host (an address of this machine, e.g. 127.0.0.1 or 0.0.0.0)",
        ) from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def url_for(sock: socket.socket) -> str:
    """The base URL clients use for a listening socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class Server(uvicorn.Server):
    """uvicorn's server, ending with exit status 0 after a graceful shutdown by signal.

    uvicorn re-raises the signal that stopped it once it is done, so a SIGTERM'd server
    dies of SIGTERM after shutting down cleanly; a command that finished its shutdown
    should say so with its exit status instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


def config_options(
    *,
    grace: int = 30,
    log_level: str = "info",
    access_log: bool = False,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> dict[str, Any]:
    """`uvicorn.Config` keywords for serving the app (all but the app and its HTTP protocol)."""
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    return {
        "lifespan": "on",
        "timeout_graceful_shutdown": grace,
        "log_level": log_level,
        "access_log": access_log,
        "ws": "none",
        # uvicorn refuses once the open connections, this one included, reach the limit.
        "limit_concurrency": max_connections + 1,
        "server_header": False,
        "headers": [("server", f"dsollama/{dsollama_version()}")],
    }


_OURS = "_dsollama_serve"
"Marks the handler `setup_logging` added: a second call replaces it rather than adding one."


def setup_logging(level: str) -> None:
    """Log lines of a serving process: uvicorn's escaped (its access log quotes request
    paths), and the router's — one line per routed call, ``chat m -> hosted …`` — on
    stderr at ``level`` (uvicorn configures only its own loggers).

    Safe to call again (uvicorn sets up its loggers anew in each worker process): the
    handler it added before is replaced.
    """
    PrintableLogArgs.install("uvicorn.access", "uvicorn.error")
    logger = logging.getLogger("dsollama")
    logger.setLevel(level.upper())
    logger.propagate = False
    for old in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(old)  # one handler, on the stderr of now
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    # On the handler too, so records of every dsollama.* logger reaching it are escaped.
    handler.addFilter(PrintableLogArgs())
    setattr(handler, _OURS, True)
    logger.addHandler(handler)


def make_server(
    app: Any,
    *,
    grace: int = 30,
    log_level: str = "info",
    access_log: bool = False,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> Server:
    """A uvicorn server for the app; run it with ``server.run(sockets=[bind(...)])``.

    ``header_timeout``, ``body_timeout``: seconds a client has to send a request's headers
    and its body (see `slow_clients`). ``max_connections``: connections served at once.
    """
    options = config_options(
        grace=grace, log_level=log_level, access_log=access_log, max_connections=max_connections
    )
    config = uvicorn.Config(
        app,
        # Our h11 protocol with deadlines, whatever else is installed (httptools).
        http=guarded_protocol(header_timeout=header_timeout, body_timeout=body_timeout),
        **options,
    )
    # uvicorn.Config has just set up its loggers; its access log quotes request paths.
    PrintableLogArgs.install("uvicorn.access", "uvicorn.error")
    return Server(config)
