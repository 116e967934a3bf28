"""What `dsollama serve` costs: added latency, cost per streamed chunk, throughput, CPU.

The same chat requests go straight to the Ollama double and through ``dsollama serve`` in
front of it; the difference is what serve adds (HTTP parsing, routing, re-encoding, the
request log). Each party has its own process: the double (``python -m dsollama.testing
ollama``, unpaced), serve (``python -m dsollama serve``, default settings, the request log
on but written to a temporary folder) and the load generators, which speak raw HTTP/1.1
over keep-alive sockets (an HTTP client library would measure itself).

Four cells: Ollama's ``POST /api/chat`` and OpenAI's ``POST /v1/chat/completions`` (the
double answers both itself, as Ollama does), each whole and streamed. Per cell:

- latency: one connection, one request after another, so nothing queues; p50/p99 of the
  whole answer and, for streams, of the first chunk (serve, like the daemon, sends its
  headers with the first chunk, so the first byte is the first token). *Added* is serve
  minus direct at the same percentile;
- cost per streamed chunk: the same streams at ``short_tokens`` and ``long_tokens``
  (``num_predict`` / ``max_tokens``), so ``(serve_long - serve_short) - (direct_long -
  direct_short)`` over the extra chunks is what serve adds per chunk, whatever a request
  costs once;
- throughput: ``concurrency`` keep-alive connections from two client processes, answers
  per second, the CPU seconds each server process spent meanwhile and how busy the whole
  machine was (Linux);
- for reference, chats through `dsollama.AsyncClient` in one process without serve
  ("library"): the part of serve's cost that is the router's, not HTTP's.

With ``workers`` (and a ``redis-server`` installed), non-streaming ``/api/chat`` throughput
again through one serve with the in-process store, one with ``--state redis://…`` and
``--workers 2`` with the same store: whether more worker processes buy anything here —
which they cannot where one worker, the double and the load generators already keep
every CPU busy (``one_worker_machine_busy``).

    python benchmarks/bench_serve.py [--seconds 3] [--concurrency 32] [--no-workers] [--json]

``run(seconds=3.0)`` returns the numbers as a nested dict of numbers and labels.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "deepseek-coder:1.3b"
SHORT_TOKENS = 20
LONG_TOKENS = 200
PATHS = {"ollama": "/api/chat", "openai": "/v1/chat/completions"}
CELLS = {f"{d}-{m}": (d, m == "stream") for d in PATHS for m in ("whole", "stream")}
"Name: (dialect, stream)."
CLIENT_PROCESSES = 2
TARGETS = {"added_p50_ms": 1.0, "added_p99_ms": 2.0, "per_chunk_ms": 0.05, "throughput": 0.7}

_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)
_END_OF_CHUNKS = b"\r\n0\r\n\r\n"
_WARMUP = 20


def _body(dialect: str, stream: bool, tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }
    if dialect == "ollama":
        body["options"] = {"num_predict": tokens}
    else:
        body["max_tokens"] = tokens
    return body


def _request(host: str, dialect: str, stream: bool, tokens: int = SHORT_TOKENS) -> bytes:
    body = json.dumps(_body(dialect, stream, tokens)).encode()
    head = (
        f"POST {PATHS[dialect]} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n"
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
    else:  # chunked NDJSON or SSE: read to the terminating zero-size chunk
        await reader.readuntil(_END_OF_CHUNKS)
    return first, time.perf_counter() - started


def _address(url: str) -> tuple[str, int]:
    split = urlsplit(url)
    return split.hostname or "127.0.0.1", split.port or 80


def _latency_worker(
    url: str, dialect: str, stream: bool, seconds: float, tokens: int = SHORT_TOKENS
) -> list[tuple[float, float]]:
    """Sequential requests on one connection for ``seconds``: (first byte, total) each."""
    host, port = _address(url)
    request = _request(f"{host}:{port}", dialect, stream, tokens)

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
    """The same chats through `dsollama.AsyncClient` in this process, without serve."""
    from dsollama import AsyncClient

    messages = [{"role": "user", "content": "hi"}]
    options = {"num_predict": SHORT_TOKENS}

    async def once(client: AsyncClient) -> tuple[float, float]:
        started = time.perf_counter()
        if not stream:
            await client.chat(MODEL, messages, options=options)
            total = time.perf_counter() - started
            return total, total
        first = 0.0
        async for _ in await client.chat(MODEL, messages, stream=True, options=options):
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


def _load_worker(url: str, dialect: str, stream: bool, seconds: float, connections: int) -> int:
    """``connections`` keep-alive sockets sending back to back; answers completed."""
    host, port = _address(url)
    request = _request(f"{host}:{port}", dialect, stream)

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


def _stats(samples: list[tuple[float, float]], stream: bool) -> dict[str, Any]:
    totals = [s[1] for s in samples]
    out: dict[str, Any] = {
        "requests": len(samples),
        "p50_ms": _ms(_percentile(totals, 0.50)),
        "p99_ms": _ms(_percentile(totals, 0.99)),
    }
    if stream:
        firsts = [s[0] for s in samples]
        out["first_chunk_p50_ms"] = _ms(_percentile(firsts, 0.50))
        out["first_chunk_p99_ms"] = _ms(_percentile(firsts, 0.99))
    return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants (serve's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) spent so far by ``pid`` and its descendants; None where
    /proc cannot say (not Linux)."""
    if not os.path.isdir("/proc"):
        return None
    total = 0
    for member in _family(pid):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return round(total / _TICK, 2)


def machine_cpu_times() -> tuple[float, float] | None:
    """(busy, total) clock ticks of every CPU so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def machine_busy(
    before: tuple[float, float] | None, after: tuple[float, float] | None
) -> float | None:
    """The share of all CPUs' time that was busy between two `machine_cpu_times`."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 2)


def _double_command(tokens: int) -> list[str]:
    return [
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
        str(tokens),
        "--thinking-tokens",
        "0",
    ]


def serve_env(double_url: str, folder: str, **extra: str) -> dict[str, str]:
    """The environment of a serve process in front of the double, nothing of this
    machine's dsollama configuration included."""
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
            **extra,
        }
    )
    return env


_serve_env = serve_env  # the name other benchmarks imported


@contextlib.contextmanager
def serving(double_url: str, *args: str, **env: str) -> Iterator[tuple[int, str]]:
    """A ``python -m dsollama serve`` process in front of the double: (pid, base URL)."""
    command = [sys.executable, "-m", "dsollama", "serve", "--port", "0", "--log-level", "warning"]
    with tempfile.TemporaryDirectory() as folder:
        process, url = _start([*command, *args], env=serve_env(double_url, folder, **env))
        try:
            yield process.pid, url
        finally:
            _stop(process)


def _throughput(
    pool: ProcessPoolExecutor,
    url: str,
    dialect: str,
    stream: bool,
    seconds: float,
    concurrency: int,
    pids: dict[str, int],
) -> dict[str, Any]:
    """Answers per second at ``concurrency``, and the CPU each process in ``pids`` spent."""
    per_process = max(1, concurrency // CLIENT_PROCESSES)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    machine_before = machine_cpu_times()
    started = time.monotonic()
    done = sum(
        pool.map(
            _load_worker,
            [url] * CLIENT_PROCESSES,
            [dialect] * CLIENT_PROCESSES,
            [stream] * CLIENT_PROCESSES,
            [seconds] * CLIENT_PROCESSES,
            [per_process] * CLIENT_PROCESSES,
        )
    )
    elapsed = max(time.monotonic() - started, seconds)
    spent = {name: _spent(before[name], cpu_seconds(pid)) for name, pid in pids.items()}
    out: dict[str, Any] = {"requests_per_second": round(done / elapsed, 1), "cpu_s": spent}
    busy = machine_busy(machine_before, machine_cpu_times())
    if busy is not None:
        # Every process on the machine, load generators included: a worker can only
        # add answers where this leaves a core to spare.
        out["machine_busy"] = busy
    for name, value in spent.items():
        if value is not None and done:
            out[f"{name}_cpu_ms_per_request"] = round(value * 1000 / done, 3)
    return out


def _cell(
    pool: ProcessPoolExecutor,
    dialect: str,
    stream: bool,
    seconds: float,
    concurrency: int,
    servers: dict[str, tuple[str, dict[str, int]]],
) -> dict[str, Any]:
    cell: dict[str, Any] = {"path": PATHS[dialect], "stream": stream}
    for target, (url, pids) in servers.items():
        samples = pool.submit(_latency_worker, url, dialect, stream, seconds).result()
        cell[target] = _stats(samples, stream)
        cell[target].update(_throughput(pool, url, dialect, stream, seconds, concurrency, pids))
        if stream:
            long = pool.submit(_latency_worker, url, dialect, stream, seconds, LONG_TOKENS).result()
            cell[target]["long_p50_ms"] = _stats(long, stream)["p50_ms"]
    direct, served = cell["direct"], cell["serve"]
    added = {
        name: round(served[f"{name}_ms"] - direct[f"{name}_ms"], 3)
        for name in ("p50", "p99", "first_chunk_p50", "first_chunk_p99")
        if f"{name}_ms" in direct
    }
    if stream:
        extra = LONG_TOKENS - SHORT_TOKENS
        serve_slope = served["long_p50_ms"] - served["p50_ms"]
        direct_slope = direct["long_p50_ms"] - direct["p50_ms"]
        added["per_chunk"] = round((serve_slope - direct_slope) / extra, 4)
    cell["added_ms"] = added
    if direct["requests_per_second"]:
        cell["throughput_ratio"] = round(
            served["requests_per_second"] / direct["requests_per_second"], 3
        )
    return cell


def _workers(
    pool: ProcessPoolExecutor, double_url: str, double_pid: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    """Non-streaming /api/chat throughput: one serve, one with Redis, two workers with it."""
    from dsollama.testing.redis_server import RedisServer, RedisServerMissing

    try:
        redis = RedisServer()
    except RedisServerMissing as exc:
        return {"skipped": str(exc)}
    configs: dict[str, Any] = {}
    with redis:
        assert redis.process is not None
        runs = (("1-memory", 1, False), ("1-redis", 1, True), ("2-redis", 2, True))
        for name, workers, shared in runs:
            env = {"DSOLLAMA_STATE_NAMESPACE": f"bench-{uuid.uuid4().hex[:10]}"}
            if shared:
                env["DSOLLAMA_STATE_URL"] = redis.url
            with serving(double_url, "--workers", str(workers), **env) as (pid, url):
                # Every worker listening first: keep-alive connections opened while one
                # is still starting would all stay with the other.
                _wait_for_workers(url, workers)
                pool.submit(_latency_worker, url, "ollama", False, 0.2).result()  # warm
                configs[name] = {"workers": workers, "shared_store": shared}
                configs[name].update(
                    _throughput(
                        pool,
                        url,
                        "ollama",
                        False,
                        seconds,
                        concurrency,
                        {"serve": pid, "double": double_pid, "redis": redis.process.pid},
                    )
                )
    one = configs["1-redis"]["requests_per_second"]
    two = configs["2-redis"]["requests_per_second"]
    return {
        "configs": configs,
        "scaling_2_vs_1": round(two / one, 3) if one else None,
        # With one worker the machine already this busy, a second has no core to use.
        "one_worker_machine_busy": configs["1-redis"].get("machine_busy"),
    }


def _wait_for_workers(url: str, workers: int, timeout: float = 60.0) -> None:
    """Until ``workers`` different processes have answered ``/healthz`` (it names its pid)."""
    host, port = _address(url)
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    async def pids() -> set[int]:
        async def one() -> int:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                body = await reader.readexactly(int(length.group(1))) if length else b"{}"
                pid: int = json.loads(body).get("pid", 0)
                return pid
            finally:
                writer.close()

        return set(await asyncio.gather(*(one() for _ in range(8))))

    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} serve workers answered")
        seen |= asyncio.run(pids())
        time.sleep(0.05)


def _targets(cells: dict[str, Any], workers: dict[str, Any]) -> dict[str, Any]:
    whole = [c for c in cells.values() if not c["stream"]]
    streams = [c for c in cells.values() if c["stream"]]
    p50 = max(c["added_ms"]["p50"] for c in whole)
    p99 = max(c["added_ms"]["p99"] for c in whole)
    chunk = max(c["added_ms"]["per_chunk"] for c in streams)
    ratios = [c.get("throughput_ratio") for c in whole]
    ratio = min(r for r in ratios if r is not None) if any(ratios) else None
    out: dict[str, Any] = {
        "added_whole": {
            "p50_ms": p50,
            "p99_ms": p99,
            "met": p50 <= TARGETS["added_p50_ms"] and p99 <= TARGETS["added_p99_ms"],
        },
        "per_chunk": {"ms": chunk, "met": chunk <= TARGETS["per_chunk_ms"]},
        "throughput": {
            "ratio": ratio,
            "met": ratio is not None and ratio >= TARGETS["throughput"],
        },
    }
    if "scaling_2_vs_1" in workers:
        out["workers"] = {
            "scaling_2_vs_1": workers["scaling_2_vs_1"],
            "one_worker_machine_busy": workers.get("one_worker_machine_busy"),
        }
    return out


def run(
    seconds: float = 3.0,
    *,
    concurrency: int = 32,
    workers: bool = True,
) -> dict[str, Any]:
    """Measure serve against the double; returns a nested dict of numbers and labels."""
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "concurrency": concurrency,
        "client_processes": CLIENT_PROCESSES,
        "short_tokens": SHORT_TOKENS,
        "long_tokens": LONG_TOKENS,
        "targets_set": TARGETS,
    }
    double, double_url = _start(_double_command(LONG_TOKENS))
    try:
        with (
            serving(double_url) as (serve_pid, serve_url),
            ProcessPoolExecutor(max_workers=CLIENT_PROCESSES) as pool,
        ):
            servers = {
                "direct": (double_url, {"double": double.pid}),
                "serve": (serve_url, {"serve": serve_pid, "double": double.pid}),
            }
            library = {}
            for mode, stream in (("whole", False), ("stream", True)):
                samples = pool.submit(_library_worker, double_url, stream, seconds).result()
                library[mode] = _stats(samples, stream)
            results["library"] = library
            results["cells"] = {
                name: _cell(pool, dialect, stream, seconds, concurrency, servers)
                for name, (dialect, stream) in CELLS.items()
            }
        if workers:
            with ProcessPoolExecutor(max_workers=CLIENT_PROCESSES) as pool:
                results["workers"] = _workers(pool, double_url, double.pid, seconds, concurrency)
    finally:
        _stop(double)
    results["targets"] = _targets(results["cells"], results.get("workers", {}))
    return results


def _table(r: dict[str, Any]) -> str:
    lines = [f"  {'':<26}{'direct':>10}{'serve':>10}{'added':>10}{'answers/s':>20}{'ratio':>8}"]
    for name, c in r["cells"].items():
        d, s, a = c["direct"], c["serve"], c["added_ms"]
        lines.append(
            f"  {name + ' p50 / p99 ms':<26}{d['p50_ms']:>5.2f}/{d['p99_ms']:<5.2f}"
            f"{s['p50_ms']:>5.2f}/{s['p99_ms']:<5.2f}{a['p50']:>5.2f}/{a['p99']:<5.2f}"
            f"{d['requests_per_second']:>9.0f} {s['requests_per_second']:>9.0f}"
            f"{c.get('throughput_ratio', 0):>8.2f}"
        )
        if "per_chunk" in a:
            lines.append(f"  {'':<26}per chunk added {a['per_chunk']:.4f} ms")
    lines.append(f"  targets: {json.dumps(r['targets'])}")
    if "workers" in r:
        lines.append(f"  workers: {json.dumps(r['workers'])}")
    lines.append(f"  ({r['cpus']} CPUs shared by the double, serve and the load generators)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in all")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers runs")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    results = run(args.seconds, concurrency=args.concurrency, workers=not args.no_workers)
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
