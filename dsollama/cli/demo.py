"""`dsollama demo`: see local-first fallback at work on simulated servers.

Needs no Ollama, no key and no network: everything runs against the doubles from
`dsollama.testing`, started in this process. Heavy imports happen inside the command, so
`dsollama --help` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pathlib import Path

    from dsollama._client import AsyncClient
    from dsollama._state import Estimates
    from dsollama.demo.burst import Outcome
    from dsollama.demo.live import LiveView
    from dsollama.demo.scenario import Scenario, SimulatedServers
    from dsollama.demo.summary import Summary

__all__ = ["demo"]


@click.command()
@click.option(
    "-n",
    "--requests",
    type=click.IntRange(1, 500),
    default=None,
    help="Concurrent chats in the burst (default 10; 6 with --quick).",
)
@click.option("--quick", is_flag=True, help="A shorter scenario: a few seconds in all.")
@click.option(
    "--no-live",
    is_flag=True,
    help="Plain lines instead of live tables (automatic when stdout is not a terminal).",
)
@click.option(
    "--modelfiles",
    "modelfiles_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder with deepseek-r1-reasoner.Modelfile (default: ./Modelfiles, else a built-in copy).",
)
def demo(requests: int | None, quick: bool, no_live: bool, modelfiles_dir: str | None) -> None:
    """See fallback at work on simulated servers (no Ollama, no key needed).

    \b
    1. provisions a Modelfile model on a simulated one-slot Ollama (real provisioning code);
    2. sends a burst of concurrent chats through dsollama and shows, live, which route
       serves each and why;
    3. sends the same burst through the official ollama client, for contrast;
    4. compares them: answered, failed, latency, first token, hosted share and cost.
    """
    import asyncio

    from dsollama.demo.scenario import Scenario

    scenario = (Scenario.quick_mode() if quick else Scenario()).with_requests(requests)
    live = not no_live and sys.stdout.isatty()
    asyncio.run(_run(scenario, live, modelfiles_dir))


def _say(text: str = "", *, live: bool, style: str = "") -> None:
    if live:
        from rich.console import Console

        Console().print(text, style=style or None, highlight=False)
    else:
        click.echo(text)


async def _run(scenario: Scenario, live: bool, modelfiles_dir: str | None) -> None:
    import shutil
    import time

    from dsollama.demo.scenario import SimulatedServers, find_modelfiles

    started = time.perf_counter()
    for number, line in enumerate(scenario.describe()):
        _say(line, live=live, style="bold yellow" if number == 0 else "")
    folder, temporary = find_modelfiles(modelfiles_dir)
    try:
        with SimulatedServers(scenario) as servers:
            await _provision(servers, folder, temporary, live)
            ours, learned = await _dsollama_round(servers, scenario, live)
            # Cold again, so the official client starts where dsollama started.
            await servers.unload()
            plain = await _plain_round(servers, scenario, live)
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
    _finish(ours, plain, scenario, live, time.perf_counter() - started, learned)


async def _provision(servers: SimulatedServers, folder: Path, temporary: bool, live: bool) -> None:
    from dsollama.cli._render import make_renderer
    from dsollama.demo.scenario import MODELFILE_NAME

    source = "a built-in copy" if temporary else str(folder)
    _say("", live=live)
    _say(
        f"Step 1/3  provision {MODELFILE_NAME} from {source} (dsollama's provisioning code)",
        live=live,
        style="bold",
    )
    renderer = make_renderer(tty=live)
    try:
        async for event in servers.provision(folder):
            renderer.handle(event)
    finally:
        renderer.close()


def _burst(scenario: Scenario) -> str:
    if scenario.spread_seconds > 0 and scenario.requests > 1:
        return f"{scenario.requests} chats arriving within {scenario.spread_seconds:g}s"
    return f"{scenario.requests} concurrent chats"


def _view(title: str, requests: int, live: bool) -> LiveView:
    from dsollama.demo.live import PlainView, RichView

    return RichView(title, requests) if live else PlainView()


async def _dsollama_round(
    servers: SimulatedServers, scenario: Scenario, live: bool
) -> tuple[list[Outcome], Estimates | None]:
    from dsollama._client import AsyncClient
    from dsollama.demo.burst import dsollama_burst
    from dsollama.demo.scenario import MODELFILE_NAME

    title = (
        f"Step 2/3  {_burst(scenario)} through dsollama.AsyncClient "
        f"(local first, first-token budget {scenario.first_token_budget:g}s)"
    )
    _say("", live=live)
    if not live:
        _say(title, live=live)
    servers.arm_hosted_busy_episodes()
    view = _view(title, scenario.requests, live)
    try:
        async with AsyncClient(settings=servers.settings(), source="demo") as client:
            outcomes = await dsollama_burst(
                client, MODELFILE_NAME, scenario.requests, scenario.spread_seconds, view
            )
            return outcomes, await _learned(client, MODELFILE_NAME)
    finally:
        view.close()


async def _learned(client: AsyncClient, model: str) -> Estimates | None:
    """What the client measured of the local model (to set beside what was simulated)."""
    from dsollama._routing.shapes import RouteChoice

    daemon = client.daemon()
    view = await client.router.state.view(RouteChoice(daemon, model, None))
    return view.estimates


async def _plain_round(servers: SimulatedServers, scenario: Scenario, live: bool) -> list[Outcome]:
    from dsollama.demo.burst import plain_burst
    from dsollama.demo.scenario import MODELFILE_NAME

    title = (
        f"Step 3/3  the same {scenario.requests} chats through the official ollama.AsyncClient "
        f"(timeout {scenario.plain_timeout:g}s, no fallback)"
    )
    _say("", live=live)
    if not live:
        _say(title, live=live)
    view = _view(title, scenario.requests, live)
    try:
        return await plain_burst(
            servers.ollama.url,
            MODELFILE_NAME,
            scenario.requests,
            scenario.spread_seconds,
            scenario.plain_timeout,
            view,
        )
    finally:
        view.close()


def _finish(
    ours: list[Outcome],
    plain: list[Outcome],
    scenario: Scenario,
    live: bool,
    elapsed: float,
    learned: Estimates | None,
) -> None:
    from dsollama.demo.summary import print_plain, print_rich, summarise

    summaries = [summarise("dsollama", ours), summarise("official ollama client", plain)]
    _say("", live=live)
    if live:
        from rich.console import Console

        print_rich(summaries, Console())
    else:
        _say("Summary (percentiles over every request; a failure counts as no answer)", live=live)
        print_plain(summaries, sys.stdout)
    for line in _reading(summaries, ours, scenario):
        _say(line, live=live)
    if learned is not None:
        _say(_estimates(learned, scenario), live=live)
    _say(
        f"Demo finished in {elapsed:.1f}s. Both servers were simulated; "
        "docs/demo.md explains how to read this.",
        live=live,
        style="dim",
    )


def _estimates(learned: Estimates, scenario: Scenario) -> str:
    """dsollama's measurements beside the simulation's settings: the two should agree."""
    load = (
        f"a cold load {learned.load_s:.1f}s (simulated {scenario.load_seconds:g}s)"
        if learned.load_samples
        else "no cold load measured yet"
    )
    answer = (
        f"an answer {learned.generation_s:.1f}s after its first token "
        f"(simulated {scenario.local_answer_seconds:.1f}s)"
        if learned.samples
        else "no local answer measured"
    )
    return f"What dsollama measured of the local model: {load}; {answer}."


def _reading(summaries: list[Summary], outcomes: list[Outcome], scenario: Scenario) -> list[str]:
    ours, plain = summaries
    predicted = sum(1 for o in outcomes if o.why.startswith(("local busy", "local model not")))
    late = sum(1 for o in outcomes if "no first token within" in o.why)
    retried = sum(1 for o in outcomes if "retried" in o.why)
    local = sum(1 for o in outcomes if o.ok and o.route == "local")
    lines = [
        "",
        f"dsollama answered {ours.answered} of {ours.requests}: {local} locally; {predicted} sent "
        "hosted at once because the local model was cold or its queue was predicted to miss the "
        f"first-token budget; {late} moved hosted when the budget ran out; {retried} retried "
        "past a hosted 429/503.",
    ]
    if plain.failed:
        lines.append(
            f"The official client answered {plain.answered} of {plain.requests}: the rest waited "
            f"silently in the daemon's queue until its {scenario.plain_timeout:g}s timeout."
        )
    else:
        lines.append(
            f"The official client answered all {plain.requests}, one at a time: its last first "
            f"token came after {plain.ttft[2]:.1f}s."
        )
    return lines
