"""Routing state that one process or many share: leases, estimates, breakers, gates.

The router keeps everything it learns about routes behind `StateStore`, so that several
processes (web workers, scripts, `dsollama serve` replicas) can see one queue per route
instead of each counting only its own requests. Implementations:

- `MemoryStore` (`memory.py`): this process only; the default; no I/O.
- `RedisStore` (`redis_store.py`): shared through Redis (optional extra ``dsollama[redis]``);
  check-and-take in one round trip (Lua), leases that expire when their process dies,
  the server's clock.
- `SharedStore` (`shared.py`): a shared store with a local fallback: every operation has a
  small timeout; when the shared store fails the router carries on with its own view
  (one WARNING), and rejoins when it is back.

Make one with `open.open_store(state_url, breaker=...)`.

Keys are opaque strings made by the router: ``load_key(route, model)`` for admission,
a route name (or ``load_key``) for breakers, a route name for gates.

Time: every timestamp a store hands out (``Lease.started``) is in the store's own clock
(monotonic seconds in memory, the Redis server's ``TIME`` on Redis); callers never compare
it with their own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Admission",
    "BreakerConfig",
    "BreakerOutcome",
    "BreakerPass",
    "BreakerState",
    "Estimates",
    "Lease",
    "LoadView",
    "ServerQueue",
    "StateStore",
    "StoreError",
    "StoreHealth",
    "load_key",
]


def load_key(route: str, model: str) -> str:
    """The admission key of a model on a route.

    >>> load_key("local:127.0.0.1:11434", "deepseek-r1:8b")
    'local:127.0.0.1:11434|deepseek-r1:8b'
    """
    return f"{route}|{model}"


class StoreError(Exception):
    """A shared store failed or timed out (never reaches a caller of chat/generate)."""


# -- admission --------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimates:
    """Latency estimates of one key (EWMAs, alpha 0.3; a prior until the first sample)."""

    prompt_s: float
    "From getting a slot to the first token."
    generation_s: float
    "From the first token to done."
    load_s: float
    "A cold load of the model (only added to a prediction when the caller says it is cold)."
    samples: int = 0
    "Generation samples behind ``generation_s`` (0: still the prior)."
    load_samples: int = 0
    "Measured loads behind ``load_s`` (0: a prior, i.e. a guess)."


@dataclass(frozen=True)
class ServerQueue:
    """What the server itself reports about its queue for one model (vLLM ``/metrics``,
    llama-server ``/slots``); requests it counts that no lease accounts for are queued
    like ours.

    The counts include ours, and a server counts prompt processing as running. So: the
    server's ``running`` beyond our running leases plus our waiting leases that fit in the
    free slots are requests halfway through their generation (``generation_s / 2`` left);
    its ``waiting`` beyond our other waiting leases queue behind every lease.
    """

    running: int
    waiting: int


@dataclass(frozen=True)
class Lease:
    """One request holding (or queued for) a slot of a key, until `finish`."""

    key: str
    id: str
    started: float
    "Store clock."
    queued_behind: int
    "Requests in flight on the key (every process) when this one was admitted."
    store: str = "memory"
    "Which store issued it (`SharedStore` returns a lease to the store it came from)."


@dataclass(frozen=True)
class Admission:
    lease: Lease | None
    "None: refused, because the predicted first token is past ``limit_s``."
    predicted_s: float
    "Predicted seconds until this request's first token."
    in_flight: int
    "Requests in flight on the key before this one, every process counted."


@dataclass(frozen=True)
class LoadView:
    in_flight: int
    running: int
    "In flight and past their first token."
    waiting: int
    estimates: Estimates


# -- breakers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerConfig:
    threshold: int = 3
    "Consecutive failures (of calls let through in the current period) that open it."
    cooldown: float = 5.0
    "Seconds open after the first opening; doubles once per consecutive open period."
    cooldown_max: float = 300.0
    probe_ttl: float = 30.0
    "A half-open probe not reported within this long is given up (its process died)."


@dataclass(frozen=True)
class BreakerState:
    state: Literal["closed", "open", "half-open"]
    failures: int
    "Consecutive counted failures in the current period."
    steps: int
    "Consecutive open periods without a success (the cooldown is cooldown·2^(steps-1))."
    retry_in: float
    "Seconds until a probe is allowed (0 unless open)."
    reason: str | None
    epoch: int
    "Open periods so far; a pass from an older epoch no longer counts."


@dataclass(frozen=True)
class BreakerPass:
    allowed: bool
    probe: bool
    "This call is the single half-open probe: it must report an outcome (or 'release')."
    epoch: int
    state: BreakerState


BreakerOutcome = Literal["success", "failure", "open", "neutral", "release", "disable"]
"""What a call that went through reports:

- success: closes the breaker (failures and steps back to 0);
- failure: counts; opens at ``threshold``, or at once for a probe;
- open: opens at once (a dead daemon), unless already opened in this epoch;
- neutral: no verdict on the route (slow, request-specific); frees a probe;
- release: the call ended without a verdict (cancelled, lost a race); frees a probe;
- disable: open for ``disable_s`` seconds (None: ``cooldown_max``) whatever the state and
  the epoch (401, 402); never shortens an opening already longer; no cooldown step.

Every outcome but disable counts only if ``epoch`` is the current one: a call let through
before the breaker last opened neither escalates it nor closes it (nor frees the probe).
Each opening ends the period: ``epoch`` += 1, and the cooldown grows at most one step
per period (a failed probe is one step).
"""


# -- the store ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreHealth:
    kind: str
    "memory or redis."
    url: str | None
    "Where the shared store is, credentials removed."
    ok: bool
    using_fallback: bool
    "True while a shared store is unreachable and this process routes on its own view."
    last_error: str | None = None
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    fallbacks: int = 0
    "Times this process has switched to its own view."


class StateStore(Protocol):
    """Everything the router shares. Methods never raise for a healthy store; a shared
    store raises `StoreError` on failure (wrapped by `SharedStore`)."""

    kind: str

    # admission: leases and estimates per key ---------------------------------------------

    async def admit(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        limit_s: float | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> Admission:
        """Predict a new request's first token on ``key``; take a lease for it unless the
        prediction is past ``limit_s`` (None: always take). Atomic: no other process can
        take a lease between the prediction and the taking. ``cold_s`` is added to the
        prediction (a cold model's load); ``server`` adds the server's own queue."""
        ...

    async def first_token(self, lease: Lease) -> None:
        """The lease's request got its first token (it now holds a slot while it
        generates). Learns ``prompt_s`` when the request did not queue behind others."""
        ...

    async def finish(self, lease: Lease, *, ok: bool, load_s: float | None = None) -> None:
        """The request is over; frees the lease (idempotent). Learns ``generation_s`` when
        ``ok`` and a first token was seen, and ``load_s`` when given and above 0.05 s."""
        ...

    async def observe(self, key: str, *, load_s: float) -> None:
        """A measured load time from outside a request (a background warm-up)."""
        ...

    async def predict(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        lease: Lease | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> float:
        """Seconds until the first token of a new request (or of ``lease``, already in
        flight: 0 once it has its first token; a lease no longer held counts as new)."""
        ...

    async def view(self, key: str, *, priors: Estimates) -> LoadView: ...

    # breakers -------------------------------------------------------------------------------

    async def breaker_pass(self, key: str) -> BreakerPass:
        """May a call use the route now? Half-open: exactly one caller gets ``probe``."""
        ...

    async def breaker_report(
        self,
        key: str,
        outcome: BreakerOutcome,
        *,
        epoch: int,
        reason: str = "",
        probe: bool = False,
        disable_s: float | None = None,
    ) -> None: ...

    async def breaker_state(self, key: str) -> BreakerState: ...

    # gates: a hard concurrency limit (a hosted account's) ---------------------------------

    async def gate_take(self, key: str, *, limit: int) -> Lease | None:
        """A slot under ``limit`` (every process counted), or None when all are taken."""
        ...

    async def gate_release(self, lease: Lease) -> None: ...

    async def gate_count(self, key: str) -> int: ...

    # small shared facts (a learned limit, a sampled server queue) -------------------------

    async def fact_get(self, key: str) -> str | None: ...

    async def fact_set(self, key: str, value: str, *, ttl_s: float) -> None: ...

    # lifecycle -------------------------------------------------------------------------------

    def health(self) -> StoreHealth: ...

    async def aclose(self) -> None: ...
