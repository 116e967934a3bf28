"""Overhead when all is well: `dsollama.Client.chat` versus `ollama.Client.chat`.

Both clients call the same Ollama double, which runs in its own process, unpaced
(``--tokens-per-second 0``) and with enough slots that nothing queues, so what differs is
the client. Four cells: sync and async, non-streaming and streaming. Calls are
interleaved (official, dsollama, dsollama without the request log, the bare stream, in a
rotating order), so drift in the machine's speed hits every client alike; the numbers are
ratios measured in the same run.

The *bare stream* is the floor of any client that streams from the daemon, as dsollama
does for every call: httpx (sync or async, as the cell) posting the same request with
``stream: true`` and reading the answer's bytes to the end, nothing parsed or built.

dsollama runs with its defaults, the request log included (written to a temporary file
off the request path); "log off" isolates what the log costs. No hosted key is set: when
all is well no hosted call is made anyway.

    python benchmarks/bench_overhead.py [--calls 300] [--json]
    python benchmarks/bench_overhead.py --profile benchmarks/profiles --label after

``--profile`` runs only dsollama (request log on) against the unpaced double, under
cProfile, and writes one top-20 table per cell to the folder given. The sync client's
work runs on its private loop thread, which is profiled too and merged with the caller's
thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Double, percentile

MODEL = "deepseek-coder:6.7b"
ANSWER_TOKENS = 32
MESSAGES = [{"role": "user", "content": "Write a haiku about queues."}]
CLIENTS = ("official", "dsollama", "dsollama-log-off", "bare-stream")
# The request the bare stream posts: what the clients send for a streamed chat.
_BARE_BODY = {"model": MODEL, "messages": MESSAGES, "stream": True}
# A fast local model (an 8B model on a good GPU); short answers keep the run short.
PACED_RATE = 100.0
PACED_TOKENS = 16


def _settings(url: str, log_path: Path | None) -> Any:
    from dsollama._config import Settings

    return Settings(
        ollama_hosts=(url,),
        log=log_path is not None,
        log_path=str(log_path) if log_path else None,
    )


def _stats(samples: list[tuple[float, int]]) -> dict[str, float]:
    per_call = [s for s, _ in samples]
    per_chunk = [s / max(n, 1) for s, n in samples]
    return {
        "median_call_s": percentile(per_call, 50),
        "p99_call_s": percentile(per_call, 99),
        "median_chunk_s": percentile(per_chunk, 50),
        "p99_chunk_s": percentile(per_chunk, 99),
        "chunks_per_call": samples[0][1] if samples else 0,
    }


def _cell(samples: dict[str, list[tuple[float, int]]], stream: bool) -> dict[str, Any]:
    stats = {name: _stats(values) for name, values in samples.items()}
    base = stats["official"]
    ratios: dict[str, dict[str, float]] = {}
    for name in CLIENTS[1:]:
        keys = ("median_call_s", "p99_call_s")
        if stream:
            keys += ("median_chunk_s", "p99_chunk_s")
        ratios[name] = {k.replace("_s", ""): round(stats[name][k] / base[k], 4) for k in keys}
    return {"stats": stats, "ratio_vs_official": ratios}


def _order(i: int) -> list[str]:
    # Rotate who goes first: the first call after a pause pays for a cold cache.
    k = i % len(CLIENTS)
    return list(CLIENTS[k:] + CLIENTS[:k])


def _sync_cell(url: str, log_path: Path, calls: int, warmup: int, stream: bool) -> dict[str, Any]:
    import httpx
    import ollama

    import dsollama

    clients: dict[str, Any] = {
        "official": ollama.Client(host=url),
        "dsollama": dsollama.Client(settings=_settings(url, log_path)),
        "dsollama-log-off": dsollama.Client(settings=_settings(url, None)),
        "bare-stream": httpx.Client(base_url=url, timeout=30.0),
    }

    def call(client: Any) -> int:
        if isinstance(client, httpx.Client):
            with client.stream("POST", "/api/chat", json=_BARE_BODY) as response:
                reads = sum(1 for _ in response.iter_bytes())
            return reads if stream else 1
        if not stream:
            client.chat(MODEL, MESSAGES)
            return 1
        return sum(1 for _ in client.chat(MODEL, MESSAGES, stream=True))

    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in CLIENTS}
    try:
        for i in range(warmup + calls):
            for name in _order(i):
                started = time.perf_counter()
                chunks = call(clients[name])
                elapsed = time.perf_counter() - started
                if i >= warmup:
                    samples[name].append((elapsed, chunks))
    finally:
        for client in clients.values():
            client.close()
    return _cell(samples, stream)


def _async_cell(url: str, log_path: Path, calls: int, warmup: int, stream: bool) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        import httpx
        import ollama

        import dsollama

        clients: dict[str, Any] = {
            "official": ollama.AsyncClient(host=url),
            "dsollama": dsollama.AsyncClient(settings=_settings(url, log_path)),
            "dsollama-log-off": dsollama.AsyncClient(settings=_settings(url, None)),
            "bare-stream": httpx.AsyncClient(base_url=url, timeout=30.0),
        }

        async def call(client: Any) -> int:
            if isinstance(client, httpx.AsyncClient):
                async with client.stream("POST", "/api/chat", json=_BARE_BODY) as response:
                    reads = len([chunk async for chunk in response.aiter_bytes()])
                return reads if stream else 1
            if not stream:
                await client.chat(MODEL, MESSAGES)
                return 1
            return len([part async for part in await client.chat(MODEL, MESSAGES, stream=True)])

        samples: dict[str, list[tuple[float, int]]] = {name: [] for name in CLIENTS}
        try:
            for i in range(warmup + calls):
                for name in _order(i):
                    started = time.perf_counter()
                    chunks = await call(clients[name])
                    elapsed = time.perf_counter() - started
                    if i >= warmup:
                        samples[name].append((elapsed, chunks))
        finally:
            for name, client in clients.items():
                closer: Callable[[], Awaitable[Any]] = (
                    client.close if name == "official" else client.aclose
                )
                await closer()
        return _cell(samples, stream)

    return asyncio.run(main())


def _cells(tokens_per_second: float, answer_tokens: int, calls: int, warmup: int) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="dsollama-bench-") as tmp,
        Double(
            "ollama",
            "--model",
            MODEL,
            "--slots",
            "8",
            "--tokens-per-second",
            str(tokens_per_second),
            "--answer-tokens",
            str(answer_tokens),
            "--thinking-tokens",
            "0",
        ) as double,
    ):
        log_path = Path(tmp) / "requests.db"
        for mode in ("sync", "async"):
            for stream in (False, True):
                cell = _sync_cell if mode == "sync" else _async_cell
                key = f"{mode}-{'stream' if stream else 'whole'}"
                cells[key] = cell(double.url, log_path, calls, warmup, stream)
    return cells


def run(
    calls: int = 300, *, paced_calls: int = 20, warmup: int = 20, paced_rate: float = PACED_RATE
) -> dict[str, Any]:
    """Per-call and per-chunk times of each client, and dsollama's ratios to the official.

    ``unpaced``: the double answers as fast as it can, so the whole difference is client
    CPU (the harshest view). ``paced``: tokens at ``paced_rate`` per second, what a caller
    of a fast local model sees.
    """
    return {
        "calls": calls,
        "paced_calls": paced_calls,
        "warmup": warmup,
        "answer_tokens": ANSWER_TOKENS,
        "paced_answer_tokens": PACED_TOKENS,
        "paced_tokens_per_second": paced_rate,
        "model": MODEL,
        "unpaced": _cells(0, ANSWER_TOKENS, calls, warmup),
        "paced": _cells(paced_rate, PACED_TOKENS, paced_calls, min(warmup, 3)),
    }


def _profile_cell(url: str, log_path: Path, calls: int, mode: str, stream: bool) -> pstats.Stats:
    """cProfile of ``calls`` dsollama calls in one cell (after a warm-up), every thread."""
    import dsollama
    from dsollama import _loop

    warmup = 20
    profiles = [cProfile.Profile()]
    if mode == "sync":
        client = dsollama.Client(settings=_settings(url, log_path))

        def one() -> None:
            if stream:
                for _ in client.chat(MODEL, MESSAGES, stream=True):
                    pass
            else:
                client.chat(MODEL, MESSAGES)

        for _ in range(warmup):
            one()
        loop_profile = cProfile.Profile()

        async def switch(on: bool) -> None:
            # A profiler hooks the thread that enables it: this one runs on the loop thread.
            if on:
                loop_profile.enable()
            else:
                loop_profile.disable()

        try:
            asyncio.run_coroutine_threadsafe(switch(True), _loop.loop()).result()
            profiles.append(loop_profile)
        except ValueError:  # Python 3.12+: one profiler already sees every thread
            pass
        profiles[0].enable()
        for _ in range(calls):
            one()
        profiles[0].disable()
        if len(profiles) > 1:
            asyncio.run_coroutine_threadsafe(switch(False), _loop.loop()).result()
        client.close()
    else:

        async def main() -> None:
            client = dsollama.AsyncClient(settings=_settings(url, log_path))

            async def one() -> None:
                if stream:
                    async for _ in await client.chat(MODEL, MESSAGES, stream=True):
                        pass
                else:
                    await client.chat(MODEL, MESSAGES)

            for _ in range(warmup):
                await one()
            profiles[0].enable()
            for _ in range(calls):
                await one()
            profiles[0].disable()
            await client.aclose()

        asyncio.run(main())
    stats = pstats.Stats(profiles[0])
    for other in profiles[1:]:
        stats.add(other)
    return stats


def _top20(stats: pstats.Stats, title: str, calls: int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    out.write(f"# {title}\n\n")
    out.write(f"{calls} calls profiled; {total / calls * 1e3:.3f} ms of profiled time per call ")
    out.write("(wall time in profiled code, waits included, both threads for the sync client; ")
    out.write("cProfile's own overhead included: compare tables, not absolute times).\n\n")
    out.write("## top 20 by own time (tottime)\n\n```\n")
    stats.sort_stats("tottime").print_stats(20)
    out.write("```\n\n## top 20 by cumulative time\n\n```\n")
    stats.sort_stats("cumulative").print_stats(20)
    out.write("```\n\n## top 20 of dsollama's own functions by cumulative time\n\n```\n")
    stats.sort_stats("cumulative").print_stats(r"[/\\]dsollama[/\\]", 20)
    out.write("```\n")
    # Paths of this machine have no place in a committed table: keep from the package on.
    text = "\n".join(_trim_path(line) for line in out.getvalue().splitlines())
    return text + "\n"


def _trim_path(line: str) -> str:
    head, sep, tail = line.rpartition(" ")
    if "/" not in tail:
        return line
    if "/site-packages/" in tail:
        tail = tail.split("/site-packages/", 1)[1]
    elif "/dsollama/" in tail:
        tail = "dsollama/" + tail.split("/dsollama/", 1)[1]
    elif "/benchmarks/" in tail:
        tail = "benchmarks/" + tail.split("/benchmarks/", 1)[1]
    elif "/lib/python3" in tail:
        rest = tail.split("/lib/python3", 1)[1]
        tail = "stdlib" + rest[rest.find("/") :]
    return f"{head}{sep}{tail}"


def profile(folder: Path, label: str, calls: int = 300) -> list[Path]:
    """Write ``{label}-{cell}.md``: top-20 cProfile tables of dsollama in each cell."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="dsollama-bench-") as tmp,
        Double(
            "ollama",
            "--model",
            MODEL,
            "--slots",
            "8",
            "--tokens-per-second",
            "0",
            "--answer-tokens",
            str(ANSWER_TOKENS),
            "--thinking-tokens",
            "0",
        ) as double,
    ):
        log_path = Path(tmp) / "requests.db"
        for mode in ("sync", "async"):
            for stream in (False, True):
                key = f"{mode}-{'stream' if stream else 'whole'}"
                stats = _profile_cell(double.url, log_path, calls, mode, stream)
                target = folder / f"{label}-{key}.md"
                title = f"dsollama {key}, unpaced double, request log on ({label})"
                target.write_text(_top20(stats, title, calls), encoding="utf-8")
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", type=Path, help="write cProfile tables to this folder")
    parser.add_argument("--label", default="profile", help="file name prefix for --profile")
    args = parser.parse_args(argv)
    if args.profile is not None:
        for path in profile(args.profile, args.label, args.calls):
            print(path)
        return 0
    results = run(args.calls)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for pacing in ("unpaced", "paced"):
            for key, cell in results[pacing].items():
                print(pacing, key, json.dumps(cell["ratio_vs_official"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
