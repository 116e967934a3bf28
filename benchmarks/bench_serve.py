"""What `dsollama serve` costs: requests per second and added latency, on this machine.

The same chat requests go straight to the Ollama double and through ``dsollama serve`` in
front of it; the difference is what serve adds (HTTP parsing, routing, re-encoding, the
request log). Each party has its own process: the double (``python -m dsollama.testing
ollama``, unpaced), serve (``python -m dsollama serve``, default settings, the request log
on but written to a temporary folder) and the load generators, which speak raw HTTP/1.1
over keep-alive sockets (an HTTP client library would measure itself).

For non-streaming and streaming ``POST /api/chat``:

- latency: one connection, one request after another, so nothing queues; p50/p99 of the
  whole answer and, for streams, of the first chunk (serve, like the daemon, sends its
  headers with the first chunk, so the first byte is the first token);
- throughput: several client processes × keep-alive connections; answers per second;
- for reference, the same calls through `dsollama.AsyncClient` in one process without
  serve ("library"): the part of serve's cost that is the router's, not HTTP's.

"Added" is serve minus direct at the same percentile.

    python benchmarks/bench_serve.py [--seconds 3] [--workers N] [--connections C] [--json]

``run(seconds=3.0)`` returns the numbers as a flat dict of numbers and labels.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from urllib.parse import urlsplit

MODEL = "deepseek-coder:1.3b"
ANSWER_TOKENS = 20
MODES = (("chat", False), ("stream", True))
_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
_END_OF_CHUNKS = b"\r\n0\r\n\r\n"
_WARMUP = 20


def _request(host: str, stream: bool) -> bytes:
    body = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    ).encode()
    head = (
        f"POST /api/chat HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[float, float]:
    """One request on an open connection: (seconds to the response head, seconds in all)."""
    started = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    first = time.perf_counter() - started
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:80]!r}")
    length = _LENGTH.search(head)
    if length is not None:
        await reader.readexactly(int(length.group(1)))
    else:  # chunked NDJSON: read to the terminating zero-size chunk
        await reader.readuntil(_END_OF_CHUNKS)
    return first, time.perf_counter() - started


def _address(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    return split.hostname or "127.0.0.1", split.port or 80


def _latency_worker(url: str, stream: bool, seconds: float) -> list[tuple[float, float]]:
    """Sequential requests on one connection for ``seconds``: (first byte, total) each."""
    host, port = _address(url)
    request = _request(f"{host}:{port}", stream)

    async def measure() -> list[tuple[float, float]]:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        samples: list[tuple[float, float]] = []
        try:
            for _ in range(_WARMUP):  # the connection, the code paths, the model load
                await _exchange(reader, writer, request)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                samples.append(await _exchange(reader, writer, request))
        finally:
            writer.close()
        return samples

    return asyncio.run(measure())


def _library_worker(url: str, stream: bool, seconds: float) -> list[tuple[float, float]]:
    """The same calls through `dsollama.AsyncClient` in this process, without serve."""
    from dsollama import AsyncClient

    messages = [{"role": "user", "content": "hi"}]

    async def once(client: AsyncClient) -> tuple[float, float]:
        started = time.perf_counter()
        if not stream:
            await client.chat(MODEL, messages)
            total = time.perf_counter() - started
            return total, total
        first = 0.0
        async for _ in await client.chat(MODEL, messages, stream=True):
            first = first or time.perf_counter() - started
        return first, time.perf_counter() - started

    async def measure() -> list[tuple[float, float]]:
        async with AsyncClient(url, log=False, local_slots=1024) as client:
            for _ in range(_WARMUP):
                await once(client)
            samples = []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                samples.append(await once(client))
            return samples

    return asyncio.run(measure())


def _load_worker(url: str, stream: bool, seconds: float, connections: int) -> int:
    """``connections`` keep-alive sockets sending back to back; answers completed."""
    host, port = _address(url)
    request = _request(f"{host}:{port}", stream)

    async def one(deadline: float) -> int:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        done = 0
        try:
            while time.monotonic() < deadline:
                await _exchange(reader, writer, request)
                done += 1
        finally:
            writer.close()
        return done

    async def measure() -> int:
        deadline = time.monotonic() + seconds
        return sum(await asyncio.gather(*(one(deadline) for _ in range(connections))))

    return asyncio.run(measure())


def _start(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A server process whose first stdout line is its base URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"{' '.join(command[1:4])} did not start")
    return process, url


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a stuck child
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _ms(value: float) -> float:
    return round(value * 1000, 3)


def _record(
    results: dict[str, Any], key: str, samples: list[tuple[float, float]], stream: bool
) -> None:
    totals = [s[1] for s in samples]
    results[f"{key}_p50_ms"] = _ms(_percentile(totals, 0.50))
    results[f"{key}_p99_ms"] = _ms(_percentile(totals, 0.99))
    if stream:
        firsts = [s[0] for s in samples]
        results[f"{key}_first_chunk_p50_ms"] = _ms(_percentile(firsts, 0.50))
        results[f"{key}_first_chunk_p99_ms"] = _ms(_percentile(firsts, 0.99))


def _serve_env(double_url: str, folder: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DSOLLAMA_") and k not in ("DEEPSEEK_API_KEY", "OLLAMA_HOST")
    }
    env.update(
        {
            "OLLAMA_HOST": double_url,
            "OLLAMA_NUM_PARALLEL": "1024",  # the double's slots: admission never holds back
            "DSOLLAMA_LOG_PATH": os.path.join(folder, "logs.db"),
            "DSOLLAMA_CONFIG": os.path.join(folder, "config.toml"),
        }
    )
    return env


def run(
    seconds: float = 3.0, *, workers: int | None = None, connections: int = 8
) -> dict[str, Any]:
    """Measure serve against the double; returns a flat dict of numbers and labels."""
    workers = workers or max(2, os.cpu_count() or 2)
    results: dict[str, Any] = {
        "description": (
            f"POST /api/chat ({ANSWER_TOKENS}-token answers) straight to the Ollama double vs "
            "through `dsollama serve` in front of it, each in its own process; latency on one "
            "connection (nothing queues), throughput from "
            f"{workers} client processes x {connections} keep-alive connections. "
            "*library*: the same calls through dsollama.AsyncClient without serve; "
            "*added*: serve minus direct."
        ),
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "connections": workers * connections,
        "answer_tokens": ANSWER_TOKENS,
    }
    double, double_url = _start(
        [
            sys.executable,
            "-m",
            "dsollama.testing",
            "ollama",
            "--port",
            "0",
            "--model",
            MODEL,
            # Enough slots that nothing waits; unpaced: measure software, not a model.
            "--slots",
            "1024",
            "--tokens-per-second",
            "0",
            "--answer-tokens",
            str(ANSWER_TOKENS),
            "--thinking-tokens",
            "0",
        ]
    )
    try:
        with tempfile.TemporaryDirectory() as folder:
            serve, serve_url = _start(
                [
                    sys.executable,
                    "-m",
                    "dsollama",
                    "serve",
                    "--port",
                    "0",
                    "--log-level",
                    "warning",
                ],
                env=_serve_env(double_url, folder),
            )
            try:
                targets = {"direct": double_url, "serve": serve_url}
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    for mode, stream in MODES:
                        samples = pool.submit(_library_worker, double_url, stream, seconds).result()
                        _record(results, f"{mode}_library", samples, stream)
                        for target, url in targets.items():
                            samples = pool.submit(_latency_worker, url, stream, seconds).result()
                            _record(results, f"{mode}_{target}", samples, stream)
                            started = time.monotonic()
                            done = sum(
                                pool.map(
                                    _load_worker,
                                    [url] * workers,
                                    [stream] * workers,
                                    [seconds] * workers,
                                    [connections] * workers,
                                )
                            )
                            elapsed = max(time.monotonic() - started, seconds)
                            results[f"{mode}_{target}_requests_per_second"] = round(
                                done / elapsed, 1
                            )
                        for name in ("p50", "p99", "first_chunk_p50", "first_chunk_p99"):
                            direct = results.get(f"{mode}_direct_{name}_ms")
                            served = results.get(f"{mode}_serve_{name}_ms")
                            if direct is not None and served is not None:
                                results[f"{mode}_added_{name}_ms"] = round(served - direct, 3)
            finally:
                _stop(serve)
    finally:
        _stop(double)
    return results


def _table(r: dict[str, Any]) -> str:
    lines = [
        r["description"],
        "",
        f"  {'':<38}{'direct':>11}{'library':>11}{'serve':>11}{'added':>11}",
    ]
    for mode, name in (("chat", "non-streaming"), ("stream", "streaming")):
        for what, label in (
            ("p50", "p50 latency"),
            ("p99", "p99 latency"),
            ("first_chunk_p50", "p50 first chunk"),
            ("first_chunk_p99", "p99 first chunk"),
        ):
            values = [
                r.get(f"{mode}_{t}_{what}_ms") for t in ("direct", "library", "serve", "added")
            ]
            if values[0] is None:
                continue
            cells = "".join(f"{v:>9.2f}ms" if v is not None else " " * 11 for v in values)
            lines.append(f"  {name + ': ' + label:<38}{cells}")
        direct = r[f"{mode}_direct_requests_per_second"]
        served = r[f"{mode}_serve_requests_per_second"]
        label = f"{name}: answers/s"
        lines.append(f"  {label:<38}{direct:>9.1f}/s{'':>11}{served:>9.1f}/s")
    lines.append(f"  ({r['cpus']} CPUs shared by the double, serve and the load generators)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=None, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="per client process")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(args.seconds, workers=args.workers, connections=args.connections)
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
