"""A vLLM-like route with capacity K: admission from the server's metrics vs the process's count.

A route is data: here a ``vllm`` preset route to the vLLM double (``max_num_seqs`` = K
requests generate at once, the rest wait silently in arrival order, ``/metrics`` shows
both), declared private with ``capacity = K``, plus the DeepSeek double as the hosted
route. Each answer takes about 1 s; the first-token budget is 2 s, so the route gives a
first token within the budget to 2 K requests of a burst and at least 12 − 2 K must go
hosted. Twelve streamed chats at one instant, from one process or from two (6 each, see
`_burst_procs`: real processes, trained one at a time, released by one barrier).

Admission sources:

- ``own count`` (``load_signal = "none"``): each process counts its own requests;
- ``server metrics`` (``load_signal = "vllm"``): each process also reads the server's
  ``vllm:num_requests_running`` / ``waiting`` (at most every ``load_ttl``, 0.25 s);
- ``shared count`` (``load_signal = "none"``, ``state_url`` on a local ``redis-server``):
  every process admits against one count, for comparison.

Reported: first-token p50/p99, hosted share per burst, requests that waited the budget
out, and ratios to the one-process, own-count figures of the same run.

    python -m benchmarks.bench_vllm_burst [--rounds 3] [--json]
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._burst_procs import Plan, Tally, burst, command_line
from benchmarks._common import Double
from benchmarks.bench_busy_burst import HOSTED_MODEL, Scenario, hosted_double

MODEL = "deepseek-coder:6.7b"
"What the callers ask for; the route maps it to the server's own name."
SERVED = "deepseek-ai/deepseek-coder-6.7b-instruct"
SPLITS: tuple[tuple[int, int], ...] = ((1, 12), (2, 6))
SOURCES = ("own", "metrics", "shared")


@dataclass(frozen=True)
class VLLMScenario:
    capacity: int = 4
    "max_num_seqs of the server, and the route's capacity."
    prompt_seconds: float = 0.05
    token_seconds: float = 0.025
    answer_tokens: int = 40
    hosted: Scenario = dataclasses.field(default_factory=Scenario)
    "The hosted double, the budget and the deadline (those of the busy burst)."

    def scaled(self, factor: float) -> VLLMScenario:
        return dataclasses.replace(
            self,
            prompt_seconds=self.prompt_seconds * factor,
            token_seconds=self.token_seconds * factor,
            hosted=self.hosted.scaled(factor),
        )

    @property
    def service_seconds(self) -> float:
        return self.prompt_seconds + (self.answer_tokens - 1) * self.token_seconds

    @property
    def local_capacity(self) -> int:
        """Requests of a burst the route gives a first token within the budget."""
        budget = self.hosted.budget
        waves = math.floor((budget - self.prompt_seconds) / self.service_seconds) + 1
        return self.capacity * max(waves, 0)


def config_name(processes: int, per_process: int, source: str) -> str:
    return f"{processes}x{per_process}-{source}"


@contextlib.contextmanager
def _vllm(sc: VLLMScenario) -> Iterator[Double]:
    with Double(
        "vllm",
        "--served-model-name",
        SERVED,
        "--max-num-seqs",
        str(sc.capacity),
        "--prompt-seconds",
        str(sc.prompt_seconds),
        "--token-seconds",
        str(sc.token_seconds),
        "--answer-tokens",
        str(sc.answer_tokens),
        "--thinking-tokens",
        "0",
    ) as vllm:
        yield vllm


def _settings(
    sc: VLLMScenario, vllm: Double, hosted: Double, source: str, state_url: str | None
) -> dict[str, Any]:
    routes = (
        {
            "name": "gpu-box",
            "preset": "vllm",
            "base_url": vllm.url + "/v1",
            "model_map": {MODEL: SERVED},
            "private": True,
            "capacity": sc.capacity,
            "load_signal": "vllm" if source == "metrics" else "none",
        },
        {
            "name": "deepseek",
            "preset": "deepseek",
            "base_url": hosted.url,
            "api_key": hosted.api_key,
            "model_map": {MODEL: HOSTED_MODEL},
            # The double listens on loopback, which would make the route private by
            # default; it stands in for the third-party API.
            "private": False,
        },
    )
    return {
        "routes": routes,
        "first_token_timeout": sc.hosted.budget,
        "total_timeout": sc.hosted.deadline,
        "log": False,
        "state_url": state_url if source == "shared" else None,
        "state_namespace": f"bench-{uuid.uuid4().hex[:10]}",
    }


def run(
    splits: Sequence[tuple[int, int]] = SPLITS,
    *,
    rounds: int = 3,
    scale: float = 1.0,
    sources: Sequence[str] = SOURCES,
) -> dict[str, Any]:
    """Every split with every admission source, ``rounds`` times, interleaved."""
    from dsollama.testing.redis_server import RedisServer, RedisServerMissing

    sc = VLLMScenario() if scale == 1.0 else VLLMScenario().scaled(scale)
    redis: RedisServer | None = None
    note = None
    if "shared" in sources:
        try:
            redis = RedisServer()
        except RedisServerMissing as exc:
            sources, note = [s for s in sources if s != "shared"], str(exc)
    tally = Tally()
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis).url if redis is not None else None
        vllm = stack.enter_context(_vllm(sc))
        hosted = stack.enter_context(hosted_double(sc.hosted))
        for _ in range(rounds):
            for processes, per_process in splits:
                for source in sources:
                    if processes == 1 and source == "shared":
                        continue  # one process: its own count is the whole count
                    vllm.clear()
                    hosted.clear()
                    settings = _settings(sc, vllm, hosted, source, redis_url)
                    plan = Plan(settings, MODEL, per_process, sc.hosted.deadline)
                    tally.add(
                        config_name(processes, per_process, source),
                        {"processes": processes, "per_process": per_process, "source": source},
                        burst([plan] * processes, idle=vllm.wait_idle),
                    )
    # The first split (one process sending the whole burst) with the process's own count.
    baseline = config_name(*splits[0], "own") if splits else ""
    total = splits[0][0] * splits[0][1] if splits else 0
    return {
        "scenario": {
            **{k: v for k, v in dataclasses.asdict(sc).items() if k != "hosted"},
            "budget": sc.hosted.budget,
            "deadline": sc.hosted.deadline,
            "hosted_first_token_seconds": sc.hosted.hosted_first_token_seconds,
        },
        "service_seconds": round(sc.service_seconds, 4),
        "local_capacity": sc.local_capacity,
        "requests_per_burst": total,
        "min_hosted": max(total - sc.local_capacity, 0),
        "rounds": rounds,
        "baseline": baseline,
        "configs": tally.summary(rounds, baseline),
        **({"note": note} if note else {}),
    }


def main(argv: list[str] | None = None) -> int:
    return command_line(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
