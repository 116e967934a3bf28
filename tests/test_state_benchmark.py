"""The state store benchmark runs end to end (a few calls: the numbers mean nothing here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the library

from benchmarks import bench_state  # noqa: E402


@pytest.mark.redis
def test_a_tiny_run_measures_every_store(redis_server: object) -> None:
    # redis_server: skips (or fails under CI) where redis-server is missing, like the
    # benchmark itself would report.
    results = bench_state.run(calls=5, warmup=1, concurrency=4)
    for store in ("memory", "redis", "shared"):
        for kind in ("lease_cycle_s", "full_call_s"):
            cell = results[store][kind]
            assert cell["calls"] == 5
            assert 0 < cell["p50"] <= cell["p99"]
    assert results["shared"]["burst_s"]["calls"] == 4
    assert 0 < results["redis"]["round_trip_s"]["p50"] <= results["redis"]["round_trip_s"]["p99"]
    for kind in ("lease_cycle_s", "full_call_s"):
        added = results["added_s"][kind]["p50"]
        assert added == round(results["shared"][kind]["p50"] - results["memory"][kind]["p50"], 6)
    assert results["target_met"] == (results["added_s"]["lease_cycle_s"]["p50"] <= 0.001)
    assert results["shared"]["fallbacks"] == 0
    assert results["target_p50_s"] == 0.001
