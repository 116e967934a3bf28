"""Run dsollama's benchmarks and write the results: one command for all of them.

    python -m benchmarks                      # everything (about 15 minutes on 2 CPUs)
    python -m benchmarks --with-litellm       # also LiteLLM's Router, from a throwaway venv
    python -m benchmarks --quick              # fewer calls, bursts of 8 and 32, one round
    python -m benchmarks --only overhead,startup
    python -m benchmarks --only state --merge # re-measure one, keep the others' numbers

Writes ``benchmarks/results/latest.json`` (machine, date, command, versions, every
number), regenerates ``BENCHMARKS.md`` at the repository root and, with matplotlib
installed (``pip install -e '.[bench]'``), ``benchmarks/results/busy-burst.png``.

Benchmarks: ``overhead``, ``busy_burst``, ``dead_daemon``, ``startup``, ``serve`` (what
serve adds: latency, per streamed chunk, throughput, ``--workers``), ``serve_memory``
(serve's resident memory after 1,000 and 10,000 mixed requests),
the shared-capacity ones — ``shared_burst`` (one daemon, several processes, with and
without a Redis store), ``vllm_burst`` (a vLLM route with capacity K: server metrics vs
the process's own count), ``serve_replicas`` (two serves sharing Redis vs one) and
``state`` (what the state store adds per call) — which start a ``redis-server`` of their
own (skipped with a note where it is not installed), and ``doubles`` (the doubles' own
capacity, which proves they are not what is measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common

ROOT = Path(__file__).resolve().parent.parent
ALL = (
    "overhead",
    "busy_burst",
    "dead_daemon",
    "startup",
    "serve",
    "serve_memory",
    "shared_burst",
    "vllm_burst",
    "serve_replicas",
    "state",
    "doubles",
)

# Per mode: the arguments each benchmark's run() gets.
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "overhead": {"calls": 300, "paced_calls": 20},
        "busy_burst": {"sizes": (8, 32, 128)},
        "dead_daemon": {"calls": 50},
        "startup": {"repeat": 15},
        "serve": {"seconds": 5.0},
        "serve_memory": {"requests": 10_000, "first": 1_000},
        "shared_burst": {"rounds": 2},
        "vllm_burst": {"rounds": 2},
        "serve_replicas": {"rounds": 2},
        "state": {"calls": 2000},
        "doubles": {"seconds": 3.0},
    },
    "quick": {
        "overhead": {"calls": 60, "paced_calls": 6},
        "busy_burst": {"sizes": (8, 32), "slow_hosted_sizes": (8,), "capped_hosted_sizes": (16,)},
        "dead_daemon": {"calls": 20},
        "startup": {"repeat": 7},
        "serve": {"seconds": 2.0},
        "serve_memory": {"requests": 3_000, "first": 1_000},
        "shared_burst": {"rounds": 1},
        "vllm_burst": {"rounds": 1},
        "serve_replicas": {"rounds": 1},
        "state": {"calls": 500, "warmup": 50},
        "doubles": {"seconds": 1.0},
    },
    # For the test suite: every code path, seconds in all, numbers meaningless.
    "tiny": {
        "overhead": {"calls": 4, "paced_calls": 1, "warmup": 0},
        "busy_burst": {
            "sizes": (4,),
            "scale": 0.25,
            "variants": ("official", "wait-budget", "admission-only", "dsollama-budget"),
            "slow_hosted_sizes": (),
            "capped_hosted_sizes": (),
        },
        "dead_daemon": {"calls": 3},
        "startup": {"repeat": 1},
        "serve": {"seconds": 0.3, "workers": False},
        "serve_memory": {"requests": 40, "first": 20, "connections": 2},
        "shared_burst": {"splits": ((1, 4), (2, 2)), "rounds": 1, "scale": 0.25},
        "vllm_burst": {"splits": ((1, 4), (2, 2)), "rounds": 1, "scale": 0.25},
        "serve_replicas": {
            "n": 4,
            "rounds": 1,
            "scale": 0.25,
            "configs": ("1-serve", "2-serves-redis"),
        },
        "state": {"calls": 5, "warmup": 1, "concurrency": 4},
        "doubles": {"seconds": 0.3},
    },
}


def _serve(**kwargs: Any) -> dict[str, Any]:
    if importlib.util.find_spec("benchmarks.bench_serve") is None:
        return {"skipped": "benchmarks/bench_serve.py is not there yet (the serve issue)"}
    module = importlib.import_module("benchmarks.bench_serve")
    result: dict[str, Any] = module.run(**kwargs)
    return result


def _doubles(seconds: float) -> dict[str, Any]:
    from benchmarks import bench_doubles_deepseek, bench_doubles_ollama

    return {
        "ollama": bench_doubles_ollama.run(seconds),
        "deepseek": bench_doubles_deepseek.run(seconds),
    }


def _runner(name: str) -> Callable[..., dict[str, Any]]:
    if name == "serve":
        return _serve
    if name == "doubles":
        return _doubles
    module = importlib.import_module(f"benchmarks.bench_{name}")
    run: Callable[..., dict[str, Any]] = module.run
    return run


def _litellm(args: argparse.Namespace) -> tuple[Path | None, str]:
    from benchmarks import bench_busy_burst

    if args.litellm_python is not None:
        return args.litellm_python, "LiteLLM from the interpreter given with --litellm-python"
    python = bench_busy_burst._venv_python(bench_busy_burst.litellm_venv())
    if args.with_litellm:
        return bench_busy_burst.setup_litellm()
    if python.exists():
        return python, "LiteLLM from the throwaway virtualenv made by an earlier --with-litellm"
    return None, "not run: pass --with-litellm to install it in a throwaway virtualenv"


def _command(argv: list[str]) -> str:
    # The command as typed, minus anything that is a path on this machine.
    words, skip = [], False
    for word in argv:
        if skip:
            words.append("PATH")
            skip = False
            continue
        words.append(word)
        skip = word in ("--litellm-python", "--results", "--doc")
    return " ".join(["python -m benchmarks", *words])


def run_all(
    names: tuple[str, ...],
    mode: str,
    *,
    litellm_python: Path | None = None,
    litellm_note: str = "",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the named benchmarks; a failing one is recorded as an error, the rest go on."""
    results: dict[str, Any] = {}
    for name in names:
        kwargs = dict(MODES[mode][name])
        if name == "busy_burst":
            kwargs.update(litellm_python=litellm_python, litellm_note=litellm_note)
        echo(f"running {name} ({mode})...")
        started = time.perf_counter()
        try:
            results[name] = _runner(name)(**kwargs)
        except Exception as exc:
            results[name] = {
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }
        results[name]["wall_seconds"] = round(time.perf_counter() - started, 1)
        echo(f"  {name} took {results[name]['wall_seconds']}s")
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated: " + ",".join(ALL))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer calls, smaller bursts")
    size.add_argument("--tiny", action="store_true", help="seconds in all (for tests)")
    parser.add_argument(
        "--with-litellm",
        action="store_true",
        help="install the pinned LiteLLM in a throwaway virtualenv and run its Router",
    )
    parser.add_argument("--litellm-python", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the results file's numbers for the benchmarks not run now",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite BENCHMARKS.md and the plot from the results file",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        results = json.loads((args.results / "latest.json").read_text(encoding="utf-8"))
        _write_report(results, args)
        return 0
    names = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = set(names) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"

    litellm_python, litellm_note = (None, "")
    if "busy_burst" in names:
        litellm_python, litellm_note = _litellm(args)
        print(f"LiteLLM: {litellm_note}")
    started = dt.datetime.now(dt.timezone.utc)
    load_before = _common.load_average()
    benchmarks = run_all(names, mode, litellm_python=litellm_python, litellm_note=litellm_note)
    for result in benchmarks.values():
        result["measured"] = {"date": started.isoformat(timespec="seconds"), "mode": mode}
    if args.merge:
        benchmarks = merge(args.results / "latest.json", benchmarks)
    results = {
        "date": started.isoformat(timespec="seconds"),
        "command": _command(argv),
        "mode": mode,
        # Other work on the machine distorts absolute numbers; this says how busy it was.
        "load_average": {"before": load_before, "after": _common.load_average()},
        "machine": _common.machine(),
        "versions": _common.versions(),
        "benchmarks": benchmarks,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "latest.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"wrote {out.name}")

    _write_report(results, args)
    return 0


def merge(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """``fresh`` results, plus the results file's for every benchmark not in them, each
    keeping when and in which mode it was measured; in the registry's order."""
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return fresh
    kept: dict[str, Any] = {}
    for name, result in earlier.get("benchmarks", {}).items():
        if name not in fresh:
            stamp = {"date": earlier.get("date"), "mode": earlier.get("mode")}
            kept[name] = {**result, "measured": result.get("measured", stamp)}
    merged = {**kept, **fresh}
    order = {name: index for index, name in enumerate(ALL)}
    return dict(sorted(merged.items(), key=lambda item: order.get(item[0], len(order))))


def _write_report(results: dict[str, Any], args: argparse.Namespace) -> None:
    from benchmarks import report

    png = args.results / "busy-burst.png"
    plotted = False
    if not args.no_plot and "busy_burst" in results["benchmarks"]:
        plotted = report.plot_busy_burst(results, png)
        print("wrote busy-burst.png" if plotted else "no plot (matplotlib missing or no data)")
    doc_png = None
    if plotted or png.exists():
        doc_png = Path("benchmarks/results/busy-burst.png")
    args.doc.write_text(report.markdown(results, png=doc_png), encoding="utf-8")
    print(f"wrote {args.doc.name}")


if __name__ == "__main__":
    sys.exit(main())
