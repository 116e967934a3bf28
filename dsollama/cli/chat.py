"""`dsollama chat` and `dsollama generate`: answers from wherever can answer, and a status
line that says where they came from.

The answer goes to stdout; reasoning (dimmed on a terminal) and the status line go to
stderr, so `dsollama chat m "q" > answer.txt` keeps only the answer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from dsollama._sync import Client
    from dsollama._types import ChatResponse, GenerateResponse

__all__ = ["chat", "generate"]

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULT_MODEL = "deepseek-r1:8b"


def _routing_options(func: F) -> F:
    options = [
        click.option(
            "--local-only",
            is_flag=True,
            help="Never leave this machine (fail instead of falling back).",
        ),
        click.option(
            "--hosted-first",
            is_flag=True,
            help="Ask the hosted API first; fall back to the local daemon.",
        ),
        click.option(
            "--first-token-timeout",
            type=float,
            metavar="S",
            help="Budget for the first token before moving on.",
        ),
        click.option(
            "--gap-timeout", type=float, metavar="S", help="Longest silence between chunks."
        ),
        click.option(
            "--total-timeout", type=float, metavar="S", help="Deadline for the whole answer."
        ),
        click.option(
            "--continue/--no-continue",
            "continue_stream",
            default=None,
            help="Continue a broken answer on the hosted route.",
        ),
        click.option(
            "--hedge/--no-hedge", default=None, help="Race local and hosted when local is late."
        ),
        click.option(
            "--think/--no-think", "think", default=None, help="Switch reasoning on or off."
        ),
        click.option("--hide-thinking", is_flag=True, help="Do not print the model's reasoning."),
        click.option("--host", help="Ollama host (default: OLLAMA_HOST or 127.0.0.1:11434)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _client(host: str | None) -> Client:
    """The command's client; the first time it keeps prompts and answers, it says so."""
    from dsollama._calllog import content_notice
    from dsollama._sync import Client

    client = Client(host, source="cli")
    notice = content_notice(client.settings, "cli")
    if notice:
        click.echo(notice, err=True)  # stderr: stdout carries only the answer
    return client


def _controls(local_only: bool, hosted_first: bool, **kwargs: Any) -> dict[str, Any]:
    if local_only and hosted_first:
        raise click.UsageError("--local-only and --hosted-first contradict each other")
    controls: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
    if local_only:
        controls["local_only"] = True
    if hosted_first:
        controls["policy"] = "hosted-first"
    return controls


class _Printer:
    """Streams reasoning (dimmed, stderr) and answer (stdout), then the status line."""

    def __init__(self, hide_thinking: bool) -> None:
        self.hide_thinking = hide_thinking
        self.tty = sys.stderr.isatty()
        self.in_thinking = False
        self.wrote_answer = False

    def thinking(self, text: str) -> None:
        if self.hide_thinking or not text:
            return
        if not self.in_thinking:
            self.in_thinking = True
            click.echo(
                click.style("Thinking…\n", dim=True) if self.tty else "[thinking]\n",
                nl=False,
                err=True,
            )
        click.echo(click.style(text, dim=True) if self.tty else text, nl=False, err=True)

    def answer(self, text: str) -> None:
        if not text:
            return
        if self.in_thinking:
            self.in_thinking = False
            click.echo("\n", nl=False, err=True)
        self.wrote_answer = True
        click.echo(text, nl=False)
        sys.stdout.flush()

    def end(self, final: ChatResponse | GenerateResponse | None) -> None:
        if self.wrote_answer or self.in_thinking:
            click.echo()
        if final is not None:
            click.echo(
                click.style(status_line(final), fg="cyan") if self.tty else status_line(final),
                err=True,
            )


def status_line(final: ChatResponse | GenerateResponse) -> str:
    """One line: which route served, why it moved, and how long it took."""
    served = final.served_by
    parts = [f"served by {served.kind} {served.model} @ {served.endpoint}" if served else "served"]
    if final.fallback_reason:
        parts.append(f"fallback: {final.fallback_reason}")
    if final.ttft_s is not None:
        parts.append(f"first token {final.ttft_s:.2f}s")
    if final.elapsed_s is not None:
        parts.append(f"total {final.elapsed_s:.2f}s")
    if final.eval_count:
        parts.append(f"{final.eval_count} tokens")
    if final.cost_usd:
        parts.append(f"~${final.cost_usd:.5f}")
    if final.seams:
        parts.append(f"continued on {final.seams[-1].to_route}")
    return "— " + " · ".join(parts)


def _stream(
    parts: Iterator[Any], printer: _Printer, *, chat: bool
) -> ChatResponse | GenerateResponse | None:
    from dsollama._exceptions import StreamInterruptedError

    final = None
    try:
        for part in parts:
            if chat:
                printer.thinking(part.message.thinking or "")
                printer.answer(part.message.content or "")
            else:
                printer.thinking(part.thinking or "")
                printer.answer(part.response or "")
            if part.done:
                final = part
    except StreamInterruptedError:
        printer.end(None)
        raise
    printer.end(final)
    return final


def _read_prompt(prompt: str | None) -> str | None:
    if prompt == "-" or (prompt is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    return prompt


@click.command()
@click.argument("model", required=False)
@click.argument("prompt", required=False)
@click.option("--system", "-s", help="System prompt.")
@click.option(
    "--interactive", "-i", is_flag=True, help="Chat line by line even when stdin is not a terminal."
)
@_routing_options
def chat(
    model: str | None,
    prompt: str | None,
    system: str | None,
    interactive: bool,
    host: str | None,
    hide_thinking: bool,
    think: bool | None,
    **routing: Any,
) -> None:
    """Chat with MODEL (default deepseek-r1:8b). With PROMPT, answer it and exit; without,
    start an interactive chat that keeps the conversation (/clear forgets it, /bye ends).

    The answer comes from the local daemon when it can answer in time, and from the
    hosted API when it is down, failing or busy (if DEEPSEEK_API_KEY is set). The last
    line says which route served, why, and how long it took.
    """
    controls = _controls(**routing)
    model = model or _DEFAULT_MODEL
    client = _client(host)
    history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    text = None if interactive and prompt is None else _read_prompt(prompt)
    if text is not None:
        history.append({"role": "user", "content": text})
        parts = client.chat(model, history, stream=True, think=think, **controls)
        _stream(parts, _Printer(hide_thinking), chat=True)
        return
    _interactive(client, model, history, think, hide_thinking, controls)


def _interactive(
    client: Client,
    model: str,
    history: list[dict[str, Any]],
    think: bool | None,
    hide_thinking: bool,
    controls: dict[str, Any],
) -> None:
    from dsollama._exceptions import DsollamaError

    click.echo(
        f"Chatting with {model}. /clear forgets the conversation, /bye (or Ctrl-D) ends.", err=True
    )
    keep = history[:1] if history and history[0]["role"] == "system" else []
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            click.echo(err=True)
            return
        if not line.strip():
            continue
        if line.strip() in {"/bye", "/exit", "/quit"}:
            return
        if line.strip() == "/clear":
            history[:] = list(keep)
            click.echo("(conversation cleared)", err=True)
            continue
        history.append({"role": "user", "content": line})
        printer = _Printer(hide_thinking)
        try:
            final = _stream(
                client.chat(model, history, stream=True, think=think, **controls),
                printer,
                chat=True,
            )
        except KeyboardInterrupt:
            printer.end(None)
            click.echo("(answer interrupted)", err=True)
            history.pop()
            continue
        except DsollamaError as exc:
            click.echo(f"Error: {exc.one_line()}", err=True)
            history.pop()
            continue
        if final is not None:
            history.append({"role": "assistant", "content": _answer_of(final)})


def _answer_of(final: ChatResponse | GenerateResponse) -> str:
    message = getattr(final, "message", None)
    return (message.content if message is not None else None) or ""


@click.command()
@click.argument("model", required=False)
@click.argument("prompt", required=False)
@click.option("--system", "-s", help="System prompt.")
@click.option("--suffix", help="Text after the insertion point (fill-in-the-middle).")
@_routing_options
def generate(
    model: str | None,
    prompt: str | None,
    system: str | None,
    suffix: str | None,
    host: str | None,
    hide_thinking: bool,
    think: bool | None,
    **routing: Any,
) -> None:
    """Complete PROMPT with MODEL (default deepseek-r1:8b); reads the prompt from stdin when
    PROMPT is '-' or omitted and stdin is not a terminal."""
    controls = _controls(**routing)
    text = _read_prompt(prompt)
    if text is None:
        raise click.UsageError("give a PROMPT (or '-' to read it from stdin)")
    client = _client(host)
    parts = client.generate(
        model or _DEFAULT_MODEL,
        text,
        suffix or "",
        system=system or "",
        stream=True,
        think=think,
        **controls,
    )
    _stream(parts, _Printer(hide_thinking), chat=False)
