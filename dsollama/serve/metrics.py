"""Prometheus metrics for `dsollama serve`, written by hand in the text exposition format.

Counters, gauges and histograms with labels, plus `CallMetrics`, a `CallSink` that turns
every routed call into numbers (fallbacks by reason, tokens, time to first token). Hand
written because the format is tiny and stable, and a prometheus_client dependency would
bring a process-global registry that two apps in one test process would share.

>>> registry = Registry()
>>> hits = registry.counter("demo_hits_total", "Hits.", ("route",))
>>> hits.inc(route="/api/chat")
>>> print(registry.render().strip())
# HELP demo_hits_total Hits.
# TYPE demo_hits_total counter
demo_hits_total{route="/api/chat"} 1
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._types import CallRecord

__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "REASON_LABELS",
    "CallMetrics",
    "Collect",
    "Counter",
    "Gauge",
    "Histogram",
    "Registry",
    "reason_label",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: from a cached local answer (milliseconds) to a long hosted reasoning answer.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

LabelKey = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    """One metric. No lock: an app's metrics are updated and rendered on its one event
    loop (requests, call records and scrapes all run there), and every update is a few
    dictionary operations per request on the hot path."""

    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str]) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)

    def _key(self, labels: dict[str, str]) -> LabelKey:
        """The label values in order, from keywords (each label exactly once)."""
        try:
            key = tuple([str(labels[n]) for n in self.label_names])
        except KeyError:
            key = ()
        if len(labels) != len(self.label_names) or len(key) != len(labels):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return key

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


Collect = Callable[[], Iterable[tuple[LabelKey, float]]]
"Reads a metric's samples when it is scraped: (label values, value) pairs."


class _Single(_Metric):
    """One number per label set, kept here or, with ``collect``, read when scraped."""

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        collect: Collect | None = None,
    ) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelKey, float] = {}
        self._collect = collect

    def samples(self) -> list[str]:
        if self._collect is not None:
            items = sorted(self._collect())
        else:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Counter(_Single):
    """A monotonically increasing number per label set; or, with ``collect``, a count kept
    elsewhere (which must only go up), read when scraped."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.inc_key(self._key(labels), amount)

    def inc_key(self, key: LabelKey, amount: float = 1.0) -> None:
        """`inc` with the label values in order (the hot path: no keywords to sort)."""
        if amount < 0:
            raise ValueError("a counter only goes up")
        values = self._values
        values[key] = values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)


class Gauge(_Single):
    """A number that goes up and down; or, with ``collect``, read when scraped."""

    kind = "gauge"

    def add(self, amount: float, **labels: str) -> None:
        self.add_key(self._key(labels), amount)

    def add_key(self, key: LabelKey, amount: float) -> None:
        """`add` with the label values in order."""
        values = self._values
        values[key] = values.get(key, 0.0) + amount

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = tuple(sorted(buckets))
        # per label set: counts per bucket (non-cumulative; +Inf last), sum
        self._series: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        self.observe_key(self._key(labels), value)

    def observe_key(self, key: LabelKey, value: float) -> None:
        """`observe` with the label values in order."""
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        lines: list[str] = []
        for key, (counts, total) in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Registry:
    """The metrics of one app, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def _add(self, metric: _Metric) -> None:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics.append(metric)

    def counter(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        collect: Collect | None = None,
    ) -> Counter:
        metric = Counter(name, help_text, labels, collect)
        self._add(metric)
        return metric

    def gauge(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        collect: Collect | None = None,
    ) -> Gauge:
        metric = Gauge(name, help_text, labels, collect)
        self._add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help_text, labels, buckets)
        self._add(metric)
        return metric

    def render(self) -> str:
        """The whole registry in the Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


_KIND = r"(?P<kind>local|hosted)"
# The router's fallback reasons, by family (policy.classify, Router.skip_reason, the
# first-token budget, breakers, the total deadline). Anything else is "other": a label
# value must never come from a request (model names) or a measurement.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), label)
    for pattern, label in (
        (r"local daemon unreachable", "local daemon unreachable"),
        (_KIND + r" (too slow to|gave no) first token", "{kind} too slow to first token"),
        (_KIND + r" connect timeout", "{kind} connect timeout"),
        (_KIND + r" stalled", "{kind} stalled"),
        (_KIND + r" busy \(503\)", "{kind} busy (503)"),
        (_KIND + r" rate limited \(429\)", "{kind} rate limited (429)"),
        (r"hosted key refused", "hosted key refused (401)"),
        (r"hosted account out of credit", "hosted account out of credit (402)"),
        (r"model not pulled on (the )?" + _KIND, "model not pulled on {kind} route"),
        (_KIND + r" route cannot serve", "{kind} route cannot serve this request"),
        (
            r"prompt (longer than|~\d+ tokens >) (the )?" + _KIND + " context",
            "prompt longer than the {kind} context",
        ),
        (_KIND + r" endpoint redirected", "{kind} endpoint redirected"),
        (r"the " + _KIND + r" route \S+ has no", "{kind} route lacks a capability"),
        (_KIND + r" model lacks a capability", "{kind} model lacks a capability"),
        (r"hosted model name not accepted", "hosted model name not accepted"),
        (r"request rejected", "request rejected"),
        (_KIND + r" answer cut short", "{kind} answer cut short"),
        (_KIND + r" server error", "{kind} server error"),
        (_KIND + r" failed", "{kind} failed"),
        (r"unexpected ", "unexpected error"),
        (r"images cannot go to the " + _KIND + " route", "images cannot go to the {kind} route"),
        (_KIND + r" at its concurrency limit", "{kind} at its concurrency limit"),
        (r"local model not loaded", "local model not loaded"),
        (_KIND + r" busy:", "{kind} busy"),
        (r"breaker open", "breaker open"),
        (r"another call is probing", "breaker half-open"),
        (r"total deadline passed", "total deadline passed"),
    )
)
OTHER_REASON = "other"
REASON_LABELS: frozenset[str] = frozenset(
    {label.format(kind=kind) for _, label in _REASONS for kind in ("local", "hosted")}
    | {OTHER_REASON}
)
"Every value the ``reason`` label can take."


def reason_label(reason: str) -> str:
    """A fallback reason as a label from a closed set (`REASON_LABELS`).

    The router's reasons carry measurements and sometimes a model name ("local busy: 3
    in flight…", "model not pulled on the local daemon (run `dsollama pull NAME`)"); a
    label value per distinct text would make a time series per call. The full reason is
    in the request log.

    >>> reason_label("local busy: 3 in flight on 1 slot(s), first token predicted in 12.0s > 10.0s")
    'local busy'
    >>> reason_label("local gave no first token within 0.4s, 2 keep-alive(s) and no data")
    'local too slow to first token'
    >>> reason_label("hosted busy (503); retry budget exhausted")
    'hosted busy (503)'
    >>> reason_label("model not pulled on the local daemon (run `dsollama pull my-secret:1b`)")
    'model not pulled on local route'
    >>> reason_label("hosted stalled (gap deadline)"), reason_label("whatever a plugin says")
    ('hosted stalled', 'other')
    """
    for pattern, label in _REASONS:
        match = pattern.match(reason)
        if match is not None:
            return label.format(**match.groupdict())
    return OTHER_REASON


class CallMetrics:
    """Metrics fed by the router's call records (a `CallSink`: never blocks or raises)."""

    def __init__(self, registry: Registry) -> None:
        self.calls = registry.counter(
            "dsollama_calls_total",
            "Routed chat/generate calls by operation, route kind that served and outcome.",
            ("operation", "served", "outcome"),
        )
        self.fallbacks = registry.counter(
            "dsollama_fallbacks_total",
            "Calls that did not stay on their first route, by reason (a fixed set of families).",
            ("reason",),
        )
        self.tokens = registry.counter(
            "dsollama_tokens_total",
            "Tokens by direction (prompt, completion) and the route kind that served them.",
            ("direction", "served"),
        )
        self.first_token = registry.histogram(
            "dsollama_call_first_token_seconds",
            "Time from the start of a routed call to its first token, by route kind.",
            ("served",),
        )
        self.cost = registry.counter(
            "dsollama_hosted_cost_usd_total", "Estimated hosted spend in US dollars."
        )

    def record(self, rec: CallRecord) -> None:
        try:
            served = rec.served_by.kind if rec.served_by is not None else "none"
            outcome = (
                "ok" if rec.ok else ("cancelled" if rec.error_class == "Cancelled" else "error")
            )
            self.calls.inc(operation=rec.operation, served=served, outcome=outcome)
            if rec.fallback_reason:
                self.fallbacks.inc(reason=reason_label(rec.fallback_reason))
            if rec.prompt_tokens:
                self.tokens.inc(rec.prompt_tokens, direction="prompt", served=served)
            if rec.completion_tokens:
                self.tokens.inc(rec.completion_tokens, direction="completion", served=served)
            if rec.ok and rec.ttft_s is not None:
                self.first_token.observe(rec.ttft_s, served=served)
            if rec.cost_usd:
                self.cost.inc(rec.cost_usd)
        except Exception:  # a sink must never break a call
            pass
