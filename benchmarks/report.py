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


UNPACED_TARGET = 1.2
"Library overhead, unpaced double: dsollama's median call at most this × the official's."
DEAD_FIRST_CALL_S = 0.005
DEAD_BREAKER_OPEN_S = 0.0005


def _unpaced_target(unpaced: dict[str, Any]) -> list[str]:
    """The unpaced target row: every cell's ratio, and the bare stream's beside it."""
    ratios = {
        cell: data["ratio_vs_official"]["dsollama"]["median_call"] for cell, data in unpaced.items()
    }
    result = ", ".join(f"{cell} {_ratio(r)}" for cell, r in ratios.items())
    floors = {
        cell: data["ratio_vs_official"]["bare-stream"]["median_call"]
        for cell, data in unpaced.items()
        if "bare-stream" in data["ratio_vs_official"]
    }
    if floors:
        result += " (a bare stream of the same answer: " + ", ".join(
            f"{_ratio(r)}" for r in floors.values()
        )
        result += ")"
    return [
        f"Library overhead, unpaced double: ≤ {UNPACED_TARGET:g}× the official client per "
        "call in every cell (median, request log on)",
        result,
        _mark(all(r <= UNPACED_TARGET for r in ratios.values())),
    ]


def _headline(results: dict[str, Any]) -> list[str]:
    b = results["benchmarks"]
    rows: list[list[str]] = []
    ov = b.get("overhead", {})
    if "paced" in ov:
        worst, where = _overhead_worst(ov, "paced")
        rows.append(
            [
                "Overhead within 5 % of the official client (realistic token rate, median)",
                f"worst {_ratio(worst)} ({where})",
                _mark(worst is not None and worst <= 1.05),
            ]
        )
        rows.append(_unpaced_target(ov["unpaced"]))
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
    rows += _shared_targets(b)
    dead = b.get("dead_daemon", {})
    if "added_ttft_s" in dead:
        added = dead["added_ttft_s"]
        rows.append(
            [
                "Dead daemon: ≤ 5 ms added to the first call's first token, ≤ 0.5 ms with "
                "the breaker open (median)",
                f"first call +{_ms_fine(added['first_call_median'])}, breaker open "
                f"+{_ms_fine(added['breaker_open_median'])}"
                + (
                    f" (async clients +{_ms_fine(added['async_breaker_open_median'])})"
                    if "async_breaker_open_median" in added
                    else ""
                ),
                _mark(
                    added["first_call_median"] <= DEAD_FIRST_CALL_S
                    and added["breaker_open_median"] <= DEAD_BREAKER_OPEN_S
                ),
            ]
        )
    rows += _serve_targets(b)
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


def _within(name: str, c: dict[str, Any], base: dict[str, Any]) -> str:
    versus = c["versus_baseline"]
    return (
        f"{name}: p99 {_ms(c['ttft']['p99'])} vs {_ms(base['ttft']['p99'])} "
        f"({_ratio(versus['ttft_p99'])}), hosted {_per_burst(c['hosted_per_burst'])} vs "
        f"{_per_burst(base['hosted_per_burst'])} per burst"
    )


def _shared_targets(b: dict[str, Any]) -> list[list[str]]:
    """The target rows of the shared-capacity benchmarks (sections 6 to 9)."""
    rows: list[list[str]] = []
    shared = b.get("shared_burst", {})
    configs = shared.get("configs", {})
    base = configs.get(shared.get("baseline", ""))
    for name, c in configs.items():
        if base is None or c["store"] != "redis" or c["processes"] == 1:
            continue
        split = f"{c['processes']} × {c['per_process']}"
        without = configs.get(name.replace("-redis", "-memory"))
        result = _within("Redis", c, base)
        if without is not None:
            result += (
                f"; in-process store: p99 {_ms(without['ttft']['p99'])} "
                f"({_ratio(without['versus_baseline']['ttft_p99'])}), "
                f"{_per_burst(without['waited_per_burst'])} waited the budget out per burst"
            )
        rows.append(
            [
                f"Shared store, {split} processes: first-token p99 and hosted share within "
                f"one request of {base['processes']} × {base['per_process']}",
                result,
                _mark(c["versus_baseline"]["within_one_request"]),
            ]
        )
    vllm = b.get("vllm_burst", {}).get("configs", {})
    for name, c in vllm.items():
        own = vllm.get(name.replace("-metrics", "-own"))
        if c["source"] != "metrics" or c["processes"] == 1 or own is None:
            continue
        shared_count = vllm.get(name.replace("-metrics", "-shared"))
        result = (
            f"p99 {_ms(c['ttft']['p99'])} vs {_ms(own['ttft']['p99'])} "
            f"({_ratio(_safe_ratio(c['ttft']['p99'], own['ttft']['p99']))}); hosted "
            f"{_per_burst(c['hosted_per_burst'])} vs {_per_burst(own['hosted_per_burst'])}, "
            f"waited {_per_burst(c['waited_per_burst'])} vs {_per_burst(own['waited_per_burst'])} "
            "per burst"
        )
        if shared_count is not None:
            result += f"; shared count: p99 {_ms(shared_count['ttft']['p99'])}"
        rows.append(
            [
                f"vLLM route, {_processes(c['processes'])}: admission from server metrics vs "
                "own count",
                result,
                "– (no target)",
            ]
        )
    replicas = b.get("serve_replicas", {})
    configs = replicas.get("configs", {})
    base = configs.get(replicas.get("baseline", ""))
    c = configs.get("2-serves-redis")
    if base is not None and c is not None:
        rows.append(
            [
                "Two serve replicas sharing Redis: first-token p99 and hosted share within one "
                "request of one serve",
                _within("two serves", c, base),
                _mark(c["versus_baseline"]["within_one_request"]),
            ]
        )
    state = b.get("state", {})
    if "added_s" in state:
        lease, full = state["added_s"]["lease_cycle_s"], state["added_s"]["full_call_s"]
        rows.append(
            [
                f"Cost of sharing (Redis on loopback): added per call ≤ "
                f"{state['target_p50_s'] * 1000:g} ms p50",
                f"lease cycle +{_ms_fine(lease['p50'])} p50, +{_ms_fine(lease['p99'])} p99; "
                f"full call +{_ms_fine(full['p50'])} p50, +{_ms_fine(full['p99'])} p99",
                _mark(state["target_met"]),
            ]
        )
    return rows


def _safe_ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


# -- sections ------------------------------------------------------------------------------


def _not_measured(title: str, b: dict[str, Any]) -> list[str] | None:
    """A section whose benchmark was skipped or failed: its title and why; else None."""
    if "skipped" in b:
        return [title, "", f"Not run: {b['skipped']}.", ""]
    if "error" in b:
        return [title, "", f"Failed: `{b['error']}`", ""]
    return None


def _overhead(b: dict[str, Any]) -> list[str]:
    if (unmeasured := _not_measured("## 1. Overhead when all is well", b)) is not None:
        return unmeasured
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
        "*Bare stream* is that floor: httpx (sync or async, as the cell) posting the same "
        "request with `stream: true` and reading the answer's bytes to the end, nothing "
        "parsed or built — what any client that streams every call pays before doing "
        "anything. The sync client adds a hop to its private event-loop thread and back "
        "(one implementation for both clients, calls from inside a running loop).",
        "",
        "Profiles of dsollama in each unpaced cell, before and after the hot-path work: "
        "`benchmarks/profiles/` (`python benchmarks/bench_overhead.py --profile "
        "benchmarks/profiles --label NAME`).",
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
                    _ratio(ratios.get("bare-stream", {}).get("median_call")),
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
                    "bare stream, ratio (median)",
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
    if (unmeasured := _not_measured("## 2. Busy burst", b)) is not None:
        return unmeasured
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
    if (unmeasured := _not_measured("## 3. Dead daemon", b)) is not None:
        return unmeasured
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
        f"the refusal, against a reused `openai` client. {b['calls']} calls each for the first "
        f"call, {b.get('reused_calls', b['calls'])} each with the breaker open, interleaved.",
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
                *(
                    [
                        [
                            "breaker open, async clients",
                            f"{_ms_fine(s['async_direct_reused']['median_s'])} / "
                            f"{_ms_fine(s['async_direct_reused']['p99_s'])}",
                            f"{_ms_fine(s['async_breaker_open']['median_s'])} / "
                            f"{_ms_fine(s['async_breaker_open']['p99_s'])}",
                            f"+{_ms_fine(added['async_breaker_open_median'])}",
                        ]
                    ]
                    if "async_breaker_open" in s
                    else []
                ),
            ],
        ),
        "",
        "The sync rows are the target's. The async row is the same pair through "
        "`openai.AsyncOpenAI` and `dsollama.AsyncClient`: the difference between the two "
        "breaker-open rows is the sync client's hand-over from its private event loop "
        "thread to the caller's thread.",
        "",
    ]


def _startup(b: dict[str, Any]) -> list[str]:
    if (unmeasured := _not_measured("## 4. Start-up", b)) is not None:
        return unmeasured
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
    if (unmeasured := _not_measured("## 5. serve", b)) is not None:
        return unmeasured
    lines = ["## 5. serve", ""]
    if "cells" not in b:  # an older results file: every number as it was written
        rows = [
            [key, value]
            for key, value in _flat(b)
            if key not in ("description", "setup", "wall_seconds", "traceback", "measured")
        ]
        return [*lines, *_table(("measure", "value"), rows), ""]
    lines += [
        "The same chats straight to the unpaced Ollama double and through `dsollama serve` "
        "(defaults, request log on) in front of it, each in its own process, over raw "
        "keep-alive HTTP/1.1 sockets (`benchmarks/bench_serve.py`). Latency: one connection, "
        "one request after another, "
        f"{b['short_tokens']}-token answers; *added* is serve minus direct at the same "
        f"percentile. Per chunk: the same streams at {b['short_tokens']} and "
        f"{b['long_tokens']} tokens, serve's extra slope over the double's. Throughput: "
        f"{b['concurrency']} connections from {b['client_processes']} client processes, "
        f"{b['seconds']:g} s; CPU per answer from /proc. All of it on {b['cpus']} CPUs "
        "shared by the double, serve and the load generators.",
        "",
    ]
    rows = []
    for c in b["cells"].values():
        d, s, a = c["direct"], c["serve"], c["added_ms"]
        rows.append(
            [
                f"`{c['path']}` {'streamed' if c['stream'] else 'whole'}",
                f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f}",
                f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}",
                f"+{a['p50']:.2f} / +{a['p99']:.2f}",
                f"+{a['first_chunk_p50']:.2f}" if "first_chunk_p50" in a else "–",
                f"{a['per_chunk']:.4f}" if "per_chunk" in a else "–",
                f"{d['requests_per_second']:,.0f} / {s['requests_per_second']:,.0f}",
                _ratio(c.get("throughput_ratio")),
                _cpu_per_answer(s),
            ]
        )
    lines += _table(
        (
            "cell",
            "direct p50 / p99 ms",
            "serve p50 / p99 ms",
            "added p50 / p99 ms",
            "added to first chunk (p50 ms)",
            "added per chunk (ms)",
            "answers/s direct / serve",
            "throughput ratio",
            "serve CPU ms per answer",
        ),
        rows,
    )
    library = b.get("library", {})
    if "whole" in library:
        lines += [
            "",
            "For reference, the same small chats through `dsollama.AsyncClient` in one "
            "process, no serve (the router's share of serve's cost): whole "
            f"p50 {library['whole']['p50_ms']:.2f} ms / p99 {library['whole']['p99_ms']:.2f} ms, "
            f"streamed p50 {library['stream']['p50_ms']:.2f} ms / p99 "
            f"{library['stream']['p99_ms']:.2f} ms.",
        ]
    workers = b.get("workers", {})
    if "configs" in workers:
        labels = {
            "1-memory": "one process, in-process store",
            "1-redis": "one process, Redis store",
            "2-redis": "`--workers 2`, Redis store",
        }
        lines += [
            "",
            "### `--workers`",
            "",
            "Non-streaming `/api/chat` at the same concurrency through one serve with its "
            "in-process store, one with `--state redis://…` and `--workers 2` with the same "
            "store (workers need a shared store: each process admits against the same "
            f"count). Two workers vs one on Redis: **{_ratio(workers.get('scaling_2_vs_1'))}**.",
            "",
            *_table(
                ("configuration", "answers/s", "serve CPU ms per answer", "machine busy"),
                [
                    [
                        labels.get(name, name),
                        f"{c['requests_per_second']:,.0f}",
                        _cpu_per_answer(c),
                        f"{c['machine_busy']:.0%}" if "machine_busy" in c else "–",
                    ]
                    for name, c in workers["configs"].items()
                ],
            ),
        ]
    elif "skipped" in workers:
        lines += ["", f"`--workers`: not run ({workers['skipped']})."]
    return [*lines, ""]


def _cpu_per_answer(c: dict[str, Any]) -> str:
    value = c.get("serve_cpu_ms_per_request")
    return f"{value:.2f}" if isinstance(value, (int, float)) else "–"


def _serve_memory(b: dict[str, Any]) -> list[str]:
    if (unmeasured := _not_measured("### serve's memory with traffic", b)) is not None:
        return unmeasured
    lines = ["### serve's memory with traffic", ""]
    answers = b.get("answers", {})
    unexpected = {k: v for k, v in answers.items() if k != "expected"}
    lines += [
        f"One `dsollama serve` (request log on) in front of the unpaced double; "
        f"{b['requests']:,} mixed requests over {b['connections']} keep-alive connections, "
        f"each replaced every {b['requests_per_connection']} requests: "
        + ", ".join(b.get("kinds", []))
        + " (`benchmarks/bench_serve_memory.py`). Resident memory after the first "
        f"{b['first']:,} and after all of them: ratio **{_ratio(b.get('ratio'))}** (target "
        f"≤ {b['target_ratio']:g}×); "
        + (
            "every answer had its expected status."
            if not unexpected
            else "unexpected answers: " + ", ".join(f"{k} ×{v}" for k, v in unexpected.items())
        ),
        "",
        *_table(
            ("after requests", "RSS (MiB)"),
            [[f"{r['requests']:,}", str(r["rss_mib"])] for r in b.get("readings", [])],
        ),
        "",
    ]
    return lines


WORKERS_SCALING = 1.5
"What two workers must answer, relative to one, for serve to be said to scale."
SATURATED = 0.9
"A machine this busy with one worker has no core for a second: scaling is not measurable."


def _serve_targets(b: dict[str, Any]) -> list[list[str]]:
    """The target rows of section 5: what serve adds, its throughput and its memory."""
    rows: list[list[str]] = []
    targets = b.get("serve", {}).get("targets")
    if targets:
        cells = b["serve"]["cells"]
        whole = targets["added_whole"]
        rows.append(
            [
                "serve adds ≤ 1.0 ms p50 and ≤ 2 ms p99 to a small non-streaming chat (worst "
                "dialect)",
                f"+{whole['p50_ms']:.2f} ms p50, +{whole['p99_ms']:.2f} ms p99",
                _mark(whole["met"]),
            ]
        )
        rows.append(
            [
                "serve adds ≤ 0.05 ms per streamed chunk (worst dialect)",
                f"{targets['per_chunk']['ms']:.4f} ms",
                _mark(targets["per_chunk"]["met"]),
            ]
        )
        ratios = ", ".join(
            f"{c['path']} {_ratio(c.get('throughput_ratio'))}"
            for c in cells.values()
            if not c["stream"]
        )
        rows.append(
            [
                "serve's throughput ≥ 0.7× direct at concurrency "
                f"{b['serve']['concurrency']}, one process (non-streaming)",
                ratios,
                _mark(targets["throughput"]["met"]),
            ]
        )
        if "workers" in targets:
            scaling = targets["workers"]["scaling_2_vs_1"]
            busy = targets["workers"].get("one_worker_machine_busy")
            scaled = scaling is not None and scaling >= WORKERS_SCALING
            result = f"{_ratio(scaling)} the answers per second"
            mark = _mark(scaled)
            if busy is not None:
                result += f"; with one worker the machine was {busy:.0%} busy"
                if not scaled and busy >= SATURATED:
                    # Not a miss of serve's: the second worker had no core to run on.
                    mark = "– (no core to spare here)"
            rows.append(
                [
                    "serve scales with `--workers N` (shared Redis store): 2 workers answer "
                    "≥ 1.5× what 1 does",
                    result,
                    mark,
                ]
            )
    memory = b.get("serve_memory", {})
    if memory.get("ratio") is not None:
        rows.append(
            [
                f"serve's RSS after {memory['requests']:,} mixed requests within 10 % of "
                f"after {memory['first']:,}",
                f"{_ratio(memory['ratio'])}",
                _mark(memory["met"]),
            ]
        )
    return rows


def _doubles(b: dict[str, Any]) -> list[str]:
    if (unmeasured := _not_measured("## 10. The doubles' capacity", b)) is not None:
        return unmeasured
    o, d = b["ollama"], b["deepseek"]
    return [
        "## 10. The doubles' capacity",
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


# -- shared capacity ---------------------------------------------------------------------------

SHARED_NOTE = (
    "*Within one request* of the baseline: hosted share within one request per burst, "
    "first-token p99 at most 1.25× the baseline's (a request that waits the 2 s budget out "
    "gets its first token after about 2.4 s, over twice a p99 of about 1.1 s), every "
    "request answered. *Waited*: queued on the private route until the first-token budget "
    "passed, then moved hosted. *Store fallbacks*: processes whose shared store did not "
    "answer in time during a burst and routed on their own view from then on."
)


def _per_burst(value: float) -> str:
    return f"{value:g}"


def _shared_rows(configs: dict[str, Any], label: Any, baseline: str) -> list[list[str]]:
    rows = []
    for name, c in configs.items():
        versus = c.get("versus_baseline", {})
        rows.append(
            [
                label(name, c) + (" (baseline)" if name == baseline else ""),
                f"{c['answered']}/{c['n']}",
                f"{_ms(c['ttft']['p50'])} / {_ms(c['ttft']['p99'])}",
                _ratio(versus.get("ttft_p99")),
                _per_burst(c["hosted_per_burst"]),
                _per_burst(c["waited_per_burst"]),
                str(c.get("store_fallbacks", 0)),
            ]
        )
    return rows


_SHARED_HEADERS = (
    "configuration",
    "answered",
    "first token p50 / p99",
    "p99 vs baseline",
    "hosted per burst",
    "waited per burst",
    "store fallbacks",
)


def _counts(values: Iterable[int]) -> str:
    """``"1, 3 or 6"``."""
    ordered = [str(v) for v in sorted(set(values))]
    return " or ".join([", ".join(ordered[:-1]), ordered[-1]] if len(ordered) > 1 else ordered)


def _processes(count: int) -> str:
    return f"{count} process{'es' if count > 1 else ''}"


def _shared_burst(b: dict[str, Any]) -> list[str]:
    title = "## 6. Shared capacity: one daemon, several processes"
    if (unmeasured := _not_measured(title, b)) is not None:
        return unmeasured
    sc = b["scenario"]

    def label(name: str, c: dict[str, Any]) -> str:
        store = "Redis store" if c["store"] == "redis" else "in-process store"
        return f"{c['processes']} × {c['per_process']}, {store}"

    return [
        title,
        "",
        f"The busy burst of section 2 ({b['requests_per_burst']} streamed chats at one instant "
        f"at the one-slot Ollama double, {b['service_seconds']:g} s per answer, first-token "
        f"budget {sc['budget']:g} s, the DeepSeek double as the hosted API), sent by "
        f"{_counts(c['processes'] for c in b['configs'].values())} processes, each a fresh "
        "interpreter with its own `dsollama.AsyncClient` "
        "(`benchmarks/bench_shared_burst.py`). Every process first makes one call on the idle "
        "daemon (one process at a time: they all start from the same estimates); then one "
        "barrier releases every process's share at once. *In-process store*: each process "
        "counts only its own requests (the default). *Redis store*: `state_url` names one "
        "`redis-server` on loopback, so every process admits against the same count. "
        f"{b['rounds']} burst(s) per configuration, interleaved; percentiles over every "
        "request of them, counts per burst. Baseline: one process sending the whole burst, "
        "in-process store.",
        "",
        SHARED_NOTE,
        "",
        *_table(_SHARED_HEADERS, _shared_rows(b["configs"], label, b["baseline"])),
        "",
    ]


def _vllm_burst(b: dict[str, Any]) -> list[str]:
    title = "## 7. A vLLM route with capacity K: server metrics vs the process's own count"
    if (unmeasured := _not_measured(title, b)) is not None:
        return unmeasured
    sc = b["scenario"]
    sources = {
        "own": 'own count (`load_signal = "none"`)',
        "metrics": 'server metrics (`load_signal = "vllm"`)',
        "shared": "own count shared through Redis (`state_url`)",
    }

    def label(name: str, c: dict[str, Any]) -> str:
        return f"{_processes(c['processes'])} × {c['per_process']}, {sources[c['source']]}"

    lines = [
        title,
        "",
        "Routes as data: a `vllm` preset route to the vLLM double "
        f"(`max_num_seqs` = {sc['capacity']}: {sc['capacity']} requests generate at once, the "
        f"rest wait silently; {b['service_seconds']:g} s per answer), declared private with "
        f"`capacity = {sc['capacity']}`, and the DeepSeek double as the hosted route "
        f"(`benchmarks/bench_vllm_burst.py`). First-token budget {sc['budget']:g} s: the route "
        f"gives a first token within it to {b['local_capacity']} requests of a burst, so at "
        f"least {b['min_hosted']} of {b['requests_per_burst']} must go hosted. One process "
        "sends the burst, or two send half each, trained and released as in section 6. "
        "*Server metrics*: each process also reads the server's "
        "`vllm:num_requests_running` / `waiting` (a reading is reused for up to 0.25 s). "
        "A reading is a snapshot: processes that read it at the same instant see none of "
        "each other's requests, which only a shared count (check-and-take in one store) "
        "accounts for. "
        f"{b['rounds']} burst(s) per configuration. Baseline: one process, own count.",
        "",
        *_table(_SHARED_HEADERS, _shared_rows(b["configs"], label, b["baseline"])),
        "",
    ]
    if b.get("note"):
        lines += [f"Shared count not run: {b['note']}.", ""]
    return lines


def _serve_replicas(b: dict[str, Any]) -> list[str]:
    title = "## 8. serve replicas sharing Redis"
    if (unmeasured := _not_measured(title, b)) is not None:
        return unmeasured
    sc = b["scenario"]
    labels = {
        "1-serve": "one serve",
        "2-serves-redis": "two serves, Redis store",
        "2-serves-own": "two serves, each its own view",
    }
    return [
        title,
        "",
        f"The same burst ({b['requests_per_burst']} streamed chats at one instant, one-slot "
        f"daemon, {b['service_seconds']:g} s per answer, first-token budget {sc['budget']:g} s) "
        "sent by a plain `httpx` client to `POST /api/chat`, round-robin over the replicas "
        "(`benchmarks/bench_serve_replicas.py`). Each replica is a `python -m dsollama serve` "
        "process configured through the environment (`DSOLLAMA_STATE_URL` for the shared "
        "store), started fresh for every burst and trained with one call, one replica at a "
        f"time. {b['rounds']} burst(s) per configuration. Baseline: one serve.",
        "",
        *_table(
            _SHARED_HEADERS,
            _shared_rows(b["configs"], lambda name, c: labels.get(name, name), b["baseline"]),
        ),
        "",
    ]


def _state(b: dict[str, Any]) -> list[str]:
    title = "## 9. Cost of sharing: the state store per call"
    if (unmeasured := _not_measured(title, b)) is not None:
        return unmeasured
    rows = []
    for store, label in (
        ("memory", "in-process (`MemoryStore`, the default)"),
        ("redis", "Redis, every operation one round trip (`RedisStore`)"),
        ("shared", 'Redis as `state_url = "redis://…"` gives it (`SharedStore`)'),
    ):
        cells = b.get(store, {})
        row = [label]
        for kind in ("lease_cycle_s", "full_call_s"):
            cell = cells.get(kind, {})
            row.append(f"{_ms_fine(cell.get('p50'))} / {_ms_fine(cell.get('p99'))}")
        rows.append(row)
    added = b.get("added_s", {})
    rows.append(
        [
            "**added by sharing** (shared − in-process)",
            *(
                f"+{_ms_fine(added.get(kind, {}).get('p50'))} / "
                f"+{_ms_fine(added.get(kind, {}).get('p99'))}"
                for kind in ("lease_cycle_s", "full_call_s")
            ),
        ]
    )
    burst = b.get("shared", {}).get("burst_s", {})
    trip = b.get("redis", {}).get("round_trip_s")
    load = b.get("load_average") or {}
    lines = [
        title,
        "",
        "What a call pays the state store on the healthy path, one call at a time, each "
        "store in turn (`benchmarks/bench_state.py`, Redis on loopback, started by the "
        "benchmark). *Lease cycle*: admit, first token, finish — what every call does, three "
        "round trips to Redis. *Full call*: the same plus asking and telling a breaker, which "
        "the router does only when a breaker is not known closed (it believes a closed one "
        f"for 0.5 s). {b.get('memory', {}).get('lease_cycle_s', {}).get('calls', '?')} calls "
        "per store and kind.",
        "",
        *_table(("store", "lease cycle p50 / p99", "full call p50 / p99"), rows),
        "",
    ]
    if trip:
        lines += [
            f"One bare PING to the same Redis, timed between them: {_ms_fine(trip.get('p50'))} "
            f"/ {_ms_fine(trip.get('p99'))} (p50 / p99): the machine's round trip, of which the "
            "Redis figures are multiples"
            + (
                f" (1-minute load average {load['before']} before, {load.get('after')} after)."
                if load.get("before") is not None
                else "."
            ),
            "",
        ]
    if burst:
        lines += [
            f"A burst through the shared store ({burst['concurrency']} calls at once, "
            f"{burst['calls']} in all): {_ms_fine(burst.get('p50'))} / "
            f"{_ms_fine(burst.get('p99'))} per full call (p50 / p99), "
            f"{burst['calls_per_s']:,.0f} calls/s; store fallbacks: "
            f"{b.get('shared', {}).get('fallbacks', 0)}.",
            "",
        ]
    return lines


def _load_note(results: dict[str, Any]) -> str:
    load = results.get("load_average") or {}
    if load.get("before") is None:
        return "Load average: not available on this OS."
    return (
        f"1-minute load average: {load['before']} when the run started, {load.get('after')} "
        "when it ended (other work on the machine inflates absolute times, less so ratios)."
    )


SECTIONS = {
    "overhead": "1",
    "busy_burst": "2",
    "dead_daemon": "3",
    "startup": "4",
    "serve": "5",
    "serve_memory": "5",
    "shared_burst": "6",
    "vllm_burst": "7",
    "serve_replicas": "8",
    "state": "9",
    "doubles": "10",
}


def _earlier_note(results: dict[str, Any]) -> list[str]:
    """Which sections were kept from earlier runs (``--merge``), and when they ran."""
    earlier: dict[tuple[str, str], list[str]] = {}
    for name, b in results["benchmarks"].items():
        measured = b.get("measured") or {}
        date = measured.get("date")
        if date and date != results["date"]:
            key = (str(date), str(measured.get("mode")))
            earlier.setdefault(key, []).append(SECTIONS.get(name, name))
    if not earlier:
        return []
    parts = [
        f"{'sections' if len(names) > 1 else 'section'} {', '.join(names)} on {date} ({mode} mode)"
        for (date, mode), names in sorted(earlier.items())
    ]
    return [
        "Not every section comes from that run (`--merge` kept the others' numbers): "
        + "; ".join(parts)
        + ".",
        "",
    ]


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
        *_earlier_note(results),
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
        "the client under test would distort the measurement; section 10 shows they are far "
        "from their limits. Everything talks only to 127.0.0.1.",
        "",
        "Run them all: `pip install -e '.[bench,test]'` then `python -m benchmarks "
        "--with-litellm` (about fifteen minutes on 2 CPUs; `--quick` for a shorter run, "
        "`--only busy_burst,startup` to pick, `--merge` to keep the other sections' numbers). "
        "Sections 6 to 9 start a `redis-server` of their own (Debian's package). "
        "Results: `benchmarks/results/latest.json`.",
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
    if "serve_memory" in b:
        lines += _serve_memory(b["serve_memory"])
    if "shared_burst" in b:
        lines += _shared_burst(b["shared_burst"])
    if "vllm_burst" in b:
        lines += _vllm_burst(b["vllm_burst"])
    if "serve_replicas" in b:
        lines += _serve_replicas(b["serve_replicas"])
    if "state" in b:
        lines += _state(b["state"])
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
