"""One client variant sending one burst, in a process of its own (``python -m``).

`bench_busy_burst` starts this module once per (variant, N): a fresh interpreter per run
means no variant inherits another's connections, estimates or process-wide retry budget,
and the doubles (in their own processes) never share a GIL with the client measured.

Variants (the baselines are written the way a careful person would write them by hand):

- ``official``: `ollama.AsyncClient` with an explicit timeout, no fallback;
- ``try-except``: the same, and on any error the `openai` client to the hosted API;
- ``wait-budget``: a first-token budget on the local stream, then the hosted API
  (a reactive client: it waits the budget out before falling back);
- ``admission-only``: never queue: with the local slots taken, go hosted at once;
- ``dsollama-budget`` / ``dsollama-latency``: `dsollama.AsyncClient` with
  ``admission="budget"`` (the default) or ``"latency"``.

Prints one JSON object: the warm-up call and every request of the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

VARIANTS = (
    "official",
    "try-except",
    "wait-budget",
    "admission-only",
    "dsollama-budget",
    "dsollama-latency",
)


@dataclass
class Record:
    ok: bool = False
    route: str | None = None
    ttft: float | None = None
    latency: float = 0.0
    error: str | None = None


class Timer:
    """Marks the first token and the end of one request, relative to the burst start."""

    def __init__(self, started: float, record: Record) -> None:
        self.started = started
        self.record = record

    def token(self, text: str | None, route: str) -> None:
        if text and self.record.ttft is None:
            self.record.ttft = time.perf_counter() - self.started
            self.record.route = route


MESSAGES = [{"role": "user", "content": "Why run DeepSeek locally?"}]


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        import ollama
        import openai

        self.args = args
        self.ollama = ollama.AsyncClient(host=args.ollama, timeout=args.timeout)
        self.hosted = openai.AsyncOpenAI(
            base_url=args.hosted, api_key=args.key, max_retries=0, timeout=args.deadline
        )
        self.in_flight = 0
        self.dsollama: Any = None
        if args.variant.startswith("dsollama-"):
            from dsollama import AsyncClient
            from dsollama._config import Settings

            self.dsollama = AsyncClient(
                settings=Settings(
                    ollama_hosts=(args.ollama,),
                    hosted_base_url=args.hosted,
                    hosted_api_key=args.key,
                    first_token_timeout=args.budget,
                    local_slots=args.slots,
                    admission=args.variant.removeprefix("dsollama-"),
                    total_timeout=args.deadline,
                    log=False,
                )
            )

    async def close(self) -> None:
        await self.ollama.close()
        await self.hosted.close()
        if self.dsollama is not None:
            await self.dsollama.aclose()

    # -- the two routes, as a hand-written client calls them ---------------------------

    async def local(self, timer: Timer) -> None:
        stream = await self.ollama.chat(self.args.model, MESSAGES, stream=True)
        async for part in stream:
            timer.token(part.message.content, "local")
        timer.record.route = "local"

    async def hosted_call(self, timer: Timer) -> None:
        stream = await self.hosted.chat.completions.create(
            model=self.args.hosted_model,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            extra_body={"thinking": {"type": "disabled"}},
        )
        async for chunk in stream:
            if chunk.choices:
                timer.token(chunk.choices[0].delta.content, "hosted")
        timer.record.route = "hosted"


async def official(ctx: Context, timer: Timer) -> None:
    await ctx.local(timer)


async def try_except(ctx: Context, timer: Timer) -> None:
    import httpx
    import ollama

    try:
        await ctx.local(timer)
    except (ollama.ResponseError, httpx.HTTPError, ConnectionError):
        if timer.record.ttft is not None:
            raise  # the caller already has part of a local answer
        await ctx.hosted_call(timer)


async def wait_budget(ctx: Context, timer: Timer) -> None:
    import httpx
    import ollama

    stream: AsyncIterator[Any] = (
        await ctx.ollama.chat(ctx.args.model, MESSAGES, stream=True)
    ).__aiter__()
    try:
        first = await asyncio.wait_for(stream.__anext__(), ctx.args.budget)
    except (TimeoutError, asyncio.TimeoutError, ollama.ResponseError, httpx.HTTPError):
        await _close(stream)
        await ctx.hosted_call(timer)
        return
    timer.token(first.message.content, "local")
    async for part in stream:
        timer.token(part.message.content, "local")
    timer.record.route = "local"


async def _close(stream: AsyncIterator[Any]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass


async def admission_only(ctx: Context, timer: Timer) -> None:
    # Emulates admission-only routing (LiteLLM's max_parallel_requests as it is usually
    # described): never queue on the daemon; with every slot taken, go hosted at once.
    if ctx.in_flight >= ctx.args.slots:
        await ctx.hosted_call(timer)
        return
    ctx.in_flight += 1
    try:
        await ctx.local(timer)
    finally:
        ctx.in_flight -= 1


async def with_dsollama(ctx: Context, timer: Timer) -> None:
    last: Any = None
    async for part in await ctx.dsollama.chat(ctx.args.model, MESSAGES, stream=True):
        if part.served_by is not None:
            timer.token(part.message.content, part.served_by.kind)
        last = part
    if last is not None and last.served_by is not None:
        timer.record.route = last.served_by.kind


RUNNERS: dict[str, Callable[[Context, Timer], Awaitable[None]]] = {
    "official": official,
    "try-except": try_except,
    "wait-budget": wait_budget,
    "admission-only": admission_only,
    "dsollama-budget": with_dsollama,
    "dsollama-latency": with_dsollama,
}


async def warm_hosted(ctx: Context, timer: Timer) -> None:
    """One call straight to the hosted route (every client has then seen both routes)."""
    if ctx.dsollama is None:
        await ctx.hosted_call(timer)
        return
    last: Any = None
    async for part in await ctx.dsollama.chat(
        ctx.args.model, MESSAGES, stream=True, policy="hosted-first"
    ):
        timer.token(part.message.content, "hosted")
        last = part
    if last is not None and last.served_by is not None:
        timer.record.route = last.served_by.kind


async def _one(
    ctx: Context,
    started: float,
    runner: Callable[[Context, Timer], Awaitable[None]] | None = None,
) -> Record:
    record = Record()
    timer = Timer(started, record)
    try:
        # Every variant gets the same hard deadline: past it, the request counts as failed.
        await asyncio.wait_for((runner or RUNNERS[ctx.args.variant])(ctx, timer), ctx.args.deadline)
        record.ok = True
    except (TimeoutError, asyncio.TimeoutError):
        record.error = "deadline"
    except Exception as exc:
        record.error = type(exc).__name__
    record.latency = time.perf_counter() - started
    if not record.ok:
        record.ttft = None
    return record


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ctx = Context(args)
    try:
        # First one call on the idle daemon and one to the hosted API: every client has
        # seen both routes answer once (dsollama learns its estimates from them).
        warm = [
            await _one(ctx, time.perf_counter()),
            await _one(ctx, time.perf_counter(), warm_hosted),
        ]
        started = time.perf_counter()
        records = await asyncio.gather(*(_one(ctx, started) for _ in range(args.n)))
    finally:
        await ctx.close()
    return {"warmup": [asdict(w) for w in warm], "requests": [asdict(r) for r in records]}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="one burst from one client variant")
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--ollama", required=True)
    parser.add_argument("--hosted", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--hosted-model", required=True)
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--deadline", type=float, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(asyncio.run(main_async(parse(argv)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
