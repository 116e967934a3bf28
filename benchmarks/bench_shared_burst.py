"""Shared capacity: the busy burst sent by several processes, with and without a shared store.

The burst of `bench_busy_burst` (a one-slot Ollama double answering in about 1 s, the
DeepSeek double, a first-token budget of 2 s, 12 streamed chats at one instant), split
over 1 × 12, 3 × 4 and 6 × 2 processes, each with its own `dsollama.AsyncClient`
(see `_burst_procs`: real processes, trained one at a time with one call each, released
by one barrier). Two stores:

- ``memory``: each process counts only its own requests (the default). Every process
  believes the slot is free, so together they queue more on the daemon than the budget
  allows, and those requests wait the whole budget out before moving hosted;
- ``redis``: ``state_url`` names one ``redis-server`` on loopback (started here), so every
  process admits against the same count.

Reported per configuration: first-token p50/p99, hosted share (per burst), how many
requests waited the budget out, and the ratios to the one-process figures (1 × 12,
in-process store) of the same run. Target: with the shared store, first-token p99 and
hosted share within one request of the one-process figures.

    python -m benchmarks.bench_shared_burst [--rounds 3] [--json]
"""

from __future__ import annotations

import dataclasses
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._burst_procs import Plan, Tally, burst, command_line
from benchmarks.bench_busy_burst import MODEL, Scenario, doubles

SPLITS: tuple[tuple[int, int], ...] = ((1, 12), (3, 4), (6, 2))
STORES = ("memory", "redis")


def config_name(processes: int, per_process: int, store: str) -> str:
    """``"3x4-redis"``: the key of a configuration in the results."""
    return f"{processes}x{per_process}-{store}"


def _settings(sc: Scenario, ollama_url: str, hosted: Any, state_url: str | None) -> dict[str, Any]:
    return {
        "ollama_hosts": (ollama_url,),
        "hosted_base_url": hosted.url,
        "hosted_api_key": hosted.api_key,
        "first_token_timeout": sc.budget,
        "local_slots": sc.slots,
        "total_timeout": sc.deadline,
        "log": False,
        "state_url": state_url,
        # A namespace per burst: nothing one burst leaves in Redis is seen by the next.
        "state_namespace": f"bench-{uuid.uuid4().hex[:10]}",
    }


def run(
    splits: Sequence[tuple[int, int]] = SPLITS,
    *,
    rounds: int = 3,
    scale: float = 1.0,
) -> dict[str, Any]:
    """Every split with either store, ``rounds`` times (interleaved, so drift in the
    machine's speed hits every configuration alike)."""
    from dsollama.testing.redis_server import RedisServer, RedisServerMissing

    sc = Scenario() if scale == 1.0 else Scenario().scaled(scale)
    try:
        redis = RedisServer()
    except RedisServerMissing as exc:
        return {"skipped": str(exc)}
    tally = Tally()
    with redis, doubles(sc) as (ollama, hosted):
        for _ in range(rounds):
            for processes, per_process in splits:
                for store in STORES:
                    ollama.clear()
                    hosted.clear()
                    url = redis.url if store == "redis" else None
                    settings = _settings(sc, ollama.url, hosted, url)
                    plan = Plan(settings, MODEL, per_process, sc.deadline)
                    tally.add(
                        config_name(processes, per_process, store),
                        {"processes": processes, "per_process": per_process, "store": store},
                        burst([plan] * processes, idle=ollama.wait_idle),
                    )
    # The first split (one process sending the whole burst) with the process's own count.
    baseline = config_name(*splits[0], "memory") if splits else ""
    return {
        "scenario": dataclasses.asdict(sc),
        "service_seconds": round(sc.service_seconds, 4),
        "requests_per_burst": splits[0][0] * splits[0][1] if splits else 0,
        "rounds": rounds,
        "baseline": baseline,
        "configs": tally.summary(rounds, baseline),
    }


def main(argv: list[str] | None = None) -> int:
    return command_line(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
