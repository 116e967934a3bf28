"""The queue model every store predicts with — pure, no I/O, no clock of its own.

Both the in-memory store and the Redis store's Lua scripts (`lua.py`) compute the same
numbers from the same inputs (a property test drives both and compares):

- a request past its first token holds a slot for the rest of its generation time;
- of the requests still waiting, the first ``slots - running`` are in prompt processing
  (they hold a slot too); the rest queue FIFO, each taking a full prompt + generation
  once a slot frees;
- a new request's first token = when a slot frees for it + its prompt time + ``cold_s``.

Requests are ordered by admission (the order leases were taken), which is their start
order under one clock.

What the server itself reports (`ServerQueue`) counts requests no lease accounts for. Its
counts include ours, and it counts prompt processing as running, so the rule is:

- ours in slots = running leases + the waiting leases that fit in the free slots;
- the server's ``running`` beyond ours in slots are running requests halfway through their
  generation (``generation_s / 2`` left), placed after our running leases;
- the server's ``waiting`` beyond our queued leases wait behind every lease (they started
  "now", so they hold no place ahead of a lease already taken).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ALPHA", "LOAD_MIN_S", "QueueInput", "ewma", "extra_from_server", "first_token_in"]

ALPHA = 0.3
"Weight of a new sample in every estimate."
LOAD_MIN_S = 0.05
"A load time at or below this is no load (the model was already in memory)."


def ewma(value: float, samples: int, sample: float) -> float:
    """The estimate after one more sample; the first sample replaces the prior.

    >>> ewma(5.0, 0, 1.0)
    1.0
    >>> ewma(1.0, 1, 2.0)
    1.3
    """
    if samples == 0:
        return sample
    return value + ALPHA * (sample - value)


def extra_from_server(
    slots: int, running: int, waiting: int, server_running: int, server_waiting: int
) -> tuple[int, int]:
    """Requests the server reports that no lease accounts for: (running, waiting).

    >>> extra_from_server(1, 1, 1, 1, 1)  # the server sees exactly our two
    (0, 0)
    >>> extra_from_server(2, 0, 1, 2, 3)  # one more generating, three more queued
    (1, 3)
    """
    in_prompt = min(waiting, max(slots - running, 0))
    extra_running = max(server_running - (running + in_prompt), 0)
    extra_waiting = max(server_waiting - (waiting - in_prompt), 0)
    return extra_running, extra_waiting


@dataclass(frozen=True)
class QueueInput:
    """One key's queue at ``now``, in admission order."""

    slots: int
    prompt_s: float
    generation_s: float
    running_since: Sequence[float]
    "Seconds since each running request's first token."
    waiting_since: Sequence[float]
    "Seconds since each waiting request was admitted."
    extra_running: int = 0
    extra_waiting: int = 0


def first_token_in(queue: QueueInput, *, target: int | None = None, cold_s: float = 0.0) -> float:
    """Seconds until a new request's first token, or (``target``: an index into
    ``waiting_since``) until that waiting request's.

    >>> first_token_in(QueueInput(1, 0.1, 0.9, running_since=[0.0], waiting_since=[]))
    1.0
    >>> first_token_in(QueueInput(1, 0.1, 0.9, running_since=[0.5], waiting_since=[0.0]))
    1.5
    """
    slots, prompt, generation = queue.slots, queue.prompt_s, queue.generation_s
    running = [max(generation - since, 0.0) for since in queue.running_since]
    running += [generation / 2] * queue.extra_running
    slot_free = running[:slots]
    waiting = [*queue.waiting_since, *([0.0] * queue.extra_waiting)]
    in_prompt = max(slots - len(slot_free), 0)
    for index, since in enumerate(waiting[:in_prompt]):
        if index == target:  # already being served: only its remaining prompt time
            return max(prompt - since, 0.0) + cold_s
        slot_free.append(max(prompt - since, 0.0) + generation)
    if len(slot_free) < slots:
        slot_free += [0.0] * min(slots - len(slot_free), len(waiting) + 1)
    heapq.heapify(slot_free)
    service = prompt + generation
    for index in range(in_prompt, len(waiting)):
        if index == target:
            return _slot_wait(slot_free) + prompt + cold_s
        heapq.heappush(slot_free, _slot_wait(slot_free) + service)
    return _slot_wait(slot_free) + prompt + cold_s


def _slot_wait(slot_free: list[float]) -> float:
    return heapq.heappop(slot_free) if slot_free else 0.0
