"""How much load the Ollama double takes on this machine, so no benchmark measures it.

The double runs in its own process (``python -m dsollama.testing ollama``); the load
comes from several client processes, each driving raw keep-alive sockets with asyncio,
which costs far less per request than an HTTP client library (async httpx tops out near
600 requests/s in one process: that would measure the client, not the double).

Three phases, each ``seconds`` long:

- ``version``: ``GET /api/version``, the smallest request;
- ``chat``: a non-streaming ``/api/chat`` answering one token (``num_predict: 1``);
- ``stream``: streaming ``/api/chat`` answers of ``STREAM_TOKENS`` tokens, counted in NDJSON
  chunks per second.

Run ``python benchmarks/bench_doubles_ollama.py [--seconds 3] [--workers N]``, or import
and call ``run(seconds=3.0)``, which returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any
from urllib.parse import urlsplit

MODEL = "deepseek-coder:1.3b"
STREAM_TOKENS = 100
_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


def _request(method: str, path: str, host: str, body: dict[str, Any] | None = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


def _requests(host: str) -> dict[str, bytes]:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    return {
        "version": _request("GET", "/api/version", host),
        "chat": _request(
            "POST", "/api/chat", host, {**chat, "stream": False, "options": {"num_predict": 1}}
        ),
        "stream": _request("POST", "/api/chat", host, {**chat, "stream": True}),
    }


async def _connection(host: str, port: int, request: bytes, deadline: float) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    done = chunks = 0
    try:
        while time.monotonic() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:60]!r}")
            length = _LENGTH.search(head)
            if length is not None:
                await reader.readexactly(int(length.group(1)))
            else:  # chunked NDJSON: read to the terminating zero-size chunk
                body = await reader.readuntil(b"\r\n0\r\n\r\n")
                chunks += body.count(b'"created_at"')
            done += 1
    finally:
        writer.close()
    return done, chunks


def _worker(url: str, phase: str, seconds: float, connections: int) -> tuple[int, int]:
    """One load-generating process: ``connections`` sockets for ``seconds``."""
    split = urlsplit(url)
    host, port = split.hostname or "127.0.0.1", split.port or 80
    request = _requests(f"{host}:{port}")[phase]

    async def main() -> tuple[int, int]:
        deadline = time.monotonic() + seconds
        results = await asyncio.gather(
            *(_connection(host, port, request, deadline) for _ in range(connections))
        )
        return sum(r[0] for r in results), sum(r[1] for r in results)

    return asyncio.run(main())


def _start_double(port: int) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable,
        "-m",
        "dsollama.testing",
        "ollama",
        "--port",
        str(port),
        "--model",
        MODEL,
        # Enough slots that the clients never queue; unpaced tokens: measure the double.
        "--slots",
        "256",
        "--tokens-per-second",
        "0",
        "--answer-tokens",
        str(STREAM_TOKENS),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError("the double did not start")
    return process, url


def run(
    seconds: float = 3.0, *, workers: int | None = None, connections: int = 16, port: int = 0
) -> dict[str, Any]:
    """Measure the double's capacity; returns requests/s per phase and streamed chunks/s."""
    workers = workers or max(2, os.cpu_count() or 2)
    process, url = _start_double(port)
    results: dict[str, Any] = {
        "workers": workers,
        "connections": workers * connections,
        "seconds": seconds,
        "cpus": os.cpu_count(),
    }
    try:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            # Warm up: load the model and start every worker process.
            list(
                pool.map(
                    _worker, [url] * workers, ["chat"] * workers, [0.2] * workers, [1] * workers
                )
            )
            for phase in ("version", "chat", "stream"):
                started = time.monotonic()
                parts = list(
                    pool.map(
                        _worker,
                        [url] * workers,
                        [phase] * workers,
                        [seconds] * workers,
                        [connections] * workers,
                    )
                )
                elapsed = max(time.monotonic() - started, seconds)
                requests = sum(p[0] for p in parts)
                results[f"{phase}_requests_per_second"] = round(requests / elapsed)
                if phase == "stream":
                    results["stream_chunks_per_second"] = round(sum(p[1] for p in parts) / elapsed)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    return results


def _table(results: dict[str, Any]) -> str:
    rows = [
        ("GET /api/version", f"{results['version_requests_per_second']:,} req/s"),
        ("POST /api/chat, 1 token, stream:false", f"{results['chat_requests_per_second']:,} req/s"),
        (
            f"POST /api/chat, {STREAM_TOKENS} tokens, streamed",
            f"{results['stream_requests_per_second']:,} req/s = "
            f"{results['stream_chunks_per_second']:,} chunks/s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"FakeOllama capacity ({results['workers']} client processes, "
        f"{results['connections']} keep-alive connections, {results['cpus']} CPUs)"
    ]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per phase")
    parser.add_argument("--workers", type=int, default=None, help="client processes")
    parser.add_argument("--connections", type=int, default=16, help="per client process")
    parser.add_argument("--port", type=int, default=0, help="port for the double (0: any)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(args.seconds, workers=args.workers, connections=args.connections, port=args.port)
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
