"""The benchmark runner: a tiny run writes the results file and BENCHMARKS.md; the report
and the burst arithmetic on their own. The whole tiny run (bursts, the doubles' capacity)
takes longer and runs with ``-m slow``."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the library

from benchmarks import report, run  # noqa: E402
from benchmarks.bench_busy_burst import Scenario  # noqa: E402

TOP_KEYS = {"date", "command", "mode", "machine", "versions", "benchmarks"}
MACHINE_KEYS = {"cpu", "cpus", "memory_gib", "os", "python", "implementation"}


def _run(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    code = run.main(
        [*args, "--results", str(tmp_path / "results"), "--doc", str(tmp_path / "BENCH.md")]
    )
    assert code == 0
    raw = (tmp_path / "results" / "latest.json").read_text(encoding="utf-8")
    doc = (tmp_path / "BENCH.md").read_text(encoding="utf-8")
    # Nothing written names a path of this machine.
    assert str(tmp_path) not in raw
    assert str(tmp_path) not in doc
    assert str(ROOT) not in raw
    return json.loads(raw), doc


def test_a_tiny_run_writes_results_and_the_document(tmp_path: Path) -> None:
    results, doc = _run(tmp_path, "--tiny", "--only", "overhead,dead_daemon,startup", "--no-plot")
    assert set(results) >= TOP_KEYS
    assert set(results["machine"]) >= MACHINE_KEYS
    assert results["mode"] == "tiny"
    assert results["command"].startswith("python -m benchmarks --tiny")
    assert "PATH" in results["command"]  # --results and --doc were given paths
    assert results["versions"]["dsollama"]
    b = results["benchmarks"]
    assert set(b) == {"overhead", "dead_daemon", "startup"}
    for cell in ("sync-whole", "sync-stream", "async-whole", "async-stream"):
        ratios = b["overhead"]["unpaced"][cell]["ratio_vs_official"]["dsollama"]
        assert ratios["median_call"] > 0
        assert cell in b["overhead"]["paced"]
    assert b["dead_daemon"]["breaker_states"]  # the local breaker was seen
    assert "first_call_median" in b["dead_daemon"]["added_ttft_s"]
    assert b["startup"]["help"]["median_s"] > 0
    assert "import ollama" in b["startup"]["imports"]
    assert "Machine: " in doc
    assert "## 1. Overhead when all is well" in doc
    assert "## 4. Start-up" in doc


def test_serve_is_skipped_with_a_note_while_its_module_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "benchmarks.bench_serve" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    results = run.run_all(("serve",), "tiny", echo=lambda _: None)
    assert "bench_serve.py is not there yet" in results["serve"]["skipped"]
    doc = report.markdown({**_synthetic(), "benchmarks": results})
    assert "## 5. serve" in doc
    assert "Not run: benchmarks/bench_serve.py is not there yet" in doc


def test_unknown_benchmarks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run.main(["--only", "nope", "--results", str(tmp_path)])


def test_the_minimum_hosted_share_follows_the_local_capacity() -> None:
    sc = Scenario()
    # 2 s budget, 0.05 s prompt, 1.05 s answers: first tokens at 0.05 s and 1.1 s fit, the
    # third (2.15 s) does not.
    assert sc.local_capacity == 2
    assert [sc.min_hosted(n) for n in (1, 2, 8, 128)] == [0, 0, 6, 126]
    assert Scenario().scaled(0.25).local_capacity == 2  # same shape, shorter


def _burst_run(variant: str, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "n": 8,
        "answered": 8,
        "failed": 0,
        "success_rate": 1.0,
        "latency": {"p50": 1.0, "p95": 2.0, "p99": 2.1},
        "ttft": {"p50": 0.4, "p95": 1.0, "p99": 1.1},
        "served_hosted": 6,
        "served_local": 2,
        "sent_hosted": 6,
        "sent_local": 2,
        "errors": {},
        "ttft_values": [0.4] * 8,
        "latency_values": [1.0] * 8,
    }
    base.update(overrides)
    return base


def _synthetic() -> dict[str, Any]:
    runs = {
        "official": _burst_run(
            "official",
            answered=7,
            failed=1,
            served_hosted=0,
            latency={"p50": 4.0, "p95": None, "p99": None},
            ttft={"p50": 3.0, "p95": None, "p99": None},
            ttft_values=[1.0] * 7 + [None],
        ),
        "wait-budget": _burst_run("wait-budget", ttft={"p50": 2.4, "p95": 2.5, "p99": 2.6}),
        "admission-only": _burst_run("admission-only", served_hosted=7),
        "dsollama-budget": _burst_run("dsollama-budget"),
        "dsollama-latency": _burst_run("dsollama-latency", served_hosted=7),
    }
    from benchmarks.bench_busy_burst import _targets

    burst = {
        "scenario": {**Scenario().__dict__},
        "service_seconds": 1.05,
        "local_capacity": 2,
        "variants": list(runs),
        "litellm": {"used": False, "note": "not run: no throwaway virtualenv"},
        "sizes": {"8": {"min_hosted": 6, "runs": runs, "targets": _targets(8, Scenario(), runs)}},
    }
    return {
        "date": "2026-11-25T00:00:00+00:00",
        "command": "python -m benchmarks",
        "mode": "full",
        "machine": {
            "cpu": "Some CPU",
            "cpus": 2,
            "memory_gib": 8.0,
            "os": "Linux",
            "python": "3.11.7",
            "implementation": "CPython",
        },
        "versions": {"dsollama": "0.1.0", "ollama": "0.6.3"},
        "benchmarks": {
            "busy_burst": burst,
            "serve": {"skipped": "benchmarks/bench_serve.py is not there yet"},
            "startup": {
                "repeat": 3,
                "help": {"median_s": 0.2, "min_s": 0.19, "target_s": 0.15, "met": False},
                "python_bare_s": 0.02,
                "imports": {
                    "bare": {"median_s": 0.0, "maxrss_mib": 10, "modules": 50, "added_mib": 0},
                    "import ollama": {
                        "median_s": 0.3,
                        "maxrss_mib": 30,
                        "modules": 400,
                        "added_mib": 20,
                    },
                },
            },
        },
    }


def test_the_document_reports_each_target_met_or_missed() -> None:
    results = _synthetic()
    targets = results["benchmarks"]["busy_burst"]["sizes"]["8"]["targets"]
    assert targets["every_request_answered"]["met"]
    assert targets["hosted_at_minimum"]["met"]
    assert targets["ttft_p99_half_of_reactive"]["met"]  # 1.1 s <= 2.6 s / 2
    assert not targets["latency_first_beats_admission_only"]["met"]  # 7 hosted, not fewer
    doc = report.markdown(results, png=Path("benchmarks/results/busy-burst.png"))
    assert "| Busy burst N=8: every request answered | 0 failed | met |" in doc
    assert "fewer hosted" in doc
    assert "**missed**" in doc  # the latency-first target and --help
    assert "Not run: benchmarks/bench_serve.py is not there yet." in doc
    assert "emulations, labelled as such" in doc
    assert "![Busy-burst latency distribution](benchmarks/results/busy-burst.png)" in doc
    assert "| official `ollama` client (timeout, no fallback) | 7/8 |" in doc
    assert "✗" in doc  # the official client's p99 never answered


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="bench extra")
def test_the_plot_is_written(tmp_path: Path) -> None:
    png = tmp_path / "burst.png"
    assert report.plot_busy_burst(_synthetic(), png)
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_whole_tiny_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("starts a dozen processes: run with -m slow")
    results, doc = _run(tmp_path, "--tiny", "--only", "busy_burst,doubles")
    burst = results["benchmarks"]["busy_burst"]
    runs = burst["sizes"]["4"]["runs"]
    assert runs["dsollama-budget"]["answered"] == 4
    assert runs["dsollama-budget"]["served_hosted"] >= 1
    assert runs["official"]["served_hosted"] == 0
    assert results["benchmarks"]["doubles"]["ollama"]["chat_requests_per_second"] > 0
    assert (tmp_path / "results" / "busy-burst.png").exists() == (
        importlib.util.find_spec("matplotlib") is not None
    )
    assert "## 2. Busy burst" in doc
