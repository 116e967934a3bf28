"""Load signals: the queue a self-hosted OpenAI-format server publishes about itself.

vLLM's Prometheus ``/metrics`` counts the requests in its running batch and those waiting,
per model (``vllm:num_requests_running{model_name="M"}``, ``vllm:num_requests_waiting``);
llama-server's (with ``--metrics``) counts requests processing and deferred
(``llamacpp:requests_processing``, ``llamacpp:requests_deferred``, no labels), and its
``/slots`` shows which slots are busy, its ``/props`` how many there are (``total_slots``);
SGLang's (with ``--enable-metrics``) is said to publish ``sglang:num_running_reqs`` and
``sglang:num_queue_reqs`` — names *unverified*, kept here as data. Ollama publishes nothing.

The parsers are pure and tolerant: a line they cannot read is skipped, never raised, and
what they return is validated (whole, finite, non-negative counts). `LoadSampler` reads
one route's signal at most once per TTL and lets concurrent callers share the scrape in
flight, so admission can ask on every call without one scrape per call; a scrape that
fails or is slow gives None (logged once), never an error in a call.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._state import ServerQueue

__all__ = [
    "METRIC_NAMES",
    "LoadSampler",
    "MetricNames",
    "Sample",
    "SignalUnavailable",
    "parse_prometheus",
    "queue_from_slots",
    "queues_from_metrics",
    "total_slots",
]

log = logging.getLogger("dsollama")

T = TypeVar("T")


class SignalUnavailable(Exception):
    """The server answered, but gave no reading (its message says why, in our words)."""


@dataclass(frozen=True)
class MetricNames:
    """Where one kind of server publishes its queue."""

    running: str
    waiting: str
    model_label: str | None
    "The label naming the model a sample counts for (None: the server serves one model)."


METRIC_NAMES: Mapping[str, MetricNames] = {
    "vllm": MetricNames("vllm:num_requests_running", "vllm:num_requests_waiting", "model_name"),
    "llamacpp": MetricNames("llamacpp:requests_processing", "llamacpp:requests_deferred", None),
    # Unverified names (the reference marks them so): a server that does not publish them
    # gives no reading, and admission counts requests itself, as for Ollama.
    "sglang": MetricNames("sglang:num_running_reqs", "sglang:num_queue_reqs", "model_name"),
}


@dataclass(frozen=True)
class Sample:
    """One line of Prometheus text: a metric name, its labels and its value."""

    name: str
    labels: Mapping[str, str]
    value: float


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _labels(text: str | None) -> dict[str, str] | None:
    """Labels of a sample, or None when they do not parse."""
    labels: dict[str, str] = {}
    position = 0
    text = text or ""
    while position < len(text.rstrip()):
        match = _LABEL.match(text, position)
        if match is None or match.end() == position:
            return None
        raw = match.group(2)
        labels[match.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], raw)
        position = match.end()
    return labels


def parse_prometheus(text: str, names: frozenset[str] | None = None) -> list[Sample]:
    """The samples of Prometheus text exposition, optionally only those in ``names``.

    Comments, blank lines and lines that do not parse are skipped: one odd line from a
    server must not hide the counts on the others.

    >>> text = '''# HELP vllm:num_requests_running Number of requests in model execution batches.
    ... # TYPE vllm:num_requests_running gauge
    ... vllm:num_requests_running{engine="0",model_name="deepseek-r1"} 3.0
    ... llamacpp:requests_deferred 2
    ... garbage line here
    ... '''
    >>> [(s.name, dict(s.labels), s.value) for s in parse_prometheus(text)]
    [('vllm:num_requests_running', {'engine': '0', 'model_name': 'deepseek-r1'}, 3.0), ('llamacpp:requests_deferred', {}, 2.0)]
    >>> parse_prometheus('a{x="say \\\\"hi\\\\""} 1e+00')[0].labels
    {'x': 'say "hi"'}
    """
    samples: list[Sample] = []
    # Only "\n" ends a line in this format: str.splitlines would also split on the
    # other Unicode line breaks a label value may hold.
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if names is not None and not line.startswith(tuple(names)):
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None:
            continue
        name, raw_labels, raw_value = match.groups()
        if names is not None and name not in names:
            continue
        labels = _labels(raw_labels)
        if labels is None:
            continue
        try:
            value = float(raw_value)
        except ValueError:
            continue
        samples.append(Sample(name, labels, value))
    return samples


def _count(value: float) -> int | None:
    if not math.isfinite(value) or value < 0:
        return None
    return round(value)


def queues_from_metrics(text: str, names: MetricNames) -> dict[str | None, ServerQueue]:
    """Running and waiting requests per model from ``/metrics`` text.

    Keys are the values of ``names.model_label`` (samples of several engines of one model
    are added up); None is the key for samples without that label (llama-server, which
    serves one model). A model whose running or waiting count is missing or not a count
    is left out: half a reading is no reading.

    >>> text = '''vllm:num_requests_running{engine="0",model_name="m"} 2.0
    ... vllm:num_requests_running{engine="1",model_name="m"} 1.0
    ... vllm:num_requests_waiting{engine="0",model_name="m"} 4.0
    ... vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
    ... '''
    >>> queues_from_metrics(text, METRIC_NAMES["vllm"])
    {'m': ServerQueue(running=3, waiting=4)}
    >>> queues_from_metrics("llamacpp:requests_processing 1\\nllamacpp:requests_deferred 3\\n",
    ...                     METRIC_NAMES["llamacpp"])
    {None: ServerQueue(running=1, waiting=3)}
    >>> queues_from_metrics("vllm:num_requests_running{model_name=\\"m\\"} 1\\n", METRIC_NAMES["vllm"])
    {}
    """
    totals: dict[str | None, dict[str, float]] = {}
    for sample in parse_prometheus(text, frozenset({names.running, names.waiting})):
        model = sample.labels.get(names.model_label) if names.model_label else None
        per_model = totals.setdefault(model, {})
        per_model[sample.name] = per_model.get(sample.name, 0.0) + sample.value
    queues: dict[str | None, ServerQueue] = {}
    for model, counts in totals.items():
        running = _count(counts.get(names.running, math.nan))
        waiting = _count(counts.get(names.waiting, math.nan))
        if running is not None and waiting is not None:
            queues[model] = ServerQueue(running=running, waiting=waiting)
    return queues


def queue_from_slots(payload: Any) -> ServerQueue | None:
    """Busy slots from llama-server's ``/slots`` (a list of slot objects); None when the
    payload is not that list.

    ``/slots`` does not show deferred requests, so ``waiting`` is 0: an under-count that
    admission's own count of requests in flight makes up for.

    >>> queue_from_slots([{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}])
    ServerQueue(running=1, waiting=0)
    >>> queue_from_slots({"error": {"code": 501}}) is None
    True
    """
    if not isinstance(payload, list) or not all(isinstance(s, Mapping) for s in payload):
        return None
    busy = sum(1 for slot in payload if slot.get("is_processing") is True)
    return ServerQueue(running=busy, waiting=0)


def total_slots(payload: Any) -> int | None:
    """``total_slots`` from llama-server's ``/props``, when it is a positive whole number.

    >>> total_slots({"total_slots": 4, "model_alias": "x"})
    4
    >>> total_slots({"total_slots": "4"}) is None
    True
    """
    if not isinstance(payload, Mapping):
        return None
    value = payload.get("total_slots")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


class LoadSampler(Generic[T]):
    """One route's reading, taken at most once per ``ttl`` seconds and shared.

    `get` returns the last reading while it is fresh; otherwise it starts a scrape, and
    callers that arrive while it runs wait for that same scrape (single flight). A scrape
    that raises (`SignalUnavailable` when the server answered without a reading) or
    takes longer than ``timeout`` gives None, which is kept for the TTL
    too, so a dead endpoint costs one attempt per TTL, not one per call. The first
    failure in a row is logged at INFO, the rest at DEBUG. Use from one event loop.
    """

    def __init__(
        self,
        read: Callable[[], Awaitable[T | None]],
        *,
        ttl: float,
        timeout: float,
        route: str,
        what: str = "load signal",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl = ttl
        self._timeout = timeout
        self._route = route
        self._what = what
        self._clock = clock
        self._value: T | None = None
        self._taken_at: float | None = None
        self._inflight: asyncio.Task[T | None] | None = None
        self._failing = False
        self.scrapes = 0
        "Scrapes started so far."

    async def get(self) -> T | None:
        """The current reading (None when the server gives none)."""
        if self._taken_at is not None and self._clock() - self._taken_at < self._ttl:
            return self._value
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._scrape())
            self._inflight = task
        # Shielded: a caller that gives up (cancelled) leaves the scrape to the others.
        return await asyncio.shield(task)

    async def _scrape(self) -> T | None:
        self.scrapes += 1
        value: T | None
        try:
            value = await asyncio.wait_for(self._read(), self._timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a reading is a hint: nothing about it may fail a call
            value = None
            self._note_failure(exc)
        else:
            if self._failing:
                log.debug("%s: %s readable again", self._route, self._what)
            self._failing = False
        self._value, self._taken_at = value, self._clock()
        return value

    def _note_failure(self, exc: BaseException) -> None:
        # Never the server's own text (it is a stranger's): our words or the error type.
        if isinstance(exc, asyncio.TimeoutError):
            reason = f"no answer within {self._timeout:g} s"
        elif isinstance(exc, SignalUnavailable):
            reason = str(exc)
        else:
            reason = type(exc).__name__
        level = logging.DEBUG if self._failing else logging.INFO
        self._failing = True
        log.log(
            level,
            "%s: could not read its %s (%s); admission counts requests itself meanwhile",
            self._route,
            self._what,
            reason,
        )
