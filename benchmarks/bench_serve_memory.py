"""Does `dsollama serve` grow with traffic? Its memory after 1,000 and after 10,000 requests.

One ``python -m dsollama serve`` process (defaults, the request log on, in a temporary
folder) in front of the unpaced Ollama double, each in its own process. Mixed requests go
through it over raw keep-alive sockets, ``connections`` at a time, each connection
replaced by a new one every 100 requests: both dialects, whole and streamed, chat and
generate, the model list, and errors — a model nobody has (a new name every time, as a
scanner would send), a body that is not JSON, a field of the wrong type — each with its
own text, so nothing is answered from a cache.

The resident set size (RSS, from /proc) is read after the first ``first`` requests and
after all ``requests``; the ratio of the two is the result (target: within 10 %). A
process that keeps something per request (a cache without a bound, a record, a label per
model name) grows with the count; one that does not stays where the first thousand left
it (Python's allocator keeps what it has reserved, so some growth after the first
thousand is not a leak: the in-between readings show the shape).

    python benchmarks/bench_serve_memory.py [--requests 10000] [--first 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_serve import MODEL, _address, _double_command, _start, _stop, serving

TARGET_RATIO = 1.10
PER_CONNECTION = 100
_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"transfer-encoding: *chunked", re.IGNORECASE)
_STATUS = re.compile(rb"HTTP/1.1 (\d{3})")


def _kinds() -> list[tuple[str, str, Any, int]]:
    """(name, path, body builder, expected status): one of each per round."""

    def chat(stream: bool) -> Any:
        return lambda i: {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"question {i}"}],
            "stream": stream,
            "options": {"num_predict": 12},
        }

    def openai(stream: bool) -> Any:
        return lambda i: {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"question {i}"}],
            "stream": stream,
            "max_tokens": 12,
        }

    return [
        ("ollama chat, whole", "/api/chat", chat(False), 200),
        ("ollama chat, streamed", "/api/chat", chat(True), 200),
        ("openai chat, whole", "/v1/chat/completions", openai(False), 200),
        ("openai chat, streamed", "/v1/chat/completions", openai(True), 200),
        (
            "ollama generate, streamed",
            "/api/generate",
            lambda i: {"model": MODEL, "prompt": f"say {i}", "options": {"num_predict": 12}},
            200,
        ),
        (
            "openai completion, whole",
            "/v1/completions",
            lambda i: {"model": MODEL, "prompt": f"say {i}", "max_tokens": 12},
            200,
        ),
        ("model list", "/api/tags", None, 200),
        (
            "unknown model (a new name each time)",
            "/api/chat",
            lambda i: {
                "model": f"nobody-has-{i}:1b",
                "messages": [{"role": "user", "content": "hi"}],
            },
            404,
        ),
        ("not JSON", "/v1/chat/completions", lambda i: f"{{not json {i}".encode(), 400),
        (
            "a field of the wrong type",
            "/api/chat",
            lambda i: {"model": MODEL, "messages": [], "stream": f"yes {i}"},
            400,
        ),
    ]


def _request(host: str, path: str, body: Any) -> bytes:
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n\r\n".encode()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """One request on an open connection; the answer read whole; its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = _STATUS.match(head)
    length = _LENGTH.search(head)
    if length is not None:
        await reader.readexactly(int(length.group(1)))
    elif _CHUNKED.search(head):
        await reader.readuntil(b"\r\n0\r\n\r\n")
    return int(status.group(1)) if status else 0


async def _traffic(url: str, start: int, count: int, connections: int) -> dict[str, int]:
    """Requests ``start`` .. ``start + count`` over ``connections`` sockets; counts by
    outcome (each kind and whether it got its expected status)."""
    host, port = _address(url)
    kinds = _kinds()
    numbers = iter(range(start, start + count))
    tally: dict[str, int] = {}

    async def connection() -> None:
        while True:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
            try:
                for _ in range(PER_CONNECTION):
                    i = next(numbers, None)
                    if i is None:
                        return
                    name, path, build, expected = kinds[i % len(kinds)]
                    body = build(i) if build is not None else None
                    status = await _exchange(reader, writer, _request(f"{host}:{port}", path, body))
                    key = "expected" if status == expected else f"unexpected {status}: {name}"
                    tally[key] = tally.get(key, 0) + 1
            finally:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return tally


def rss_mib(pid: int) -> float | None:
    """The resident set size of ``pid`` in MiB (None where /proc cannot say)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def run(requests: int = 10_000, first: int = 1_000, connections: int = 8) -> dict[str, Any]:
    """Send ``requests`` mixed requests through one serve; RSS after ``first`` and at the
    end (and at a few points between)."""
    if not os.path.isdir("/proc"):
        return {"skipped": "reading a process's memory needs /proc (Linux)"}
    checkpoints = sorted({first, *(first * k for k in (2, 5)), requests} - {0})
    checkpoints = [c for c in checkpoints if c <= requests]
    double, double_url = _start(_double_command(12))
    readings: list[dict[str, Any]] = []
    tally: dict[str, int] = {}
    try:
        with serving(double_url) as (pid, url):
            before = rss_mib(pid)
            sent = 0
            started = time.monotonic()
            for point in checkpoints:
                counts = asyncio.run(_traffic(url, sent, point - sent, connections))
                for key, n in counts.items():
                    tally[key] = tally.get(key, 0) + n
                sent = point
                readings.append({"requests": point, "rss_mib": rss_mib(pid)})
            elapsed = time.monotonic() - started
    finally:
        _stop(double)
    at_first = next(r["rss_mib"] for r in readings if r["requests"] == first)
    at_end = readings[-1]["rss_mib"]
    ratio = round(at_end / at_first, 3) if at_first and at_end else None
    return {
        "requests": requests,
        "first": first,
        "connections": connections,
        "requests_per_connection": PER_CONNECTION,
        "kinds": [name for name, *_ in _kinds()],
        "rss_at_start_mib": before,
        "readings": readings,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "met": ratio is not None and ratio <= TARGET_RATIO,
        "answers": tally,
        "requests_per_second": round(requests / elapsed, 1) if elapsed else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.requests, args.first, args.connections)
    if args.json or "readings" not in results:
        print(json.dumps(results, indent=2))
        return 0
    for reading in results["readings"]:
        print(f"after {reading['requests']:>6} requests: {reading['rss_mib']} MiB")
    print(f"ratio {results['ratio']} (target <= {TARGET_RATIO}); answers: {results['answers']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
