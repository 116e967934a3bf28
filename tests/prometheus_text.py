"""A strict reader of Prometheus text exposition (0.0.4), for the doubles' /metrics tests.

Strict on purpose: every sample must belong to a family announced by ``# HELP`` and
``# TYPE`` lines just before it, histogram buckets must be cumulative and end with
``le="+Inf"`` equal to ``_count``, label values must be quoted and escaped. A client that
parses real servers' metrics with a standard parser then reads the doubles' the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = ["Family", "parse"]

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")

Labels = frozenset[tuple[str, str]]


@dataclass
class Family:
    name: str
    help: str
    type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float:
        """The one sample named ``name + suffix`` whose labels include ``labels``."""
        found = [
            v
            for n, ls, v in self.samples
            if n == self.name + suffix and all(ls.get(k) == want for k, want in labels.items())
        ]
        assert len(found) == 1, (self.name + suffix, labels, found)
        return found[0]


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    return float(text)


def _labels(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    labels: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        assert match is not None, f"bad labels: {text!r}"
        name, raw = match.group(1), match.group(2)
        assert name not in labels, f"label {name} repeated"
        labels[name] = raw.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        position = match.end()
    return labels


def _check_histogram(family: Family) -> None:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    counts: dict[Labels, float] = {}
    sums: set[Labels] = set()
    for name, labels, value in family.samples:
        key = frozenset((k, v) for k, v in labels.items() if k != "le")
        if name == family.name + "_bucket":
            groups.setdefault(key, []).append((_value(labels["le"]), value))
        elif name == family.name + "_count":
            counts[key] = value
        elif name == family.name + "_sum":
            sums.add(key)
        else:
            raise AssertionError(f"{name} does not belong to histogram {family.name}")
    assert groups, f"histogram {family.name} has no buckets"
    for key, buckets in groups.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds), (family.name, bounds)
        assert bounds[-1] == math.inf, (family.name, bounds)
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{family.name} buckets are not cumulative"
        assert counts.get(key) == values[-1], f"{family.name}_count != +Inf bucket"
        assert key in sums, f"{family.name}_sum missing"


def parse(text: str) -> dict[str, Family]:
    """Families by name; raises AssertionError on anything outside the format."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP ") :].partition(" ")
            assert re.fullmatch(_NAME, name), name
            assert name not in families, f"{name} announced twice"
            pending_help = (name, help_text)
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE ") :].partition(" ")
            assert pending_help is not None, f"TYPE {name} without HELP"
            assert pending_help[0] == name, f"TYPE {name} after the HELP of {pending_help[0]}"
            assert kind in _TYPES, kind
            current = families[name] = Family(name, pending_help[1], kind)
            pending_help = None
        elif line.startswith("#") or not line:
            continue
        else:
            match = _SAMPLE.match(line)
            assert match is not None, f"bad sample line: {line!r}"
            name, labels, value = match.group(1), _labels(match.group(2)), _value(match.group(3))
            assert current is not None, f"{name} before any TYPE line"
            suffixes = ("_bucket", "_count", "_sum") if current.type == "histogram" else ("",)
            assert any(name == current.name + s for s in suffixes), (
                f"{name} is not a sample of {current.name}"
            )
            current.samples.append((name, labels, value))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
        if family.type == "counter":
            assert family.name.endswith("_total"), family.name
    return families
