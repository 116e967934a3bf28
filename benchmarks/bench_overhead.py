"""Overhead when all is well: `dsollama.Client.chat` versus `ollama.Client.chat`.

Both clients call the same Ollama double, which runs in its own process, unpaced
(``--tokens-per-second 0``) and with enough slots that nothing queues, so what differs is
the client. Four cells: sync and async, non-streaming and streaming. Calls are
interleaved (official, dsollama, dsollama without the request log, in a rotating order),
so drift in the machine's speed hits every client alike; the numbers are ratios measured
in the same run.

dsollama runs with its defaults, the request log included (written to a temporary file
off the request path); "log off" isolates what the log costs. No hosted key is set: when
all is well no hosted call is made anyway.

    python benchmarks/bench_overhead.py [--calls 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
CLIENTS = ("official", "dsollama", "dsollama-log-off")
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
    import ollama

    import dsollama

    clients: dict[str, Any] = {
        "official": ollama.Client(host=url),
        "dsollama": dsollama.Client(settings=_settings(url, log_path)),
        "dsollama-log-off": dsollama.Client(settings=_settings(url, None)),
    }

    def call(client: Any) -> int:
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
        import ollama

        import dsollama

        clients: dict[str, Any] = {
            "official": ollama.AsyncClient(host=url),
            "dsollama": dsollama.AsyncClient(settings=_settings(url, log_path)),
            "dsollama-log-off": dsollama.AsyncClient(settings=_settings(url, None)),
        }

        async def call(client: Any) -> int:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
