"""Prometheus text exposition (format 0.0.4), as the doubles' ``/metrics`` routes serve it.

Each metric family is a ``# HELP`` line, a ``# TYPE`` line and its samples; a histogram's
samples are its cumulative ``_bucket`` counts (ending with ``le="+Inf"``), ``_count`` and
``_sum``. Servers print numbers differently — vLLM through prometheus_client (``3.0``,
``+Inf``), llama-server through a C++ stream (``3``, ``0.25``) — so the number format is
chosen per call.

>>> text = Exposition(number=python_number)
>>> text.gauge("vllm:num_requests_running", "Running.", [({"model_name": "m"}, 2)])
>>> print(text.render(), end="")
# HELP vllm:num_requests_running Running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 2.0
>>> h = Histogram((0.1, 1.0))
>>> h.observe(0.5)
>>> text = Exposition(number=python_number)
>>> text.histogram("ttft", "Time to first token.", [({}, h)])
>>> print(text.render(), end="")
# HELP ttft Time to first token.
# TYPE ttft histogram
ttft_bucket{le="0.1"} 0.0
ttft_bucket{le="1.0"} 1.0
ttft_bucket{le="+Inf"} 1.0
ttft_count 1.0
ttft_sum 0.5
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Exposition", "Histogram", "cpp_number", "python_number"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]


def python_number(value: float) -> str:
    """A number as prometheus_client prints it (``floatToGoString``).

    >>> python_number(3), python_number(0.25), python_number(math.inf)
    ('3.0', '0.25', '+Inf')
    """
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(value)


def cpp_number(value: float) -> str:
    """A number as ``std::ostream << double`` prints it (6 significant digits).

    >>> cpp_number(3), cpp_number(0.25), cpp_number(1234567.0)
    ('3', '0.25', '1.23457e+06')
    """
    value = float(value)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return format(value, "g")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    # prometheus_client sorts label names; so does this.
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in sorted(labels.items()))
    return "{" + inner + "}"


@dataclass
class Histogram:
    """Observations counted in cumulative buckets (upper bounds, ascending)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    "Observations per bucket (not cumulative); one more than ``bounds``, for +Inf."
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        # le is inclusive: a value equal to a bound falls in that bound's bucket.
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


class Exposition:
    """Metric families, written in the order they are added."""

    def __init__(self, *, number: Callable[[float], str]) -> None:
        self._number = number
        self._lines: list[str] = []

    def _family(self, name: str, help_text: str, kind: str) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def _sample(self, name: str, labels: Labels, value: float) -> None:
        self._lines.append(f"{name}{_labels(labels)} {self._number(value)}")

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        self._family(name, help_text, "gauge")
        for labels, value in samples:
            self._sample(name, labels, value)

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """``name`` ends with ``_total``, as exposed."""
        self._family(name, help_text, "counter")
        for labels, value in samples:
            self._sample(name, labels, value)

    def histogram(
        self, name: str, help_text: str, samples: Iterable[tuple[Labels, Histogram]]
    ) -> None:
        self._family(name, help_text, "histogram")
        for labels, histogram in samples:
            running = 0
            bounds = [*histogram.bounds, math.inf]
            for bound, count in zip(bounds, histogram.counts, strict=True):
                running += count
                bucket_labels = {**labels, "le": python_number(bound)}
                self._sample(f"{name}_bucket", bucket_labels, running)
            self._sample(f"{name}_count", labels, histogram.count)
            self._sample(f"{name}_sum", labels, histogram.total)

    def render(self) -> str:
        return "\n".join(self._lines) + "\n"
