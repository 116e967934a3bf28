"""Turn a results dict (``benchmarks/results/latest.json``) into BENCHMARKS.md and the plot.

Every sentence that describes a set-up lives here, next to the numbers it explains, so the
document and the measurements cannot drift apart: BENCHMARKS.md is generated, not edited.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot_busy_burst"]

VARIANT_LABELS = {
    "official": "official `ollama` client (timeout, no fallback)",
    "try-except": "hand-written try/except fallback",
    "wait-budget": "reactive: wait out the first-token budget, then hosted",
    "admission-only": "admission-only emulation (never queue)",
    "litellm-router": "LiteLLM Router, `fallbacks` + `stream_timeout`",
    "litellm-parallel1": "LiteLLM Router + `max_parallel_requests=1`",
    "dsollama-budget": '**dsollama** (`admission="budget"`, default)',
    "dsollama-latency": '**dsollama** latency-first (`admission="latency"`)',
}


def _ms(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "✗"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _ms_fine(seconds: float | None) -> str:
    if seconds is None:
        return "✗"
    return f"{seconds * 1000:.3f} ms"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _mark(met: bool | None) -> str:
    return "–" if met is None else ("met" if met else "**missed**")


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    headers = list(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _p3(stats: dict[str, Any]) -> str:
    return " / ".join(_ms(stats.get(k)) for k in ("p50", "p95", "p99"))


# -- headline ------------------------------------------------------------------------------


def _overhead_worst(b: dict[str, Any], pacing: str) -> tuple[float | None, str]:
    worst, where = None, ""
    for cell, data in b.get(pacing, {}).items():
        for key, value in data["ratio_vs_official"]["dsollama"].items():
            if key.startswith("median") and (worst is None or value > worst):
                worst, where = value, f"{cell}, {key.replace('_', ' ')}"
    return worst, where


def _headline(results: dict[str, Any]) -> list[str]:
    b = results["benchmarks"]
    rows: list[list[str]] = []
    ov = b.get("overhead", {})
    if "paced" in ov:
        for pacing, label in (("paced", "realistic token rate"), ("unpaced", "unpaced double")):
            worst, where = _overhead_worst(ov, pacing)
            rows.append(
                [
                    f"Overhead within 5 % of the official client ({label}, median)",
                    f"worst {_ratio(worst)} ({where})",
                    _mark(worst is not None and worst <= 1.05),
                ]
            )
    burst = b.get("busy_burst", {})
    for n, size in burst.get("sizes", {}).items():
        t = size.get("targets", {})
        if "every_request_answered" in t:
            e = t["every_request_answered"]
            rows.append(
                [
                    f"Busy burst N={n}: every request answered",
                    f"{e['failed']} failed",
                    _mark(e["met"]),
                ]
            )
        if "hosted_at_minimum" in t:
            h = t["hosted_at_minimum"]
            rows.append(
                [
                    f"Busy burst N={n}: hosted share at the minimum (±1)",
                    f"{h['hosted']} hosted, minimum {h['minimum']}",
                    _mark(h["met"]),
                ]
            )
        if "ttft_p99_half_of_reactive" in t:
            r = t["ttft_p99_half_of_reactive"]
            theirs = ", ".join(f"{k} {_ms(v)}" for k, v in r["reactive"].items())
            rows.append(
                [
                    f"Busy burst N={n}: first-token p99 ≤ ½ of the reactive baselines",
                    f"{_ms(r['dsollama'])} vs {theirs} ({_ratio(r['ratio'])})",
                    _mark(r["met"]),
                ]
            )
        if "latency_first_beats_admission_only" in t:
            a = t["latency_first_beats_admission_only"]
            rows.append(
                [
                    f"Busy burst N={n}: latency-first beats admission-only on p99, fewer hosted",
                    f"p99 {_ms(a['p99_latency'])} vs {_ms(a['admission_only_p99_latency'])} "
                    f"({_ratio(a.get('p99_ratio'))}); "
                    f"hosted {a['hosted']} vs {a['admission_only_hosted']}",
                    _mark(a["met"]),
                ]
            )
    for n, size in burst.get("slow_hosted", {}).get("sizes", {}).items():
        a = size.get("targets", {}).get("latency_first_beats_admission_only")
        if a:
            rows.append(
                [
                    f"Busy burst N={n}, slow hosted API: latency-first beats admission-only on "
                    "p99, fewer hosted",
                    f"p99 {_ms(a['p99_latency'])} vs {_ms(a['admission_only_p99_latency'])} "
                    f"({_ratio(a.get('p99_ratio'))}); "
                    f"hosted {a['hosted']} vs {a['admission_only_hosted']}",
                    _mark(a["met"]),
                ]
            )
    capped = burst.get("capped_hosted", {})
    for n, size in capped.get("sizes", {}).items():
        runs = size.get("runs", {})
        ours = runs.get("dsollama-budget", {})
        if "answered" not in ours:
            continue
        others = ", ".join(
            f"{v} {runs[v]['answered']}/{n}"
            for v in ("admission-only", "wait-budget")
            if "answered" in runs.get(v, {})
        )
        limit = capped.get("scenario", {}).get("hosted_concurrency_limit")
        rows.append(
            [
                f"Busy burst N={n}, hosted account capped at {limit} (429 above): every request answered",
                f"dsollama {ours['answered']}/{n} ({others})",
                _mark(ours["failed"] == 0),
            ]
        )
    dead = b.get("dead_daemon", {})
    if "added_ttft_s" in dead:
        added = dead["added_ttft_s"]
        rows.append(
            [
                "Dead daemon: added time to first token (median)",
                f"first call +{_ms_fine(added['first_call_median'])}, breaker open "
                f"+{_ms_fine(added['breaker_open_median'])}",
                "– (no target)",
            ]
        )
    start = b.get("startup", {})
    if "help" in start:
        rows.append(
            [
                "`dsollama --help` under 150 ms",
                _ms(start["help"]["median_s"]),
                _mark(start["help"]["met"]),
            ]
        )
    return ["## Targets", "", *_table(("target", "result", ""), rows), ""]


# -- sections ------------------------------------------------------------------------------


def _overhead(b: dict[str, Any]) -> list[str]:
    if "error" in b:
        return ["## 1. Overhead when all is well", "", f"Failed: `{b['error']}`", ""]
    lines = [
        "## 1. Overhead when all is well",
        "",
        "`dsollama.Client.chat` / `AsyncClient.chat` against `ollama.Client.chat` / "
        "`AsyncClient.chat`, all calling the same Ollama double, which runs in its own "
        "process with enough slots that nothing queues. Calls are interleaved in a rotating "
        "order, so drift hits every client alike. dsollama runs with its defaults, request "
        "log included (to a temporary file); *log off* shows what the log costs. Two pacings:",
        "",
        f"- **realistic**: {b['paced_answer_tokens']} tokens at "
        f"{b['paced_tokens_per_second']:g} tokens/s (a fast local model), "
        f"{b['paced_calls']} calls per client and cell;",
        f"- **unpaced**: the double answers {b['answer_tokens']} tokens as fast as it can, so "
        f"every difference is client CPU — the harshest view; {b['calls']} calls per client "
        "and cell.",
        "",
        "Why the unpaced *whole* cells cost most: for a non-streaming call the official client "
        "asks the daemon for one JSON object, while dsollama always streams from the daemon "
        "and assembles the answer itself — that is how it sees the first token (for the "
        "budget) and every gap between chunks (so a stalled daemon cannot hold a "
        "non-streaming call until the total deadline). Against a real model, whose tokens take "
        "milliseconds each, the difference disappears (the realistic rows).",
        "",
    ]
    for pacing, title in (("paced", "Realistic token rate"), ("unpaced", "Unpaced double")):
        rows = []
        for cell, data in b.get(pacing, {}).items():
            stats = data["stats"]
            ratios = data["ratio_vs_official"]
            stream = cell.endswith("stream")
            rows.append(
                [
                    cell,
                    f"{_ms_fine(stats['official']['median_call_s'])} / "
                    f"{_ms_fine(stats['official']['p99_call_s'])}",
                    f"{_ms_fine(stats['dsollama']['median_call_s'])} / "
                    f"{_ms_fine(stats['dsollama']['p99_call_s'])}",
                    f"{_ratio(ratios['dsollama']['median_call'])} / "
                    f"{_ratio(ratios['dsollama']['p99_call'])}",
                    (
                        f"{_ratio(ratios['dsollama']['median_chunk'])} / "
                        f"{_ratio(ratios['dsollama']['p99_chunk'])}"
                        if stream
                        else "–"
                    ),
                    f"{_ratio(ratios['dsollama-log-off']['median_call'])}",
                ]
            )
        lines += [
            f"### {title}",
            "",
            *_table(
                (
                    "cell",
                    "official median / p99 per call",
                    "dsollama median / p99 per call",
                    "ratio per call (median / p99)",
                    "ratio per chunk (median / p99)",
                    "log off, ratio (median)",
                ),
                rows,
            ),
            "",
        ]
    return lines


def _size_tables(sizes: dict[str, Any], level: str = "###") -> list[str]:
    lines: list[str] = []
    for n, size in sizes.items():
        rows = []
        for variant, r in size["runs"].items():
            label = VARIANT_LABELS.get(variant, variant)
            if "error" in r:
                rows.append([label, "error", "", "", "", ""])
                continue
            rows.append(
                [
                    label,
                    f"{r['answered']}/{r['n']}",
                    _p3(r["latency"]),
                    _p3(r["ttft"]),
                    str(r["served_hosted"]),
                    str(r["sent_hosted"]),
                ]
            )
        lines += [
            f"{level} N = {n} (minimum hosted: {size['min_hosted']})",
            "",
            *_table(
                (
                    "client",
                    "answered",
                    "latency p50 / p95 / p99",
                    "first token p50 / p95 / p99",
                    "served hosted",
                    "sent hosted",
                ),
                rows,
            ),
            "",
        ]
    return lines


def _burst(b: dict[str, Any], png: Path | None) -> list[str]:
    if "error" in b:
        return ["## 2. Busy burst", "", f"Failed: `{b['error']}`", ""]
    sc = b["scenario"]
    lines = [
        "## 2. Busy burst",
        "",
        f"N concurrent streamed chats, sent at once, at a one-slot local daemon plus the hosted "
        f"API. The Ollama double ({sc['slots']} slot, {sc['prompt_seconds']:g} s of prompt "
        f"processing, {sc['answer_tokens']} tokens at {sc['tokens_per_second']:g} tokens/s: "
        f"a {b['service_seconds']:g} s answer, model kept warm) and the DeepSeek double (first "
        f"token after {sc['hosted_first_token_seconds']:g} s, "
        f"{sc['hosted_tokens_per_second']:g} tokens/s) run in their own processes. Each "
        "client runs in a fresh process per burst size, makes one call to each route first "
        "(the idle daemon, then the hosted API: every client has seen both answer once), then "
        f"sends the burst. The first-token budget is {sc['budget']:g} s "
        "everywhere it applies; every request of every client is abandoned (counted failed) "
        f"after {sc['deadline']:g} s. Percentiles are over every request: a failure counts as "
        "never answering (✗).",
        "",
        "The clients:",
        "",
        f"- **official**: `ollama.AsyncClient(timeout={sc['timeout']:g})`, no fallback;",
        "- **try/except**: the same, and on any exception the `openai` client to the hosted "
        "API — it only falls back on errors, and silent queueing raises none until the timeout;",
        f"- **reactive (wait out the budget)**: waits up to {sc['budget']:g} s for the local "
        "first token, then cancels and asks the hosted API;",
        "- **admission-only emulation**: never queues: with the local slot taken, the request "
        "goes hosted at once (what admission-only routing such as LiteLLM's "
        "`max_parallel_requests` is usually described as doing);",
        "- **LiteLLM's Router** (when installed, see below): an `ollama_chat/` and a "
        "`deepseek/` deployment, `fallbacks`, `stream_timeout` = the budget, `num_retries=0`; "
        "and the same with `max_parallel_requests=1` on the local deployment;",
        '- **dsollama** `AsyncClient` with `admission="budget"` (the default: stay local '
        'while the predicted first token fits the budget) and `admission="latency"` (go '
        "wherever the first token is predicted sooner).",
        "",
        f"Minimum hosted share: one slot gives a first token within the budget to "
        f"floor(({sc['budget']:g} − {sc['prompt_seconds']:g}) / {b['service_seconds']:g}) + 1 "
        f"= {b['local_capacity']} requests of a burst, so at least N − {b['local_capacity']} "
        "must go hosted. *Served hosted* is what the clients report; *sent hosted* is what "
        "reached the hosted double (retries and abandoned tries included).",
        "",
    ]
    lines += _size_tables(b.get("sizes", {}))
    slow = b.get("slow_hosted")
    if slow:
        lines += [
            "### When the hosted API is slower than a local answer",
            "",
            f"The same burst with the hosted first token after "
            f"{slow['scenario']['hosted_first_token_seconds']:g} s instead of "
            f"{sc['hosted_first_token_seconds']:g} s — later than a whole local answer takes. "
            "Only here can routing by predicted first token (latency-first) keep more "
            "requests local than admission-only routing; with a faster hosted API both send "
            "everything past the free slot hosted.",
            "",
            *_size_tables(slow.get("sizes", {}), "####"),
        ]
    capped = b.get("capped_hosted")
    if capped:
        lines += [
            "### When the hosted account has a concurrency cap",
            "",
            f"The same burst against a hosted API that accepts at most "
            f"{capped['scenario']['hosted_concurrency_limit']} requests at once and answers "
            "429 above that, stating its limit — as DeepSeek does per account (and lower when "
            "the balance is low). No client is told the cap. dsollama reads it from the first "
            "429 and from then on keeps calls local instead of provoking more; the other "
            "clients keep sending.",
            "",
            *_size_tables(capped.get("sizes", {}), "####"),
        ]
    if png is not None:
        lines += [
            f"![Busy-burst latency distribution]({png.as_posix()})",
            "",
        ]
    return lines


def _litellm(b: dict[str, Any]) -> list[str]:
    info = b.get("litellm", {})
    versions = {
        r.get("litellm_version")
        for size in b.get("sizes", {}).values()
        for r in size["runs"].values()
        if r.get("litellm_version")
    }
    lines = ["### LiteLLM", ""]
    if info.get("used"):
        lines += [
            f"LiteLLM {', '.join(sorted(v for v in versions if v)) or '(version unknown)'} ran "
            "from a throwaway virtualenv in the system's temporary folder (never in the "
            "project's environment, never a dependency), pinned to a release from before both "
            "2026 compromises of litellm on PyPI (1.82.7/1.82.8 in March; a later advisory "
            "names 1.107.0), "
            "installed from wheels only, run with an environment holding nothing but `PATH`, "
            "and talking only to the doubles on 127.0.0.1 (model cost map loaded locally).",
            "",
            "What it showed: with `stream_timeout` it falls back once the budget has passed, "
            "like the reactive client. `max_parallel_requests=1` is a semaphore inside the "
            "Router: excess requests wait for it in the client instead of going to the "
            "fallback, so LiteLLM has no admission-only routing to compare with — the "
            "admission-only row is an emulation, labelled as such. Its time to first token "
            "grows with the burst size well beyond the other clients' (not profiled here).",
            "",
        ]
    else:
        lines += [
            f"LiteLLM's Router was {info.get('note') or 'not run'}; the reactive and "
            "admission-only rows are emulations, labelled as such.",
            "",
        ]
    return lines


def _dead(b: dict[str, Any]) -> list[str]:
    if "error" in b:
        return ["## 3. Dead daemon", "", f"Failed: `{b['error']}`", ""]
    s = b["stats"]
    added = b["added_ttft_s"]
    return [
        "## 3. Dead daemon",
        "",
        "Nothing listens on the local daemon's port (connection refused at once, as when "
        "Ollama is not running); the DeepSeek double runs in its own process, unpaced. "
        "Streamed chats; time to the first token. *First call*: a fresh `dsollama.Client` per "
        "call, which tries the daemon, is refused and falls back, against a fresh `openai` "
        "client per call. *Breaker open*: later calls on one client whose breaker opened on "
        f"the refusal, against a reused `openai` client. {b['calls']} calls each, interleaved.",
        "",
        *_table(
            ("case", "direct to hosted, median / p99", "dsollama, median / p99", "added, median"),
            [
                [
                    "first call",
                    f"{_ms_fine(s['direct']['median_s'])} / {_ms_fine(s['direct']['p99_s'])}",
                    f"{_ms_fine(s['first_call']['median_s'])} / "
                    f"{_ms_fine(s['first_call']['p99_s'])}",
                    f"+{_ms_fine(added['first_call_median'])}",
                ],
                [
                    "breaker open",
                    f"{_ms_fine(s['direct_reused']['median_s'])} / "
                    f"{_ms_fine(s['direct_reused']['p99_s'])}",
                    f"{_ms_fine(s['breaker_open']['median_s'])} / "
                    f"{_ms_fine(s['breaker_open']['p99_s'])}",
                    f"+{_ms_fine(added['breaker_open_median'])}",
                ],
            ],
        ),
        "",
    ]


def _startup(b: dict[str, Any]) -> list[str]:
    if "error" in b:
        return ["## 4. Start-up", "", f"Failed: `{b['error']}`", ""]
    rows = [
        [
            name,
            _ms_fine(data["median_s"]),
            f"{data['added_mib']:.1f} MiB",
            str(data["modules"]),
        ]
        for name, data in b["imports"].items()
        if name != "bare"
    ]
    return [
        "## 4. Start-up",
        "",
        f"Fresh interpreters, median of {b['repeat']}. `dsollama --help`: "
        f"**{_ms(b['help']['median_s'])}** wall time (min {_ms(b['help']['min_s'])}; the "
        f"interpreter alone takes {_ms(b['python_bare_s'])}); target under 150 ms: "
        f"{_mark(b['help']['met'])}. `import dsollama` loads names lazily; "
        "`from dsollama import Client` is what using it costs.",
        "",
        *_table(("statement", "import time", "peak memory added", "modules loaded"), rows),
        "",
    ]


def _flat(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _flat(value, f"{prefix}{key}.")
    elif isinstance(data, (list, tuple)):
        out.append((prefix.rstrip("."), ", ".join(str(v) for v in data)))
    else:
        out.append((prefix.rstrip("."), f"{data:,.4g}" if isinstance(data, float) else str(data)))
    return out


def _serve(b: dict[str, Any]) -> list[str]:
    lines = ["## 5. serve", ""]
    if "skipped" in b:
        return [*lines, f"Not run: {b['skipped']}.", ""]
    if "error" in b:
        return [*lines, f"Failed: `{b['error']}`", ""]
    description = b.get("description") or b.get("setup")
    if isinstance(description, str):
        lines += [description, ""]
    rows = [
        [key, value]
        for key, value in _flat(b)
        if key not in ("description", "setup", "wall_seconds", "traceback")
    ]
    return [*lines, *_table(("measure", "value"), rows), ""]


def _doubles(b: dict[str, Any]) -> list[str]:
    if "error" in b:
        return ["## 6. The doubles' capacity", "", f"Failed: `{b['error']}`", ""]
    o, d = b["ollama"], b["deepseek"]
    return [
        "## 6. The doubles' capacity",
        "",
        "So that no benchmark measures the doubles: each double in its own process, loaded "
        "from separate processes over raw keep-alive sockets (`benchmarks/bench_doubles_*.py`).",
        "",
        *_table(
            ("double", "small requests/s", "short chats/s", "streamed chunks/s"),
            [
                [
                    "Ollama",
                    f"{o['version_requests_per_second']:,}",
                    f"{o['chat_requests_per_second']:,}",
                    f"{o['stream_chunks_per_second']:,}",
                ],
                [
                    "DeepSeek",
                    f"{d['models_requests_per_second']:,}",
                    f"{d['chat_requests_per_second']:,}",
                    f"{d['streamed_chunks_per_second']:,}",
                ],
            ],
        ),
        "",
    ]


def _load_note(results: dict[str, Any]) -> str:
    load = results.get("load_average") or {}
    if load.get("before") is None:
        return "Load average: not available on this OS."
    return (
        f"1-minute load average: {load['before']} when the run started, {load.get('after')} "
        "when it ended (other work on the machine inflates absolute times, less so ratios)."
    )


def markdown(results: dict[str, Any], *, png: Path | None = None) -> str:
    """BENCHMARKS.md for ``results``."""
    m = results["machine"]
    v = results["versions"]
    b = results["benchmarks"]
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m benchmarks` (benchmarks/report.py): edit those, "
        "not this file. -->",
        "",
        f"Latest run: {results['date']}, `{results['command']}` ({results['mode']} mode).",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB RAM, {m['os']}, "
        f"{m['implementation']} {m['python']}. Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val)
        + ".",
        "",
        _load_note(results),
        "",
        "Comparisons are ratios (or differences) measured in the same run; absolute times "
        "are from the machine above. The doubles from `dsollama.testing` stand in for Ollama "
        "and the DeepSeek API, each in its own process wherever sharing an interpreter with "
        "the client under test would distort the measurement; section 6 shows they are far "
        "from their limits. Everything talks only to 127.0.0.1.",
        "",
        "Run them all: `pip install -e '.[bench,test]'` then `python -m benchmarks "
        "--with-litellm` (about ten minutes on 2 CPUs; `--quick` for a shorter run, "
        "`--only busy_burst,startup` to pick). Results: `benchmarks/results/latest.json`.",
        "",
        *_headline(results),
    ]
    if "overhead" in b:
        lines += _overhead(b["overhead"])
    if "busy_burst" in b:
        lines += _burst(b["busy_burst"], png)
        if "error" not in b["busy_burst"]:
            lines += _litellm(b["busy_burst"])
    if "dead_daemon" in b:
        lines += _dead(b["dead_daemon"])
    if "startup" in b:
        lines += _startup(b["startup"])
    if "serve" in b:
        lines += _serve(b["serve"])
    if "doubles" in b:
        lines += _doubles(b["doubles"])
    return "\n".join(lines).rstrip() + "\n"


# -- the plot -------------------------------------------------------------------------------


def plot_busy_burst(results: dict[str, Any], path: Path) -> bool:
    """ECDFs of first-token time and latency at the largest burst; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    burst = results["benchmarks"].get("busy_burst", {})
    sizes = burst.get("sizes", {})
    if not sizes:
        return False
    n = max(sizes, key=int)
    runs = sizes[n]["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), sharey=True)
    for variant, r in runs.items():
        if "error" in r:
            continue
        label = VARIANT_LABELS.get(variant, variant).replace("**", "").replace("`", "")
        if r["failed"]:
            label += f" ({r['failed']} failed)"
        ours = variant.startswith("dsollama")
        for axis, key in zip(axes, ("ttft_values", "latency_values"), strict=True):
            values = sorted(v for v in r[key] if v is not None)
            if not values:
                continue
            total = r["n"]
            ys = [(i + 1) / total for i in range(len(values))]
            axis.step(
                values,
                ys,
                where="post",
                label=label,
                linewidth=2.6 if ours else 1.4,
                linestyle="-" if ours else "--",
            )
    m = results["machine"]
    axes[0].set_title(f"Time to first token, N = {n}")
    axes[1].set_title(f"Latency (last chunk), N = {n}")
    for axis in axes:
        axis.set_xlabel(f"seconds ({m['cpus']} CPUs, {m['cpu']})")
        axis.set_xscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("share of requests answered by then")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(
        "Busy burst: one-slot local daemon + hosted API (higher and further left is better)"
    )
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
