"""What sharing routing state costs a call: the state store's operations, in memory and on
Redis over loopback.

Per call the router takes a lease (``admit``), marks its first token and finishes it:
the *lease cycle*. With breakers it also asks for a pass and reports the outcome: the
*full call*, five operations. Each is timed end to end, one call at a time (latency, not
throughput), beside a bare PING (one round trip, what the Redis figures are made of), for:

- ``memory``: `MemoryStore`, this process only (the default);
- ``redis``: `RedisStore`, every operation one round trip to a local ``redis-server``;
- ``shared``: `SharedStore` over it, what ``state_url = "redis://…"`` gives (adds the
  per-operation timeout and the warm local mirror).

Then a burst: ``concurrency`` calls at once through one shared store (on a hosted route's
key: no queue), to show what a busy process pays; past a few operations in flight the
Redis store shares round trips (pipelines). The Redis server is started here (Debian's
``redis-server``, on a free loopback port, no persistence) and stopped at the end.
Target: ≤ 1 ms p50 for the lease cycle on Redis.

    python -m benchmarks.bench_state [--calls 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import load_average, machine, percentiles

PRIORS_ARGS = (0.3, 2.0, 5.0)
KEY = "local:127.0.0.1:11434|deepseek-r1:8b"
ROUTE = "local:127.0.0.1:11434"
HOSTED_SLOTS = 1_000_000
TARGET_P50_S = 0.001
"What sharing may add to a call's lease cycle at the median (Redis on loopback)."


async def _lease_cycle(store: Any, priors: Any, slots: int = 4) -> None:
    admission = await store.admit(KEY, slots=slots, priors=priors)
    await store.first_token(admission.lease)
    await store.finish(admission.lease, ok=True)


async def _full_call(store: Any, priors: Any, slots: int = 4) -> None:
    granted = await store.breaker_pass(ROUTE)
    await _lease_cycle(store, priors, slots)
    await store.breaker_report(ROUTE, "success", epoch=granted.epoch, probe=granted.probe)


async def _interleaved(
    stores: dict[str, Any], priors: Any, calls: int, warmup: int, ping: Any
) -> dict[str, dict[str, Any]]:
    """Each kind of call on each store in turn, so drift in the machine's speed hits
    every store alike; and one bare PING (``ping``) each turn: the round trip itself,
    which the Redis figures are made of (a lease cycle is three)."""
    kinds = {"lease_cycle_s": _lease_cycle, "full_call_s": _full_call}
    samples: dict[tuple[str, str], list[float]] = {(n, k): [] for n in stores for k in kinds}
    round_trips: list[float] = []
    for i in range(warmup + calls):
        for name, store in stores.items():
            for kind, call in kinds.items():
                started = time.perf_counter()
                await call(store, priors)
                if i >= warmup:
                    samples[(name, kind)].append(time.perf_counter() - started)
        started = time.perf_counter()
        await ping()
        if i >= warmup:
            round_trips.append(time.perf_counter() - started)
    out: dict[str, dict[str, Any]] = {name: {} for name in stores}
    for (name, kind), values in samples.items():
        out[name][kind] = {"calls": len(values), **percentiles(values)}
    out["redis"]["round_trip_s"] = {"calls": len(round_trips), **percentiles(round_trips)}
    return out


async def _burst(store: Any, priors: Any, concurrency: int, rounds: int) -> dict[str, Any]:
    samples: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        # A hosted route's slots: a burst that big on one local model would be refused
        # by admission, not queued.
        await _full_call(store, priors, HOSTED_SLOTS)
        samples.append(time.perf_counter() - started)

    started = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "calls": len(samples),
        "calls_per_s": round(len(samples) / wall, 1),
        **percentiles(samples),
    }


async def _measure(url: str, calls: int, warmup: int, concurrency: int) -> dict[str, Any]:
    from dsollama._state import BreakerConfig, Estimates
    from dsollama._state.memory import MemoryStore
    from dsollama._state.redis_store import RedisStore
    from dsollama._state.shared import SharedStore

    priors = Estimates(*PRIORS_ARGS)
    stores: dict[str, Any] = {
        "memory": MemoryStore(breaker=BreakerConfig()),
        "redis": RedisStore(url, namespace="bench-redis", op_timeout=1.0),
        # A generous timeout: a busy benchmark machine must not measure the fallback.
        "shared": SharedStore(
            RedisStore(url, namespace="bench-shared", op_timeout=1.0), op_timeout=1.0
        ),
    }
    import redis.asyncio

    bare = redis.asyncio.Redis.from_url(url)
    try:
        out = await _interleaved(stores, priors, calls, warmup, bare.ping)
        shared = stores["shared"]
        out["shared"]["burst_s"] = await _burst(
            shared, priors, concurrency, max(1, calls // concurrency)
        )
        out["shared"]["fallbacks"] = shared.health().fallbacks
    finally:
        await bare.aclose()
        for store in stores.values():
            await store.aclose()
    return out


def run(calls: int = 2000, warmup: int = 200, concurrency: int = 64) -> dict[str, Any]:
    from dsollama.testing.redis_server import RedisServer, RedisServerMissing

    try:
        server = RedisServer()
    except RedisServerMissing as exc:
        return {"skipped": str(exc)}
    with server:
        load_before = load_average()
        results = asyncio.run(_measure(server.url, calls, warmup, concurrency))
    added = {
        kind: {
            q: round(results["shared"][kind][q] - results["memory"][kind][q], 6)
            for q in ("p50", "p99")
        }
        for kind in ("lease_cycle_s", "full_call_s")
    }
    return {
        "load_average": {"before": load_before, "after": load_average()},
        **results,
        # What sharing adds to a call: the shared store minus the in-process one.
        "added_s": added,
        "added_by_redis_p50_s": added["lease_cycle_s"]["p50"],
        "target_p50_s": TARGET_P50_S,
        "target_met": added["lease_cycle_s"]["p50"] <= TARGET_P50_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="also the machine it ran on")
    args = parser.parse_args(argv)
    results = run(args.calls, concurrency=args.concurrency)
    if args.json:
        results = {"machine": machine(), **results}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
