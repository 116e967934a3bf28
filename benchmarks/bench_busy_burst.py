"""Busy burst: N concurrent chats at a one-slot local daemon plus the hosted API.

Set-up: the Ollama double (one slot, ~1 s answers: 40 tokens at 40 tokens/s after 0.05 s of
prompt processing, model kept warm) and the DeepSeek double (first token after 0.4 s, 50
tokens/s) each run in their own process. Each client variant (see `_burst_clients`, and
`_litellm_worker` for LiteLLM's Router) runs in a fresh process per burst size: it makes
one warm-up call on the idle daemon, then sends N streamed chats at once. Every request
has the same hard deadline; one not answered by then counts as failed.

Reported per variant: success rate, p50/p95/p99 of latency and of time to first token
(percentiles over every request: a failure counts as never answering), how many were
served hosted, and — for dsollama — that count against the minimum the local capacity
allows: with a first-token budget B, a service time S and a prompt time P, one slot can
give a first token within B to ``floor((B - P) / S) + 1`` requests of a burst.

    python benchmarks/bench_busy_burst.py [--sizes 8,32,128] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import Double, percentiles

ROOT = Path(__file__).resolve().parent.parent
MODEL = "deepseek-coder:6.7b"
HOSTED_MODEL = "deepseek-flash"
OURS = ("dsollama-budget", "dsollama-latency")
BASELINES = ("official", "try-except", "wait-budget", "admission-only")
LITELLM = ("litellm-router", "litellm-parallel1")
REACTIVE = ("wait-budget", "litellm-router")
LITELLM_PIN = "litellm==1.81.16"
"A release from before both 2026 compromises of litellm on PyPI (1.82.7/1.82.8, 1.107.0)."


@dataclass(frozen=True)
class Scenario:
    slots: int = 1
    prompt_seconds: float = 0.05
    tokens_per_second: float = 40.0
    answer_tokens: int = 40
    hosted_first_token_seconds: float = 0.4
    hosted_tokens_per_second: float = 50.0
    hosted_concurrency_limit: int | None = None
    "The hosted account's concurrency cap (DeepSeek answers 429 above it); None: no cap."
    budget: float = 2.0
    "First-token budget: dsollama's, the reactive client's, LiteLLM's stream_timeout."
    timeout: float = 10.0
    "The official client's explicit timeout (also in the try/except baseline)."
    deadline: float = 15.0
    "Every request of every variant is abandoned (failed) after this long."

    def scaled(self, factor: float) -> Scenario:
        """The same shape, every duration times ``factor`` (for a tiny run)."""
        return dataclasses.replace(
            self,
            prompt_seconds=self.prompt_seconds * factor,
            tokens_per_second=self.tokens_per_second / factor,
            hosted_first_token_seconds=self.hosted_first_token_seconds * factor,
            hosted_tokens_per_second=self.hosted_tokens_per_second / factor,
            budget=self.budget * factor,
            timeout=self.timeout * factor,
            deadline=self.deadline * factor,
        )

    @property
    def service_seconds(self) -> float:
        return self.prompt_seconds + self.answer_tokens / self.tokens_per_second

    @property
    def local_capacity(self) -> int:
        """Requests of a burst the local slots can give a first token within the budget."""
        per_slot = math.floor((self.budget - self.prompt_seconds) / self.service_seconds) + 1
        return self.slots * max(per_slot, 0)

    def min_hosted(self, n: int) -> int:
        return max(n - self.local_capacity, 0)


def litellm_venv() -> Path:
    """Where the throwaway LiteLLM virtualenv lives: the system temp folder, never the repo's."""
    return Path(tempfile.gettempdir()) / "dsollama-bench-litellm"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_litellm() -> tuple[Path | None, str]:
    """Create the throwaway virtualenv with the pinned LiteLLM (wheels only); say how it went."""
    venv = litellm_venv()
    python = _venv_python(venv)
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"could not create a virtualenv: {made.stderr.strip()[-300:]}"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--only-binary", ":all:", LITELLM_PIN],
        capture_output=True,
        text=True,
        env=_clean_env(),
    )
    if installed.returncode != 0:
        return None, f"pip install {LITELLM_PIN} failed: {installed.stderr.strip()[-300:]}"
    return python, f"installed {LITELLM_PIN} in a throwaway virtualenv"


def _clean_env() -> dict[str, str]:
    # LiteLLM runs with nothing from this environment but PATH: no keys to find.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}


def _warm(double: Double) -> None:
    """Load the model (an empty prompt loads without generating) and keep it loaded."""
    body = json.dumps({"model": MODEL, "prompt": "", "keep_alive": -1, "stream": False}).encode()
    request = urllib.request.Request(
        f"{double.url}/api/generate", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def _worker_command(
    variant: str, n: int, sc: Scenario, ollama: Double, hosted: Double, litellm: Path | None
) -> tuple[list[str], dict[str, str] | None]:
    args = [
        "--variant",
        variant,
        "--n",
        str(n),
        "--ollama",
        ollama.url,
        "--hosted",
        hosted.url,
        "--key",
        hosted.api_key,
        "--model",
        MODEL,
        "--hosted-model",
        HOSTED_MODEL,
        "--budget",
        str(sc.budget),
        "--slots",
        str(sc.slots),
        "--timeout",
        str(sc.timeout),
        "--deadline",
        str(sc.deadline),
    ]
    if variant in LITELLM:
        assert litellm is not None
        return [str(litellm), str(ROOT / "benchmarks" / "_litellm_worker.py"), *args], _clean_env()
    return [sys.executable, "-m", "benchmarks._burst_clients", *args], None


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    latency = [r["latency"] if r["ok"] else math.inf for r in records]
    ttft = [r["ttft"] if r["ok"] and r["ttft"] is not None else math.inf for r in records]
    answered = sum(1 for r in records if r["ok"])
    errors: dict[str, int] = {}
    for r in records:
        if not r["ok"]:
            errors[str(r.get("error"))] = errors.get(str(r.get("error")), 0) + 1
    return {
        "n": n,
        "answered": answered,
        "failed": n - answered,
        "success_rate": round(answered / n, 4) if n else None,
        "latency": percentiles(latency),
        "ttft": percentiles(ttft),
        "served_hosted": sum(1 for r in records if r["ok"] and r["route"] == "hosted"),
        "served_local": sum(1 for r in records if r["ok"] and r["route"] == "local"),
        "errors": errors,
        # Raw values (None = failed) for the plot.
        "ttft_values": [round(r["ttft"], 4) if r["ok"] and r["ttft"] else None for r in records],
        "latency_values": [round(r["latency"], 4) if r["ok"] else None for r in records],
    }


def _run_one(
    variant: str, n: int, sc: Scenario, ollama: Double, hosted: Double, litellm: Path | None
) -> dict[str, Any]:
    ollama.clear()
    hosted.clear()
    command, env = _worker_command(variant, n, sc, ollama, hosted, litellm)
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=sc.deadline * 3 + 120,
    )
    ollama.wait_idle()
    if done.returncode != 0:
        return {"error": f"worker exited {done.returncode}: {done.stderr.strip()[-400:]}"}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    result = _summarise(out["requests"])
    warm_hosted = sum(1 for w in out["warmup"] if w.get("route") == "hosted")
    # What reached each double, from the doubles themselves (the warm-up calls excluded).
    result["sent_hosted"] = hosted.recorded("/chat/completions") - warm_hosted
    result["sent_local"] = ollama.recorded("/api/chat") - (len(out["warmup"]) - warm_hosted)
    if "litellm_version" in out:
        result["litellm_version"] = out["litellm_version"]
    return result


def _targets(n: int, sc: Scenario, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each target of the issue, with the numbers it compares and whether it was met."""
    out: dict[str, Any] = {}
    ours = runs.get("dsollama-budget", {})
    if "answered" not in ours:
        return out
    out["every_request_answered"] = {"met": ours["failed"] == 0, "failed": ours["failed"]}
    minimum = sc.min_hosted(n)
    out["hosted_at_minimum"] = {
        "met": abs(ours["served_hosted"] - minimum) <= 1,
        "hosted": ours["served_hosted"],
        "minimum": minimum,
    }
    reactive = {
        v: runs[v]["ttft"]["p99"]
        for v in REACTIVE
        if v in runs and "ttft" in runs[v] and runs[v]["ttft"]["p99"] is not None
    }
    if reactive and ours["ttft"]["p99"] is not None:
        best = min(reactive.values())
        out["ttft_p99_half_of_reactive"] = {
            "met": ours["ttft"]["p99"] <= best / 2,
            "dsollama": ours["ttft"]["p99"],
            "reactive": reactive,
            "ratio": round(ours["ttft"]["p99"] / best, 3),
        }
    latency_first = runs.get("dsollama-latency", {})
    admission = runs.get("admission-only", {})
    if "latency" in latency_first and "latency" in admission:
        ours_p99 = latency_first["latency"]["p99"]
        theirs_p99 = admission["latency"]["p99"]
        out["latency_first_beats_admission_only"] = {
            "met": (
                ours_p99 is not None
                and (theirs_p99 is None or ours_p99 < theirs_p99)
                and latency_first["served_hosted"] < admission["served_hosted"]
            ),
            "p99_latency": ours_p99,
            "admission_only_p99_latency": theirs_p99,
            "p99_ratio": (
                round(ours_p99 / theirs_p99, 4) if ours_p99 is not None and theirs_p99 else None
            ),
            "hosted": latency_first["served_hosted"],
            "admission_only_hosted": admission["served_hosted"],
        }
    return out


@contextlib.contextmanager
def doubles(sc: Scenario) -> Iterator[tuple[Double, Double]]:
    """The Ollama and DeepSeek doubles of ``sc``, each in its own process, model warm."""
    with (
        Double(
            "ollama",
            "--model",
            MODEL,
            "--slots",
            str(sc.slots),
            "--prompt-seconds",
            str(sc.prompt_seconds),
            "--tokens-per-second",
            str(sc.tokens_per_second),
            "--answer-tokens",
            str(sc.answer_tokens),
            "--thinking-tokens",
            "0",
            "--keep-alive-seconds",
            "-1",
        ) as ollama,
        hosted_double(sc) as hosted,
    ):
        _warm(ollama)
        yield ollama, hosted


def hosted_double(sc: Scenario) -> Double:
    """The DeepSeek double of ``sc`` in its own process."""
    return Double(
        "deepseek",
        "--first-token-seconds",
        str(sc.hosted_first_token_seconds),
        "--tokens-per-second",
        str(sc.hosted_tokens_per_second),
        "--answer-tokens",
        str(sc.answer_tokens),
        "--thinking-tokens",
        "0",
        *(
            ["--concurrency-limit", str(sc.hosted_concurrency_limit)]
            if sc.hosted_concurrency_limit is not None
            else []
        ),
    )


def _sizes(
    sc: Scenario, sizes: tuple[int, ...], chosen: list[str], litellm_python: Path | None
) -> dict[str, Any]:
    """Start both doubles for ``sc`` and run every chosen variant at every size."""
    out: dict[str, Any] = {}
    with doubles(sc) as (ollama, hosted):
        for n in sizes:
            runs = {v: _run_one(v, n, sc, ollama, hosted, litellm_python) for v in chosen}
            out[str(n)] = {
                "min_hosted": sc.min_hosted(n),
                "runs": runs,
                "targets": _targets(n, sc, runs),
            }
    return out


SLOW_HOSTED_FIRST_TOKEN = 1.5
"The second scenario's hosted first token: later than one local answer takes (1.05 s)."
SLOW_HOSTED_VARIANTS = ("wait-budget", "admission-only", "dsollama-budget", "dsollama-latency")
CAPPED_HOSTED_LIMIT = 8
"The third scenario's hosted concurrency cap, as DeepSeek sets per account (lower on a low balance)."


def run(
    sizes: tuple[int, ...] = (8, 32, 128),
    *,
    scale: float = 1.0,
    variants: tuple[str, ...] | None = None,
    litellm_python: Path | None = None,
    litellm_note: str = "",
    slow_hosted_sizes: tuple[int, ...] = (8, 32),
    capped_hosted_sizes: tuple[int, ...] = (32,),
) -> dict[str, Any]:
    """Every variant at every burst size; returns the numbers, the targets and the set-up.

    A second, smaller scenario has a hosted API slower to its first token than a local
    answer: the only case where routing by predicted first token can keep more requests
    local than admission-only routing does. A third caps the hosted account's concurrency
    (429 above the cap, as DeepSeek does): nobody tells the clients the cap; dsollama
    reads it from the first 429.
    """
    sc = Scenario() if scale == 1.0 else Scenario().scaled(scale)
    chosen = list(variants or (*BASELINES, *LITELLM, *OURS))
    if litellm_python is None:
        chosen = [v for v in chosen if v not in LITELLM]
    results: dict[str, Any] = {
        "scenario": dataclasses.asdict(sc),
        "service_seconds": round(sc.service_seconds, 4),
        "local_capacity": sc.local_capacity,
        "variants": chosen,
        "litellm": {"used": litellm_python is not None, "note": litellm_note},
        "sizes": _sizes(sc, sizes, chosen, litellm_python),
    }
    if slow_hosted_sizes:
        slow = dataclasses.replace(sc, hosted_first_token_seconds=SLOW_HOSTED_FIRST_TOKEN * scale)
        picked = [v for v in SLOW_HOSTED_VARIANTS if v in chosen]
        results["slow_hosted"] = {
            "scenario": dataclasses.asdict(slow),
            "variants": picked,
            "sizes": _sizes(slow, slow_hosted_sizes, picked, None),
        }
    if capped_hosted_sizes:
        capped = dataclasses.replace(sc, hosted_concurrency_limit=CAPPED_HOSTED_LIMIT)
        picked = [v for v in SLOW_HOSTED_VARIANTS if v in chosen]
        results["capped_hosted"] = {
            "scenario": dataclasses.asdict(capped),
            "variants": picked,
            "sizes": _sizes(capped, capped_hosted_sizes, picked, None),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--litellm-python", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    results = run(sizes, litellm_python=args.litellm_python)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    sets = [
        ("", results["sizes"]),
        (" slow hosted", results.get("slow_hosted", {}).get("sizes", {})),
    ]
    for label, n, size in ((lbl, n, sz) for lbl, sizes in sets for n, sz in sizes.items()):
        print(f"N={n}{label} (minimum hosted {size['min_hosted']})")
        for variant, r in size["runs"].items():
            if "error" in r:
                print(f"  {variant:<18} {r['error']}")
                continue
            print(
                f"  {variant:<18} ok {r['answered']}/{r['n']}  ttft p99 {r['ttft']['p99']}  "
                f"latency p99 {r['latency']['p99']}  hosted {r['served_hosted']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
