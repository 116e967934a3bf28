"""Where `dsollama serve` spends its time: top-20 tables for ``benchmarks/profiles/``.

Two views, each written as a Markdown file of tables:

- ``serve-<label>-app.md``: serve's own layer alone. The ASGI app is driven in this
  process (no sockets, no uvicorn) with a client whose ``call`` hands back ready-made
  answers (no router, no daemon), under cProfile: microseconds per request for the four
  cells of `bench_serve` (Ollama's and OpenAI's chat, whole and streamed, 20 chunks), and
  per cell the top 20 functions by own time and by cumulative time.
- ``serve-<label>-process-<cell>.md``: a real ``python -m dsollama serve`` process in
  front of the unpaced Ollama double, sampled by py-spy (``pip install py-spy``) while
  `bench_serve`'s load generators keep ``--concurrency`` connections busy: the top 20
  frames by samples where they were running (own) and on the stack (inclusive), for
  every thread. Without py-spy this part is skipped with a note.

    python -m benchmarks.profile_serve --label before [--seconds 8] [--cells ollama-whole]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import json
import pstats
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common, bench_serve

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "profiles"
CHUNKS = 20

# Paths of this machine never reach a profile: site-packages, the standard library and
# the checkout are shortened to what follows them.
_PREFIXES = (
    re.compile(r"\S*/site-packages/"),
    re.compile(r"\S*/lib/python3\.\d+/"),
    re.compile(re.escape(str(ROOT)) + "/"),
)


def _short(text: str) -> str:
    for prefix in _PREFIXES:
        text = prefix.sub("", text)
    return text


# -- serve's own layer, in process -----------------------------------------------------------


def _answers(stream: bool) -> list[Any]:
    """A 20-chunk answer (or the whole one) as the router hands them to serve."""
    from dsollama._types import Attempt, ChatResponse, ServedBy

    served = ServedBy(
        kind="local",
        api="ollama",
        route="local",
        endpoint="http://127.0.0.1:11434",
        model=bench_serve.MODEL,
    )
    final = {
        "done_reason": "stop",
        "prompt_eval_count": 5,
        "eval_count": CHUNKS,
        "total_duration": 1_000_000,
        "attempts": [
            Attempt(
                route="local",
                kind="local",
                model=bench_serve.MODEL,
                outcome="ok",
                duration_s=0.001,
                ttft_s=0.0005,
            )
        ],
        "ttft_s": 0.0005,
        "elapsed_s": 0.001,
    }
    common = {"model": bench_serve.MODEL, "created_at": "2026-12-01T00:00:00.000000Z"}
    if not stream:
        message = {"role": "assistant", "content": "word " * CHUNKS}
        return [ChatResponse(**common, message=message, done=True, served_by=served, **final)]
    parts = [
        ChatResponse(
            **common,
            message={"role": "assistant", "content": "word "},
            done=False,
            served_by=served,
        )
        for _ in range(CHUNKS)
    ]
    last = ChatResponse(
        **common, message={"role": "assistant", "content": ""}, done=True, served_by=served, **final
    )
    return [*parts, last]


def _canned_client() -> Any:
    from dsollama._client import AsyncClient
    from dsollama._config import load_settings

    whole, streamed = _answers(False), _answers(True)

    class Canned(AsyncClient):
        async def call(self, spec: Any, routing: Any = None) -> Any:
            if not spec.stream:
                return whole[0]

            async def parts() -> AsyncIterator[Any]:
                for part in streamed:
                    yield part

            return parts()

    return Canned(settings=load_settings(log=False), source="serve")


def _no_disconnect(callback: Any) -> Callable[[], None]:
    return lambda: None


def _scope(path: str, body: bytes) -> dict[str, Any]:
    from dsollama.serve.connection import DISCONNECT_NOTICE

    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:11435"),
            (b"user-agent", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 11435),
        "state": {},
        # What serve's own HTTP protocol offers (`serve.connection`); the client never
        # leaves here.
        "extensions": {DISCONNECT_NOTICE: _no_disconnect},
    }


def _exchange(app: Any, path: str, body: bytes) -> Callable[[], Any]:
    async def one() -> None:
        finished = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"status {message['status']}")
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.set()

        await app(_scope(path, body), receive, send)

    return one


async def _app_layer(requests: int) -> tuple[dict[str, float], dict[str, str]]:
    from dsollama.serve import create_app

    client = _canned_client()
    app = create_app(client=client, settings=client.settings)
    per_request: dict[str, float] = {}
    tables: dict[str, str] = {}
    async with _lifespan(app):
        for name, (dialect, stream) in bench_serve.CELLS.items():
            body = json.dumps(bench_serve._body(dialect, stream, CHUNKS)).encode()
            one = _exchange(app, bench_serve.PATHS[dialect], body)
            for _ in range(200):  # warm up
                await one()
            best = float("inf")
            for _ in range(5):  # the best of five rounds: other work on the machine only adds
                started = time.perf_counter()
                for _ in range(requests // 5):
                    await one()
                best = min(best, (time.perf_counter() - started) / (requests // 5))
            per_request[name] = round(best * 1e6, 1)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(requests):
                await one()
            profile.disable()
            tables[name] = _pstats(profile)
    await client.aclose()
    return per_request, tables


class _lifespan:
    """The app's startup and shutdown, as a server would run them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.ensure_future(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        await self.outbox.get()

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        await self.task


def _pstats(profile: cProfile.Profile) -> str:
    parts = []
    for key, title in (("tottime", "own time (tottime)"), ("cumulative", "cumulative time")):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(key).print_stats(20)
        text = _short(out.getvalue()).strip()
        parts.append(f"#### top 20 by {title}\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def app_report(label: str, requests: int) -> str:
    per_request, tables = asyncio.run(_app_layer(requests))
    lines = [
        f"# serve's own layer, in process ({label})",
        "",
        "The ASGI app driven without sockets or uvicorn by a client whose call returns "
        f"ready-made answers ({CHUNKS} chunks when streamed): serve's parsing, checks, "
        f"middleware, encoding and writing, nothing else. {requests} requests per cell; "
        "the times per request (the best of five rounds) are measured without the "
        "profiler, the tables with it.",
        "",
        "| cell | µs per request |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in per_request.items()),
        "",
    ]
    for name, table in tables.items():
        lines += [f"## {name}", "", table]
    return "\n".join(lines)


# -- a serve process under load, sampled ------------------------------------------------------


_ROOTS = ("Handle._run (asyncio/events.py)", "Thread.run (threading.py)")
"Where a task's (or a thread's) own stack starts: the frames above are the same for all."

_AREAS = (
    ("dsollama/serve/", "serve's own code"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn and h11 (the server side of HTTP)"),
    ("h11/", "uvicorn and h11 (the server side of HTTP)"),
    ("dsollama/_calllog/", "the request log"),
    ("dsollama/", "the library (router, backends, results)"),
    ("httpx/", "httpx, httpcore, anyio, ollama (the client side of HTTP)"),
    ("httpcore/", "httpx, httpcore, anyio, ollama (the client side of HTTP)"),
    ("anyio/", "httpx, httpcore, anyio, ollama (the client side of HTTP)"),
    ("ollama/", "httpx, httpcore, anyio, ollama (the client side of HTTP)"),
    ("pydantic", "pydantic"),
    ("asyncio/", "asyncio (the event loop, sockets)"),
    ("selectors", "asyncio (the event loop, sockets)"),
    ("threading", "threads (locks, conditions)"),
    ("json/", "json"),
)


def _area(frame: str) -> str:
    for marker, area in _AREAS:
        if marker in frame:
            return area
    return "other"


def _collapsed(path: Path) -> tuple[int, dict[str, collections.Counter[str]]]:
    """Samples in all, and per view (own frame, frame on the stack, area): counts."""
    views: dict[str, collections.Counter[str]] = {
        "own": collections.Counter(),
        "inclusive": collections.Counter(),
        "area": collections.Counter(),
    }
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", _short(f)) for f in stack.split(";") if f.endswith(")")]
        if not frames:
            continue
        roots = [i for i, frame in enumerate(frames) if frame in _ROOTS]
        if roots:
            frames = frames[roots[-1] + 1 :] or frames[-1:]
        n = int(count)
        total += n
        views["own"][frames[-1]] += n
        views["area"][_area(frames[-1])] += n
        for frame in set(frames):
            views["inclusive"][frame] += n
    return total, views


def process_report(label: str, cell: str, seconds: float, concurrency: int, out: Path) -> str:
    spy = shutil.which("py-spy")
    title = f"# A serve process under load: {cell} ({label})"
    if spy is None:
        return f"{title}\n\nNot run: py-spy is not installed (pip install py-spy).\n"
    dialect, stream = bench_serve.CELLS[cell]
    double, double_url = bench_serve._start(bench_serve._double_command(bench_serve.SHORT_TOKENS))
    raw = out / f".serve-{label}-{cell}.txt"
    try:
        with (
            bench_serve.serving(double_url) as (pid, url),
            ProcessPoolExecutor(bench_serve.CLIENT_PROCESSES) as pool,
        ):
            pool.submit(bench_serve._latency_worker, url, dialect, stream, 0.5).result()
            command = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking"]
            command += ["--duration", str(int(seconds)), "--format", "raw", "-o", str(raw)]
            sampler = subprocess.Popen(
                command,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            load = bench_serve._throughput(
                pool, url, dialect, stream, seconds, concurrency, {"serve": pid}
            )
            sampler.wait()
        total, views = _collapsed(raw)
    finally:
        bench_serve._stop(double)
        raw.unlink(missing_ok=True)
    load_note = _common.load_average()
    lines = [
        title,
        "",
        f"`python -m dsollama serve` (defaults, request log on) in front of the unpaced Ollama "
        f"double, {concurrency} keep-alive connections from {bench_serve.CLIENT_PROCESSES} "
        f"client processes sending `{bench_serve.PATHS[dialect]}` "
        f"({'streamed' if stream else 'whole'}, {bench_serve.SHORT_TOKENS} tokens) for "
        f"{seconds:g} s: {load['requests_per_second']} answers/s, serve "
        f"{load.get('serve_cpu_ms_per_request')} ms CPU per answer (while sampled at 250 Hz). "
        f"1-minute load average afterwards: {load_note}. {total} samples of every thread; "
        "py-spy without pausing the process: a thread waiting for the GIL counts as running "
        "where it waits. Stacks start below the event loop's dispatch (or a thread's run).",
        "",
    ]
    lines += ["## own samples by area", "", "| share | area |", "|---|---|"]
    lines += [f"| {n / total * 100:.1f} % | {area} |" for area, n in views["area"].most_common()]
    lines.append("")
    for view, heading in (("own", "own samples"), ("inclusive", "samples on the stack")):
        lines += [f"## top 20 by {heading}", "", "| share | frame |", "|---|---|"]
        lines += [
            f"| {n / total * 100:.1f} % | `{frame}` |" for frame, n in views[view].most_common(20)
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--label", required=True, help="before, after, …: part of the names")
    parser.add_argument("--seconds", type=float, default=8.0, help="sampling per cell")
    parser.add_argument("--requests", type=int, default=2000, help="app layer: per cell")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--cells", default="ollama-whole,ollama-stream,openai-whole")
    parser.add_argument("--no-app", action="store_true", help="skip the in-process view")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_app:
        path = args.out / f"serve-{args.label}-app.md"
        path.write_text(app_report(args.label, args.requests), encoding="utf-8")
        print(f"wrote {path.name}")
    for cell in filter(None, args.cells.split(",")):
        text = process_report(args.label, cell, args.seconds, args.concurrency, args.out)
        path = args.out / f"serve-{args.label}-process-{cell}.md"
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
