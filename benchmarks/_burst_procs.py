"""One burst sent by several processes at once, each holding its own `dsollama.AsyncClient`.

The shared-capacity benchmarks need what one process cannot show: clients that know
nothing of each other's requests unless a shared store tells them. Each worker here is a
fresh interpreter (``spawn``: no state inherited from the parent), as separate programs or
serve replicas would be.

The parent runs every worker through the same steps, so the comparison is fair:

1. *training*, one worker at a time on an idle server: one streamed call each, so every
   process starts from the same estimates (with a shared store, they pool them);
2. *the burst*: every worker waits on one barrier; the parent passes it last, which
   releases all of them at one instant; each sends its share of requests at once.

Each worker reports its requests: whether answered, served by which kind of route, time to
the first token and to the end (from its own release), and whether the request *waited the
budget out*: queued on a private route until the first-token budget passed, then moved on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from benchmarks._burst_clients import MESSAGES, Record, Timer

__all__ = ["P99_SLACK", "Plan", "Request", "Tally", "burst", "compare", "summarise", "waited_out"]

P99_SLACK = 1.25
"""Within one request of a baseline's first-token p99: at most this many times it. A
request that waits a 2 s budget out lands past 2.4 s, over twice a ~1.1 s p99."""
STEP_TIMEOUT = 120.0
"Longest any step (a worker's start and training, the burst) may take before the run fails."


@dataclass(frozen=True)
class Plan:
    """What one worker does: its client's settings (`dsollama.Settings` fields, given
    whole, so no environment or config file of this machine leaks in) and its share."""

    settings: dict[str, Any]
    model: str
    n: int
    deadline: float
    "Every request is abandoned (counted failed) after this many seconds."


@dataclass
class Request(Record):
    waited: bool = False
    "Queued on a private route until the first-token budget passed, then moved on."
    attempts: list[str] = field(default_factory=list)


def waited_out(attempts: Sequence[Any] | None) -> bool:
    """Did a private route keep this call until its first-token budget passed?

    ``attempts``: a response's `Attempt`s, or their JSON (serve's last line).
    """

    def field(attempt: Any, name: str) -> Any:
        if isinstance(attempt, Mapping):
            return attempt.get(name)
        return getattr(attempt, name, None)

    return any(
        field(a, "kind") == "local"
        and field(a, "outcome") == "fallback"
        and field(a, "error") == "BackendTimeoutError"
        and "first token" in (field(a, "detail") or "")
        for a in attempts or ()
    )


async def _ask(client: Any, plan: Plan, started: float) -> Request:
    record = Request()
    timer = Timer(started, record)

    async def stream() -> Any:
        last: Any = None
        async for part in await client.chat(plan.model, MESSAGES, stream=True):
            if part.served_by is not None:
                timer.token(part.message.content, part.served_by.kind)
            last = part
        return last

    try:
        last = await asyncio.wait_for(stream(), plan.deadline)
        record.ok = last is not None and last.served_by is not None
        if record.ok:
            record.route = last.served_by.kind
            record.waited = waited_out(last.attempts)
            record.attempts = [a.brief() for a in last.attempts or ()]
    except (TimeoutError, asyncio.TimeoutError):
        record.error = "deadline"
    except Exception as exc:
        record.error = type(exc).__name__
    record.latency = time.perf_counter() - started
    if not record.ok:
        record.ttft = None
    return record


async def _work(
    plan: Plan,
    train: Event,
    trained: Event,
    barrier: Barrier,
) -> dict[str, Any]:
    from dsollama import AsyncClient
    from dsollama._config import Settings

    client = AsyncClient(settings=Settings(**plan.settings))
    try:
        # Blocking waits on purpose: this loop has nothing else to do until told, and a
        # blocked loop wakes with the barrier itself, not a thread hop later.
        if not train.wait(STEP_TIMEOUT):
            raise RuntimeError("never told to train")
        training = await _ask(client, plan, time.perf_counter())
        trained.set()
        barrier.wait(STEP_TIMEOUT)
        started = time.perf_counter()
        records = await asyncio.gather(*(_ask(client, plan, started) for _ in range(plan.n)))
        # A shared store that failed mid-burst means this process routed on its own view:
        # say so beside the numbers rather than report them as the shared store's.
        during = client.router.state.store.health()
    finally:
        await client.aclose()
    after = client.router.state.store.health()
    return {
        "training": asdict(training),
        "requests": [asdict(r) for r in records],
        "store": {
            "fallbacks": during.fallbacks,
            "fallbacks_while_closing": after.fallbacks - during.fallbacks,
            "last_error": after.last_error,
        },
    }


def _worker(
    index: int,
    plan: Plan,
    train: Event,
    trained: Event,
    barrier: Barrier,
    results: multiprocessing.Queue[tuple[int, dict[str, Any]]],
) -> None:
    try:
        out = asyncio.run(_work(plan, train, trained, barrier))
    except BaseException as exc:
        barrier.abort()  # the parent and the other workers stop waiting for this one
        trained.set()
        results.put((index, {"error": f"{type(exc).__name__}: {exc}"}))
        return
    results.put((index, out))


def burst(
    plans: Sequence[Plan], *, idle: Callable[[], object] = lambda: None
) -> list[dict[str, Any]]:
    """Run one worker per plan: train them one by one, then release every burst at once.

    ``idle`` waits until the servers have nothing in flight (called before each training
    call and before the release). Returns each worker's report, in plan order; raises
    RuntimeError naming the first worker that failed.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(plans) + 1)
    train = [ctx.Event() for _ in plans]
    trained = [ctx.Event() for _ in plans]
    results: multiprocessing.Queue[tuple[int, dict[str, Any]]] = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker,
            args=(i, plan, train[i], trained[i], barrier, results),
            daemon=True,
        )
        for i, plan in enumerate(plans)
    ]
    for worker in workers:
        worker.start()
    reports: dict[int, dict[str, Any]] = {}
    try:
        try:
            for i in range(len(plans)):
                idle()
                train[i].set()
                if not trained[i].wait(STEP_TIMEOUT):
                    raise RuntimeError(f"worker {i} did not finish its training call")
            idle()
            barrier.wait(STEP_TIMEOUT)
        except threading.BrokenBarrierError:
            pass  # a worker failed: its report says why
        while len(reports) < len(plans):
            try:
                index, report = results.get(timeout=STEP_TIMEOUT)
            except queue.Empty:
                raise RuntimeError("a worker neither reported nor failed in time") from None
            reports[index] = report
            if "error" in report:
                break
    finally:
        for worker in workers:
            worker.join(timeout=10 if len(reports) == len(plans) else 0.1)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    failed = [(i, r["error"]) for i, r in sorted(reports.items()) if "error" in r]
    if failed:
        raise RuntimeError(f"worker {failed[0][0]} failed: {failed[0][1]}")
    return [reports[i] for i in range(len(plans))]


# -- summaries -------------------------------------------------------------------------------


def summarise(records: list[dict[str, Any]], bursts: int) -> dict[str, Any]:
    """Percentiles over every request of ``bursts`` bursts; counts per burst."""
    from benchmarks.bench_busy_burst import _summarise

    out = _summarise(records)
    waited = sum(1 for r in records if r.get("waited"))
    out.update(
        bursts=bursts,
        hosted_per_burst=round(out["served_hosted"] / bursts, 2),
        waited=waited,
        waited_per_burst=round(waited / bursts, 2),
    )
    return out


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 3)


def compare(config: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """Ratios to ``baseline`` (same run), and whether ``config`` is within one request of it:
    hosted share within one request per burst, first-token p99 within `P99_SLACK`, and no
    request failed."""
    p99 = _ratio(config["ttft"]["p99"], baseline["ttft"]["p99"])
    hosted_difference = round(config["hosted_per_burst"] - baseline["hosted_per_burst"], 2)
    return {
        "ttft_p50": _ratio(config["ttft"]["p50"], baseline["ttft"]["p50"]),
        "ttft_p99": p99,
        "hosted": _ratio(config["hosted_per_burst"], baseline["hosted_per_burst"]),
        "hosted_difference": hosted_difference,
        "within_one_request": (
            config["failed"] == 0
            and p99 is not None
            and p99 <= P99_SLACK
            and abs(hosted_difference) <= 1
        ),
    }


class Tally:
    """The requests of each configuration over every round, then its summary."""

    def __init__(self) -> None:
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._shape: dict[str, dict[str, Any]] = {}
        self._fallbacks: dict[str, int] = {}

    def add(self, name: str, shape: dict[str, Any], reports: Sequence[dict[str, Any]]) -> None:
        """One burst of configuration ``name``: the workers' reports from `burst`."""
        self._shape[name] = shape
        self._records.setdefault(name, []).extend(r for rep in reports for r in rep["requests"])
        self._fallbacks[name] = self._fallbacks.get(name, 0) + sum(
            rep.get("store", {}).get("fallbacks", 0) for rep in reports
        )

    def summary(self, rounds: int, baseline: str) -> dict[str, dict[str, Any]]:
        """Each configuration's figures, and its ratios to ``baseline``'s."""
        configs = {
            name: {
                **self._shape[name],
                **summarise(records, rounds),
                # Processes whose shared store failed during a burst routed on their own
                # view: their figures are partly the fallback's.
                "store_fallbacks": self._fallbacks[name],
            }
            for name, records in self._records.items()
        }
        base = configs.get(baseline)
        if base is not None:
            for config in configs.values():
                config["versus_baseline"] = compare(config, base)
        return configs


def command_line(
    run: Callable[..., dict[str, Any]], doc: str | None, argv: list[str] | None = None
) -> int:
    """The command line of a multi-process burst benchmark: ``--rounds``, ``--json``, and
    one line per configuration (first-token p99 against the baseline, hosted and waited
    per burst)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(rounds=args.rounds)
    if args.json or "configs" not in results:
        print(json.dumps(results, indent=2))
        return 0
    width = max(map(len, results["configs"]), default=0) + 2
    for name, c in results["configs"].items():
        versus = c.get("versus_baseline", {})
        print(
            f"{name:<{width}}ttft p99 {c['ttft']['p99']}  ({versus.get('ttft_p99')}x)  "
            f"hosted/burst {c['hosted_per_burst']}  waited/burst {c['waited_per_burst']}"
        )
    return 0
