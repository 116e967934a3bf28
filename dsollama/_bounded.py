"""Per-model maps that a stream of new model names cannot grow without bound.

Routing keeps state per (route, model): admission counts, learned latencies, breakers,
facts. The model names come from callers, and through ``dsollama serve`` from anyone
who can reach it: a client naming a new model in every request (a typo, a scanner, a
hostile peer) would otherwise add entries for as long as the process runs.

`make_room` is called before a new key goes in. Below `KEYS_KEPT` it does nothing; at
the limit it forgets the oldest entries that are at rest (nothing in flight, no open
breaker: what would be rebuilt as it was) until a quarter of the room is free, so the
work is done once per few hundred new names, not per call. Entries that are not at rest
stay, whatever their age: forgetting them would change what routing decides.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TypeVar

__all__ = ["KEYS_KEPT", "make_room"]

K = TypeVar("K")
V = TypeVar("V")

KEYS_KEPT = 1024
"Entries per map; far more (route, model) pairs than any deployment uses."


def make_room(
    mapping: MutableMapping[K, V],
    *,
    at_rest: Callable[[V], bool] | None = None,
    limit: int | None = None,
) -> None:
    """Before a new key goes into ``mapping``: at ``limit`` entries (`KEYS_KEPT`), forget
    the oldest at rest (every entry, without ``at_rest``) until three quarters remain."""
    limit = KEYS_KEPT if limit is None else limit
    if len(mapping) < limit:
        return
    keep = limit * 3 // 4
    for key in [k for k, v in mapping.items() if at_rest is None or at_rest(v)]:
        if len(mapping) <= keep:
            return
        del mapping[key]
