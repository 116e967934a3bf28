"""serve replicas: two ``dsollama serve`` sharing routing state through Redis vs one serve.

The busy burst of `bench_busy_burst` (a one-slot Ollama double answering in about 1 s,
the DeepSeek double, a first-token budget of 2 s, 12 streamed chats at one instant) sent
over HTTP by a plain ``httpx`` client to ``POST /api/chat``, spread round-robin over the
replicas. Each replica is its own process (``python -m dsollama serve --port 0``,
configured through the environment as a deployment would be: no config file of this
machine, request log off), started fresh per configuration and trained with one streamed
call, one replica at a time, on the idle daemon. Configurations:

- ``1 serve``: the baseline;
- ``2 serves, Redis``: ``DSOLLAMA_STATE_URL`` names one ``redis-server`` on loopback
  (started here), so both replicas admit against one count;
- ``2 serves, own view``: no shared store, each replica counts its own requests (what
  two replicas behind a load balancer do without it).

Reported: first-token p50/p99, hosted share per burst, requests that waited the budget
out (from the ``attempts`` on each answer's last line), and the ratios to one serve.

    python -m benchmarks.bench_serve_replicas [--rounds 3] [--json]
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._burst_clients import MESSAGES, Timer
from benchmarks._burst_procs import Request, Tally, command_line, waited_out
from benchmarks.bench_busy_burst import MODEL, Scenario, doubles
from benchmarks.bench_serve import _start, _stop

CONFIGS: dict[str, tuple[int, bool]] = {
    "1-serve": (1, False),
    "2-serves-redis": (2, True),
    "2-serves-own": (2, False),
}
"Name: (replicas, shared store)."
BASELINE = "1-serve"


def _env(
    sc: Scenario, ollama: Any, hosted: Any, folder: str, state_url: str | None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DSOLLAMA_")
        and k not in ("DEEPSEEK_API_KEY", "DEEPSEEK_BASE_URL", "OLLAMA_HOST", "OLLAMA_NUM_PARALLEL")
    }
    env.update(
        {
            "OLLAMA_HOST": ollama.url,
            "DSOLLAMA_LOCAL_SLOTS": str(sc.slots),
            "DEEPSEEK_BASE_URL": hosted.url,
            "DEEPSEEK_API_KEY": hosted.api_key,
            "DSOLLAMA_FIRST_TOKEN_TIMEOUT": str(sc.budget),
            "DSOLLAMA_TOTAL_TIMEOUT": str(sc.deadline),
            "DSOLLAMA_LOG": "off",
            "DSOLLAMA_CONFIG": os.path.join(folder, "config.toml"),
            # A namespace per configuration: nothing one leaves in Redis is seen by the next.
            "DSOLLAMA_STATE_NAMESPACE": f"bench-{uuid.uuid4().hex[:10]}",
        }
    )
    if state_url is not None:
        env["DSOLLAMA_STATE_URL"] = state_url
    return env


@contextlib.contextmanager
def _replicas(count: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``count`` serve processes; their base URLs."""
    command = [sys.executable, "-m", "dsollama", "serve", "--port", "0", "--log-level", "warning"]
    processes = []
    try:
        for _ in range(count):
            process, url = _start(command, env=env)
            processes.append((process, url))
        yield [url for _, url in processes]
    finally:
        for process, _ in processes:
            _stop(process)


async def _chat(client: Any, url: str, started: float, deadline: float) -> Request:
    """One streamed chat to a replica, read as any Ollama client reads it."""
    record = Request()
    timer = Timer(started, record)

    async def stream() -> dict[str, Any]:
        last: dict[str, Any] = {}
        body = {"model": MODEL, "messages": MESSAGES, "stream": True}
        async with client.stream("POST", url + "/api/chat", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")
            kind = response.headers.get("x-dsollama-kind", "")
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                part = json.loads(line)
                if "error" in part:
                    raise RuntimeError("error line")
                timer.token((part.get("message") or {}).get("content"), kind)
                if part.get("done"):
                    last = part
        return last

    try:
        last = await asyncio.wait_for(stream(), deadline)
        record.ok = bool(last.get("served_by"))
        if record.ok:
            record.route = last["served_by"].get("kind")
            record.waited = waited_out(last.get("attempts"))
            record.attempts = [
                f"{a.get('route')} → {a.get('outcome')}" for a in last.get("attempts") or ()
            ]
    except (TimeoutError, asyncio.TimeoutError):
        record.error = "deadline"
    except Exception as exc:
        record.error = type(exc).__name__
    record.latency = time.perf_counter() - started
    if not record.ok:
        record.ttft = None
    return record


async def _round(
    urls: Sequence[str], n: int, deadline: float, idle: Any
) -> tuple[list[Request], list[Request]]:
    import httpx

    timeout = httpx.Timeout(deadline + 5)
    limits = httpx.Limits(max_connections=n + len(urls), max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        training = []
        for url in urls:  # one replica at a time, on the idle daemon
            await asyncio.to_thread(idle)
            training.append(await _chat(client, url, time.perf_counter(), deadline))
        await asyncio.to_thread(idle)
        started = time.perf_counter()
        burst = await asyncio.gather(
            *(_chat(client, urls[i % len(urls)], started, deadline) for i in range(n))
        )
    return training, list(burst)


def run(
    *,
    n: int = 12,
    rounds: int = 3,
    scale: float = 1.0,
    configs: Sequence[str] = tuple(CONFIGS),
) -> dict[str, Any]:
    """Each configuration ``rounds`` times, interleaved; fresh replicas for every burst."""
    from dsollama.testing.redis_server import RedisServer, RedisServerMissing

    sc = Scenario() if scale == 1.0 else Scenario().scaled(scale)
    try:
        redis = RedisServer()
    except RedisServerMissing as exc:
        return {"skipped": str(exc)}
    tally = Tally()
    failed_training = 0
    with redis, doubles(sc) as (ollama, hosted), tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for name in configs:
                count, shared = CONFIGS[name]
                ollama.clear()
                hosted.clear()
                env = _env(sc, ollama, hosted, folder, redis.url if shared else None)
                with _replicas(count, env) as urls:
                    training, requests = asyncio.run(_round(urls, n, sc.deadline, ollama.wait_idle))
                failed_training += sum(1 for t in training if not t.ok)
                tally.add(
                    name,
                    {"replicas": count, "shared_store": shared},
                    [{"requests": [asdict(r) for r in requests]}],
                )
    return {
        "scenario": dataclasses.asdict(sc),
        "service_seconds": round(sc.service_seconds, 4),
        "requests_per_burst": n,
        "rounds": rounds,
        "baseline": BASELINE,
        "failed_training_calls": failed_training,
        "configs": tally.summary(rounds, BASELINE),
    }


def main(argv: list[str] | None = None) -> int:
    return command_line(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
