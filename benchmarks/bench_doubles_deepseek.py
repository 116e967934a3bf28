"""Capacity of the DeepSeek double on this machine.

The doubles must never be what a benchmark measures, so this reports how much they can
take: small requests per second (``GET /models`` and a short non-streaming chat) and
streamed SSE events per second. The double runs in its own process (started with
``python -m dsollama.testing deepseek``, unpaced: ``--tokens-per-second 0``); the load
comes from separate processes speaking raw HTTP/1.1 over keep-alive sockets, because an
in-process async HTTP client tops out long before the double does.

    python benchmarks/bench_doubles_deepseek.py [--seconds 3] [--json]

``run(seconds=3.0)`` returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

_KEY = "sk-bench"
_CHAT = json.dumps(
    {
        "model": "deepseek-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "disabled"},
    }
).encode()
_STREAM = json.dumps(
    {
        "model": "deepseek-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "disabled"},
        "stream": True,
    }
).encode()


def _request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {_KEY}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader, end: float, counts: list[int]) -> None:
    """Read one response; count SSE events as they arrive (until ``end``) and the response
    itself if it completed by then. The double writes one HTTP chunk per event."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer: {head[:60]!r}")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            chunk = await reader.readexactly(size + 2)
            if time.time() <= end:
                counts[1] += chunk.count(b"data: {")
    else:
        start = lower.index(b"content-length:") + len(b"content-length:")
        await reader.readexactly(int(lower[start : lower.index(b"\r\n", start)]))
    if time.time() <= end:
        counts[0] += 1


async def _connection(
    port: int, request: bytes, start: float, end: float, counts: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await asyncio.sleep(max(start - time.time(), 0))
        while time.time() < end:
            writer.write(request)
            await _read_response(reader, end, counts)
    finally:
        writer.close()


def _load(port: int, request: bytes, connections: int, start: float, end: float) -> tuple[int, int]:
    """One load process: ``connections`` keep-alive sockets in a loop over [start, end]."""
    counts = [0, 0]

    async def drive() -> None:
        await asyncio.gather(
            *(_connection(port, request, start, end, counts) for _ in range(connections))
        )

    asyncio.run(drive())
    return counts[0], counts[1]


def _phase(
    port: int, request: bytes, seconds: float, processes: int, connections: int
) -> tuple[float, float]:
    """(responses/s, SSE events/s) with ``processes`` load processes.

    All processes load the double over the same wall-clock window, which opens once they
    have had time to start, so their counts add up to a rate over that window.
    """
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        start = time.time() + 2.0
        end = start + seconds
        results = pool.starmap(_load, [(port, request, connections, start, end)] * processes)
    responses = sum(r[0] for r in results)
    events = sum(r[1] for r in results)
    return responses / seconds, events / seconds


def _control(url: str, name: str, payload: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{url}/_dsollama/{name}",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def run(seconds: float = 3.0, processes: int = 2, connections: int = 16) -> dict[str, Any]:
    """Start the double in a separate process and measure it; ``seconds`` per phase."""
    command = [sys.executable, "-m", "dsollama.testing", "deepseek", "--port", "0"]
    with subprocess.Popen(
        [*command, "--api-key", _KEY, "--tokens-per-second", "0"],
        stdout=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError("the double did not start")
            port = int(url.rsplit(":", 1)[1])
            models_rps, _ = _phase(
                port, _request("GET", "/models", port), seconds, processes, connections
            )
            chat = _request("POST", "/chat/completions", port, _CHAT)
            chat_rps, _ = _phase(port, chat, seconds, processes, connections)
            # Long answers, streamed: what is measured is events on the wire.
            _control(url, "config", {"answer_tokens": 2000, "thinking_tokens": 0})
            stream = _request("POST", "/chat/completions", port, _STREAM)
            streams_ps, events_ps = _phase(port, stream, seconds, processes, 4)
        finally:
            server.terminate()
            server.wait(timeout=10)
    return {
        "cpus": os.cpu_count(),
        "load_processes": processes,
        "connections_per_process": connections,
        "seconds_per_phase": seconds,
        "models_requests_per_second": round(models_rps),
        "chat_requests_per_second": round(chat_rps),
        "streams_per_second": round(streams_ps, 1),
        "streamed_chunks_per_second": round(events_ps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each phase")
    parser.add_argument("--processes", type=int, default=2, help="load-generating processes")
    parser.add_argument("--connections", type=int, default=16, help="sockets per process")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(argv)
    result = run(ns.seconds, ns.processes, ns.connections)
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        width = max(map(len, result))
        for name, value in result.items():
            print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
