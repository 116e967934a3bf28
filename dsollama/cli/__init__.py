"""The `dsollama` command line: a thin layer over the library.

Subcommands live in their own modules and are imported only when run, so
`dsollama --help` stays fast. `main()` is the one place where errors become a single
line on stderr with the fix (exit 1; usage errors exit 2; Ctrl-C exits 130); a traceback
appears only with ``--debug``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import click

__all__ = ["cli", "main"]

# command name -> (module, attribute, one-line help shown by --help without importing)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "dsollama.cli.demo",
        "demo",
        "See fallback at work on simulated servers (no Ollama, no key needed).",
    ),
    "chat": (
        "dsollama.cli.chat",
        "chat",
        "Chat with a model; answers come from wherever can answer.",
    ),
    "generate": (
        "dsollama.cli.chat",
        "generate",
        "Complete a prompt (local first, hosted fallback).",
    ),
    "models": (
        "dsollama.cli.models",
        "models",
        "List DeepSeek models: what fits this machine, what is pulled.",
    ),
    "pull": (
        "dsollama.cli.provision",
        "pull",
        "Pull the right DeepSeek model and create the Modelfile models.",
    ),
    "create": ("dsollama.cli.provision", "create", "Create a model from a Modelfile."),
    "list": ("dsollama.cli.provision", "list_models", "List models on the local daemon."),
    "show": ("dsollama.cli.provision", "show", "Show a local model's details."),
    "ps": ("dsollama.cli.provision", "ps", "List models loaded in memory."),
    "rm": ("dsollama.cli.provision", "rm", "Remove a model from the local daemon."),
    "routes": (
        "dsollama.cli.routes",
        "routes",
        "Every route: API, privacy, models, capacity, live load, breaker, last error.",
    ),
    "status": (
        "dsollama.cli.status",
        "status",
        "Check the daemon and the hosted key, with next steps.",
    ),
    "serve": (
        "dsollama.cli.serve",
        "serve",
        "Serve Ollama- and OpenAI-format endpoints with fallback.",
    ),
    "logs": ("dsollama.cli.logs", "logs", "Show recent calls from the request log."),
    "stats": ("dsollama.cli.logs", "stats", "Summarise calls: routes, failures, latency, cost."),
    "config": (
        "dsollama.cli.config",
        "config",
        "Show the effective settings and where each came from.",
    ),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):  # pragma: no cover - programming error
            raise TypeError(f"{module_name}.{attr} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from dsollama._exceptions import DsollamaError

        try:
            return super().invoke(ctx)
        except DsollamaError as exc:
            if _debug_on(sys.argv):
                raise
            raise DsollamaClickError(exc) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table, so --help imports no subcommand module.
        rows = [(name, help_text) for name, (_, _, help_text) in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class DsollamaClickError(click.ClickException):
    """A dsollama error shown the click way: one line on stderr, exit code 1."""

    exit_code = 1

    def __init__(self, error: Exception) -> None:
        one_line = getattr(error, "one_line", None)
        super().__init__(one_line() if callable(one_line) else str(error))
        self.error = error


class State:
    """Shared CLI state (``ctx.obj``)."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug


_debug_requested = False


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="dsollama", message="dsollama %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Make DeepSeek on your own machine dependable.

    \b
    Start here:
      dsollama demo        see local-first fallback on simulated servers
      dsollama models      which DeepSeek models fit this machine
      dsollama pull        provision the recommended model and the Modelfiles
      dsollama chat        chat, falling back to the hosted API when local is busy
    """
    global _debug_requested
    _debug_requested = _debug_requested or debug
    ctx.obj = State(debug=debug)


def _debug_on(argv: list[str]) -> bool:
    return (
        _debug_requested
        or "--debug" in argv
        or os.environ.get("DSOLLAMA_DEBUG", "") in {"1", "true", "on"}
    )


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; errors become one line on stderr and an exit code."""
    from dsollama._exceptions import DsollamaError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return cli.main(args=args, prog_name="dsollama", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _exit_interrupted("Aborted.")
    except click.ClickException as exc:
        if _debug_on(args):
            raise
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        if _debug_on(args):
            raise
        _exit_interrupted("Interrupted.")
    except DsollamaError as exc:
        if _debug_on(args):
            raise
        click.echo(f"Error: {exc.one_line()}", err=True)
        sys.exit(1)
    except BrokenPipeError:  # `dsollama logs | head`
        sys.stderr.close()
        sys.exit(1)
    except Exception as exc:
        if _debug_on(args):
            raise
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)


def _exit_interrupted(message: str) -> NoReturn:
    """Ctrl-C (click reports it as Abort): one line on stderr and exit status 130."""
    _forget_interrupt_in_string_exec()
    click.echo(message, err=True)
    sys.exit(130)


def _forget_interrupt_in_string_exec() -> None:
    """Keep CPython from turning our exit status 130 into death by SIGINT.

    CPython marks a KeyboardInterrupt that leaves code run by ``exec(<string>)`` as
    unhandled even when a caller catches it, and under ``python -m`` it then kills the
    process with SIGINT after exit (status -2) instead of using the status we chose.
    dataclasses builds methods with ``exec(<string>)``, so a Ctrl-C during a command's
    lazy imports hits it. Every string exec clears the mark before it runs.
    """
    exec("pass", {})
