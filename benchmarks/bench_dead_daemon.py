"""Dead daemon: what a local daemon that is not running adds to the time to first token.

Set-up: the DeepSeek double in its own process (first token at once, unpaced); the
"daemon" is a loopback port nothing listens on, so connecting is refused at once, as on a
machine where Ollama is not running. Compared, with streamed chats:

- ``direct``: the `openai` client straight to the hosted double (what the call costs
  anyway), one fresh client per call like the first call of a program;
- ``first_call``: a fresh `dsollama.Client` per call: it tries the daemon, is refused,
  and falls back — what the first call of a program pays;
- ``breaker_open``: further calls on one `dsollama.Client`, whose breaker has opened on
  the refusal, so they go hosted without touching the daemon;
- ``direct_reused``: the `openai` client reused, the baseline for ``breaker_open``.

    python benchmarks/bench_dead_daemon.py [--calls 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Double, free_port, percentile

MESSAGES = [{"role": "user", "content": "hi"}]
# Calls per case with the breaker open, per call with a fresh client.
_REUSED_FACTOR = 4
MODEL = "deepseek-r1:8b"
HOSTED_MODEL = "deepseek-flash"


def _ttft(call: Callable[[], Iterator[Any]], text: Callable[[Any], str | None]) -> float:
    # The clock starts before the call: some clients send the request when called,
    # others on the first iteration.
    started = time.perf_counter()
    ttft: float | None = None
    for chunk in call():
        if ttft is None and text(chunk):
            ttft = time.perf_counter() - started
    assert ttft is not None, "no token arrived"
    return ttft


def _openai_text(chunk: Any) -> str | None:
    if not chunk.choices:
        return None
    delta = chunk.choices[0].delta
    return delta.content or (delta.model_extra or {}).get("reasoning_content")


def _dsollama_text(part: Any) -> str | None:
    return part.message.content or part.message.thinking


def _stats(samples: list[float]) -> dict[str, float]:
    return {"median_s": percentile(samples, 50), "p99_s": percentile(samples, 99)}


def _async_breaker_open(hosted: Any, settings: Any, calls: int) -> dict[str, list[float]]:
    """Time to first token, reused `openai.AsyncOpenAI` vs `dsollama.AsyncClient` whose
    local breaker is open, interleaved in alternating order."""
    import openai

    import dsollama

    async def ttft(parts: Any, text: Callable[[Any], str | None]) -> float:
        started = time.perf_counter()
        first: float | None = None
        async for part in await parts():
            if first is None and text(part):
                first = time.perf_counter() - started
        assert first is not None, "no token arrived"
        return first

    async def measure() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"async_direct_reused": [], "async_breaker_open": []}
        direct = openai.AsyncOpenAI(base_url=hosted.url, api_key=hosted.api_key, max_retries=0)
        async with direct, dsollama.AsyncClient(settings=settings) as ds:

            def official() -> Any:
                return direct.chat.completions.create(
                    model=HOSTED_MODEL,
                    messages=MESSAGES,  # type: ignore[arg-type]
                    stream=True,
                )

            def ours() -> Any:
                return ds.chat(MODEL, MESSAGES, stream=True)

            await ttft(official, _openai_text)
            await ttft(ours, _dsollama_text)  # opens the breaker
            for i in range(calls):
                pair = [
                    ("async_direct_reused", official, _openai_text),
                    ("async_breaker_open", ours, _dsollama_text),
                ]
                for name, call, text in pair if i % 2 else pair[::-1]:
                    out[name].append(await ttft(call, text))
        return out

    return asyncio.run(measure())


def run(calls: int = 50) -> dict[str, Any]:
    import openai

    import dsollama
    from dsollama._config import Settings

    dead = f"http://127.0.0.1:{free_port()}"
    samples: dict[str, list[float]] = {
        "direct": [],
        "first_call": [],
        "direct_reused": [],
        "breaker_open": [],
    }
    with Double("deepseek", "--tokens-per-second", "0") as hosted:
        settings = Settings(
            ollama_hosts=(dead,),
            hosted_base_url=hosted.url,
            hosted_api_key=hosted.api_key,
            log=False,
            # Long enough that the breaker stays open for the whole measurement.
            breaker_cooldown=600.0,
        )

        def direct_call(client: openai.OpenAI) -> float:
            def call() -> Iterator[Any]:
                return iter(
                    client.chat.completions.create(
                        model=HOSTED_MODEL,
                        messages=MESSAGES,  # type: ignore[arg-type]
                        stream=True,
                    )
                )

            return _ttft(call, _openai_text)

        def ds_call(ds: dsollama.Client) -> float:
            return _ttft(lambda: iter(ds.chat(MODEL, MESSAGES, stream=True)), _dsollama_text)

        def fresh_openai() -> openai.OpenAI:
            return openai.OpenAI(base_url=hosted.url, api_key=hosted.api_key, max_retries=0)

        # Warm-up: imports, the double's first answers.
        with fresh_openai() as client:
            direct_call(client)
        with dsollama.Client(settings=settings) as ds:
            ds_call(ds)

        for _ in range(calls):
            # Interleaved, so drift hits both alike.
            with fresh_openai() as client:
                samples["direct"].append(direct_call(client))
            with dsollama.Client(settings=settings) as ds:
                samples["first_call"].append(ds_call(ds))
        with fresh_openai() as client, dsollama.Client(settings=settings) as ds:
            direct_call(client)
            ds_call(ds)  # opens it
            state = ds.routes()["breakers"]
            # Cheap calls, compared at a fraction of a millisecond: more of them, so the
            # medians hold still on a busy machine.
            for i in range(calls * _REUSED_FACTOR):
                # Alternate who goes first: the call after the other pays for a cold cache.
                pair = [
                    ("direct_reused", lambda: direct_call(client)),
                    ("breaker_open", lambda: ds_call(ds)),
                ]
                for name, call in pair if i % 2 else pair[::-1]:
                    samples[name].append(call())
        # The same pair through the async clients: what the router adds, without the sync
        # client's hand-over from its private loop thread to the caller's.
        samples.update(_async_breaker_open(hosted, settings, calls * _REUSED_FACTOR))
    stats = {name: _stats(values) for name, values in samples.items()}
    return {
        "calls": calls,
        "reused_calls": calls * _REUSED_FACTOR,
        "stats": stats,
        "breaker_states": {route: s.get("state") for route, s in state.items()},
        "added_ttft_s": {
            "first_call_median": stats["first_call"]["median_s"] - stats["direct"]["median_s"],
            "first_call_p99": stats["first_call"]["p99_s"] - stats["direct"]["p99_s"],
            "breaker_open_median": stats["breaker_open"]["median_s"]
            - stats["direct_reused"]["median_s"],
            "breaker_open_p99": stats["breaker_open"]["p99_s"] - stats["direct_reused"]["p99_s"],
            "async_breaker_open_median": stats["async_breaker_open"]["median_s"]
            - stats["async_direct_reused"]["median_s"],
            "async_breaker_open_p99": stats["async_breaker_open"]["p99_s"]
            - stats["async_direct_reused"]["p99_s"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.calls)
    print(json.dumps(results if args.json else results["added_ttft_s"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
