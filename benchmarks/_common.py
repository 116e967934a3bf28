"""Helpers shared by the benchmarks: doubles in their own processes, percentiles, the machine.

The doubles run as separate processes (``python -m dsollama.testing ollama|deepseek``)
wherever sharing one interpreter with the client under test could distort what is
measured: the GIL would make the double's work look like the client's latency.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from dsollama.testing.redis_server import free_port

__all__ = [
    "Double",
    "free_port",
    "load_average",
    "machine",
    "percentile",
    "percentiles",
    "versions",
]

HOSTED_KEY = "sk-bench"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100); inf counts as the largest value."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high or ordered[high] == math.inf:
        return ordered[high] if rank > low else ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95, p99 (JSON-safe: None for a share that never answered)."""
    out: dict[str, float | None] = {}
    for q in (50, 95, 99):
        value = percentile(values, q)
        out[f"p{q}"] = None if (math.isinf(value) or math.isnan(value)) else round(value, 6)
    return out


class Double:
    """A double in its own process, steered over its control routes."""

    def __init__(self, which: str, *args: str) -> None:
        command = [sys.executable, "-m", "dsollama.testing", which, "--port", "0", *args]
        if which == "deepseek":
            command += ["--api-key", HOSTED_KEY]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"the {which} double did not start")
        self.which = which

    @property
    def api_key(self) -> str:
        return HOSTED_KEY

    def control(self, method: str, route: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/_dsollama/{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def configure(self, **settings: Any) -> None:
        self.control("POST", "config", settings)

    def clear(self) -> None:
        """Forget recorded requests and pending faults; end any hold."""
        self.control("DELETE", "requests")
        self.control("DELETE", "faults")
        self.control("POST", "release", {})

    def recorded(self, suffix: str) -> int:
        """How many requests whose path ends with ``suffix`` reached the double."""
        items = self.control("GET", "requests")["requests"]
        return sum(1 for item in items if str(item["path"]).endswith(suffix))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until the Ollama or vLLM double has nothing in flight (a finished burst drained)."""
        if self.which not in ("ollama", "vllm"):
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._busy():
                return True
            time.sleep(0.05)  # polling another process: there is no event to wait on
        return False

    def _busy(self) -> bool:
        if self.which == "ollama":
            return bool(self.control("GET", "state")["in_flight"])
        from dsollama._backends.loadsignal import METRIC_NAMES, queues_from_metrics

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        queues = queues_from_metrics(text, METRIC_NAMES["vllm"])
        return any(q.running or q.waiting for q in queues.values())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Double:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def machine() -> dict[str, Any]:
    """What the absolute numbers were measured on (no paths, no host name)."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("dsollama", "ollama", "httpx", "openai", "pydantic", "rich", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
