"""What the router knows about its routes, kept in a `StateStore` (shared or not).

`RoutingState` speaks the router's vocabulary over the store's: breakers per route (for
connection-level failures) and per (route, model) (for model-level ones), admission
leases and estimates per (route, model), the gate of a route that refuses work above its
concurrency limit, and what this process has seen of a model on a server (cold, being
warmed, not pulled).

It caches what keeps the healthy path cheap when the store is Redis: a closed breaker is
believed for `_CLOSED_FRESH_S` before it is asked again (as LiteLLM re-reads cooldowns),
and a breaker with nothing to forgive is not told of a success. Open and half-open
breakers are always asked, so a probe is never taken twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .._backends import Backend
from .._bounded import make_room
from .._catalogue import normalise_model_name
from .._config import Settings
from .._state import (
    Admission,
    BreakerOutcome,
    BreakerPass,
    BreakerState,
    Estimates,
    Lease,
    LoadView,
    ServerQueue,
    StateStore,
    load_key,
)

__all__ = ["ModelFacts", "Passes", "Place", "RoutingState", "Scope"]


class Place(Protocol):
    """A model on a route (a `shapes.RouteChoice` is one)."""

    @property
    def backend(self) -> Backend: ...

    @property
    def route(self) -> str: ...

    @property
    def model(self) -> str: ...


Scope = Literal["route", "model"]
"Which breaker a failure counts against: the route's (it cannot be reached) or the model's."

_CLOSED_FRESH_S = 0.5
"How long a closed breaker is believed without asking the store again."
_GATE_POLL_S = 0.05
"A shared gate is polled this often for a slot another process freed."
_UNBOUNDED = 1_000_000
_LIMIT_FACT_TTL_S = 3600.0
_LOAD_PRIOR_S = 5.0
_KEYS_KEPT = 4096


@dataclass
class ModelFacts:
    """What this process has seen of one model on one server."""

    cold: bool = False
    "The server said the model is not in memory; cleared by its next answer."
    warming: bool = False
    "A background load of the model is under way."
    missing: bool = False
    "The server does not have the model at all."
    last_answer_at: float | None = None
    in_flight: int = 0
    "Requests of this process on the key (for `status()`)."

    def idle_for(self, now: float) -> float | None:
        return None if self.last_answer_at is None else now - self.last_answer_at


@dataclass
class Passes:
    """The breaker passes one attempt holds: the route's and the model's."""

    route: BreakerPass
    model: BreakerPass

    @property
    def probe(self) -> bool:
        return self.route.probe or self.model.probe


@dataclass
class _Cached:
    state: BreakerState
    at: float


@dataclass
class _Gate:
    limit: int | None
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class RoutingState:
    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        backends: Mapping[str, Backend],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self._backends = backends
        self._clock = clock
        self._breakers: dict[str, _Cached] = {}
        self._facts: dict[str, ModelFacts] = {}
        self._predicted: dict[str, float] = {}
        self._gates: dict[str, _Gate] = {}
        self._learned_capacity: dict[str, int] = {}
        self._key_memo: dict[tuple[str, str], tuple[str, str]] = {}

    # -- keys and priors ----------------------------------------------------------------

    def refuses(self, choice: Place) -> bool:
        """Does the route refuse work above a concurrency limit (429) rather than queue it?"""
        return choice.backend.config.over_capacity == "refuses"

    def _keys(self, choice: Place) -> tuple[str, str]:
        """(admission key, model key) of a choice, worked out once per route and model."""
        name = (choice.route, choice.model)
        keys = self._key_memo.get(name)
        if keys is None:
            model = normalise_model_name(choice.model)
            # A route that refuses above its limit is one queue for every model (the
            # account's limit); one that queues has one per model.
            admission = load_key(choice.route, "*" if self.refuses(choice) else model)
            keys = (admission, load_key(choice.route, model))
            if len(self._key_memo) >= _KEYS_KEPT:
                self._key_memo.clear()
            self._key_memo[name] = keys
        return keys

    def key(self, choice: Place) -> str:
        return self._keys(choice)[0]

    def model_key(self, choice: Place) -> str:
        return self._keys(choice)[1]

    def priors(self, choice: Place) -> Estimates:
        if self.refuses(choice):
            return Estimates(prompt_s=1.0, generation_s=2.0, load_s=_LOAD_PRIOR_S)
        budget = self.settings.first_token_timeout
        return Estimates(
            prompt_s=min(0.5, budget / 4), generation_s=budget / 2, load_s=_LOAD_PRIOR_S
        )

    def slots(self, choice: Place) -> int:
        if self.refuses(choice):
            return self.gate_limit(choice.route) or _UNBOUNDED
        configured = choice.backend.config.capacity
        return configured or self._learned_capacity.get(choice.route) or 1

    def learn_capacity(self, route: str, queue: ServerQueue) -> None:
        """A server that queues requests while R run has R slots (nothing configured)."""
        if queue.waiting > 0 and queue.running > 0:
            self._learned_capacity[route] = queue.running

    def facts(self, choice: Place) -> ModelFacts:
        key = self.model_key(choice)
        facts = self._facts.get(key)
        if facts is None:
            # Learned from answers, learned again when needed; not while calls count on it.
            make_room(self._facts, at_rest=lambda f: f.in_flight == 0 and not f.warming)
            facts = self._facts[key] = ModelFacts()
        return facts

    def _note_prediction(self, key: str, seconds: float) -> None:
        if key not in self._predicted:
            make_room(self._predicted)  # shown by status only
        self._predicted[key] = seconds

    # -- breakers ------------------------------------------------------------------------

    def _remember(self, key: str, state: BreakerState) -> None:
        if key not in self._breakers:
            make_room(self._breakers)  # a cache of the store's answer: asked again
        self._breakers[key] = _Cached(state, self._clock())

    def cached_breaker(self, key: str) -> BreakerState | None:
        cached = self._breakers.get(key)
        return cached.state if cached is not None else None

    async def _pass(self, key: str) -> BreakerPass:
        cached = self._breakers.get(key)
        if (
            cached is not None
            and cached.state.state == "closed"
            and self._clock() - cached.at < _CLOSED_FRESH_S
        ):
            return BreakerPass(True, False, cached.state.epoch, cached.state)
        granted = await self.store.breaker_pass(key)
        self._remember(key, granted.state)
        return granted

    async def take_passes(self, choice: Place) -> tuple[Passes | None, BreakerState]:
        """Both breakers' passes, or None and the state of the one that said no."""
        route = await self._pass(choice.route)
        if not route.allowed:
            return None, route.state
        model = await self._pass(self.model_key(choice))
        if not model.allowed:
            await self._report(choice.route, route, "release")
            return None, model.state
        return Passes(route, model), model.state

    def viable(self, choice: Place) -> bool:
        """Could the route take a request now, as far as this process knows (no I/O)?

        An open breaker says no until its cooldown ends; a half-open one says no too: its
        one probe may be out already, and a call should not leave a slow route for one
        that will turn it away.
        """
        now = self._clock()
        for key in (choice.route, self.model_key(choice)):
            cached = self._breakers.get(key)
            if cached is None:
                continue
            state = cached.state
            if state.state == "half-open":
                return False
            if state.state == "open" and state.retry_in - (now - cached.at) > 0:
                return False
        return True

    async def _report(
        self,
        key: str,
        granted: BreakerPass,
        outcome: BreakerOutcome,
        *,
        reason: str = "",
        disable_s: float | None = None,
    ) -> None:
        state = granted.state
        if outcome == "success" and state.state == "closed" and state.failures == 0:
            return  # nothing to forgive: no round trip
        if outcome == "release" and not granted.probe:
            return  # only a probe holds anything to release
        await self.store.breaker_report(
            key,
            outcome,
            epoch=granted.epoch,
            reason=reason,
            probe=granted.probe,
            disable_s=disable_s,
        )
        if outcome in ("failure", "open", "disable"):
            # The unhealthy path: worth a round trip to know (and show) where it stands.
            self._remember(key, await self.store.breaker_state(key))
        else:
            self._breakers.pop(key, None)  # ask the store next time

    async def report(
        self,
        choice: Place,
        passes: Passes,
        outcome: BreakerOutcome,
        *,
        scope: Scope = "model",
        reason: str = "",
        disable_s: float | None = None,
    ) -> None:
        """What an attempt ended with. A failure counts against one breaker (``scope``);
        the other breaker's probe, if it held one, is released."""
        route_outcome: BreakerOutcome = outcome
        model_outcome: BreakerOutcome = outcome
        if outcome in ("failure", "open", "disable"):
            if scope == "route":
                model_outcome = "release"
            else:
                route_outcome = "release"
        await self._report(
            choice.route, passes.route, route_outcome, reason=reason, disable_s=disable_s
        )
        await self._report(
            self.model_key(choice), passes.model, model_outcome, reason=reason, disable_s=disable_s
        )

    async def report_unpassed(self, choice: Place, reason: str) -> None:
        """Nothing answered a question asked before any pass was taken: open the route."""
        granted = await self.store.breaker_pass(choice.route)
        self._remember(choice.route, granted.state)
        await self._report(choice.route, granted, "open", reason=reason)

    async def breaker_state(self, key: str) -> BreakerState:
        state = await self.store.breaker_state(key)
        self._remember(key, state)
        return state

    # -- admission -------------------------------------------------------------------------

    async def admit(
        self,
        choice: Place,
        *,
        limit_s: float | None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> Admission:
        admission = await self.store.admit(
            self.key(choice),
            slots=self.slots(choice),
            priors=self.priors(choice),
            limit_s=limit_s,
            cold_s=cold_s,
            server=server,
        )
        self._note_prediction(self.key(choice), admission.predicted_s)
        if admission.lease is not None:
            self.facts(choice).in_flight += 1
        return admission

    async def predict(
        self,
        choice: Place,
        lease: Lease | None = None,
        *,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> float:
        predicted = await self.store.predict(
            self.key(choice),
            slots=self.slots(choice),
            priors=self.priors(choice),
            lease=lease,
            cold_s=cold_s,
            server=server,
        )
        if lease is None:
            self._note_prediction(self.key(choice), predicted)
        return predicted

    def cached_prediction(self, choice: Place) -> float:
        """The last known prediction for a new request (no I/O; the prior's when none)."""
        known = self._predicted.get(self.key(choice))
        return known if known is not None else self.priors(choice).prompt_s

    async def first_token(self, choice: Place, lease: Lease) -> None:
        facts = self.facts(choice)
        facts.cold = False
        facts.last_answer_at = self._clock()
        await self.store.first_token(lease)

    async def finish(
        self, choice: Place, lease: Lease, *, ok: bool, load_s: float | None = None
    ) -> None:
        facts = self.facts(choice)
        facts.in_flight = max(facts.in_flight - 1, 0)
        await self.store.finish(lease, ok=ok, load_s=load_s)

    async def view(self, choice: Place) -> LoadView:
        return await self.store.view(self.key(choice), priors=self.priors(choice))

    async def observe_load(self, choice: Place, load_s: float) -> None:
        await self.store.observe(self.key(choice), load_s=load_s)

    # -- the gate of a route that refuses above its limit -------------------------------------

    def _gate(self, route: str) -> _Gate:
        gate = self._gates.get(route)
        if gate is None:
            backend = self._backends.get(route)
            configured = backend.config.capacity if backend is not None else None
            gate = self._gates[route] = _Gate(limit=configured)
        return gate

    def gate_limit(self, route: str) -> int | None:
        return self._gate(route).limit

    async def learn_limit(self, route: str, limit: int) -> None:
        """A 429 stated the account's concurrency limit: keep below it (every process)."""
        gate = self._gate(route)
        backend = self._backends.get(route)
        if backend is not None and backend.config.capacity is not None:
            return  # configured wins
        gate.limit = max(limit, 1)
        await self.store.fact_set(f"limit:{route}", str(gate.limit), ttl_s=_LIMIT_FACT_TTL_S)

    async def refresh_limit(self, route: str) -> None:
        """Pick up a limit another process learned."""
        gate = self._gate(route)
        backend = self._backends.get(route)
        if backend is not None and backend.config.capacity is not None:
            return
        shared = await self.store.fact_get(f"limit:{route}")
        if shared is not None and shared.isdigit():
            gate.limit = int(shared)

    async def gate_count(self, route: str) -> int:
        return await self.store.gate_count(route)

    async def gate_acquire(self, route: str) -> Lease:
        """A slot under the route's limit, waiting (FIFO in this process) for one.

        Every request takes one, the limit unknown or not, so that the count is right the
        moment a 429 states the limit.
        """
        gate = self._gate(route)
        if not gate.waiters:
            lease = await self.store.gate_take(route, limit=gate.limit or _UNBOUNDED)
            if lease is not None:
                return lease
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gate.waiters.append(waiter)
        try:
            while True:
                if gate.waiters[0] is waiter:
                    lease = await self.store.gate_take(route, limit=gate.limit or _UNBOUNDED)
                    if lease is not None:
                        return lease
                # Woken by a release in this process, or polling for one in another.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiter), _GATE_POLL_S)
                if waiter.done():
                    fresh: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    gate.waiters[gate.waiters.index(waiter)] = fresh
                    waiter = fresh
        finally:
            if waiter in gate.waiters:
                gate.waiters.remove(waiter)
            self._wake(gate)

    async def gate_release(self, route: str, lease: Lease) -> None:
        await self.store.gate_release(lease)
        self._wake(self._gate(route))

    @staticmethod
    def _wake(gate: _Gate) -> None:
        if gate.waiters and not gate.waiters[0].done():
            gate.waiters[0].set_result(None)

    def forget_loop(self) -> None:
        for gate in self._gates.values():
            gate.waiters.clear()

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """What this process knows, without asking the store (for `routes()` and /readyz)."""
        return {
            "breakers": {
                key: {
                    "state": c.state.state,
                    "failures": c.state.failures,
                    "steps": c.state.steps,
                    "retry_in": max(c.state.retry_in - (self._clock() - c.at), 0.0),
                    "reason": c.state.reason,
                }
                for key, c in self._breakers.items()
            },
            "local": {
                key.replace("|", " ", 1): {
                    "in_flight": f.in_flight,
                    "cold": f.cold,
                    "warming": f.warming,
                    "missing": f.missing,
                    "predicted_first_token_s": self._predicted.get(key),
                }
                for key, f in self._facts.items()
            },
            "gates": {route: {"limit": g.limit} for route, g in self._gates.items()},
            "store": vars(self.store.health()),
        }
