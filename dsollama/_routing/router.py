"""The router: the routing state of a client, and the plan for each call.

The journey of one call is `run.CallRun` (its record is a `record.CallBook`); the order
of (route, model) candidates is `plan.plan_candidates`, one table for every door.
Overall, for each call:

1. plan the candidates (by policy and privacy; see `plan.py`), then skip those that
   cannot help right now — breaker open, predicted first token past the budget
   (admission, see `admission.py`), prompt larger than the route's context, a capability
   the call needs and the route lacks — recording why;
2. start the first usable candidate in a *reader task* that pulls `Delta`s from the
   backend into a queue, under a watchdog for the gap between chunks and the total
   deadline;
3. wait for the first token within the first-token budget when another route exists;
   past the budget move on (cancelling the slow route) or, with hedging, race both and
   keep whichever produces a token first;
4. on failure ask `policy.classify` what to do: retry (full-jitter backoff, Retry-After
   clamped, the client's retry budget), next route, or raise;
5. commit to the route that produced the first token. A non-streaming caller has seen
   nothing yet, so later failures are still retried or moved elsewhere. A streaming
   caller has, so a later failure raises `StreamInterruptedError` with the partial text,
   or — when allowed — continues on a route that can continue a prefix (a `Seam`).

Every call ends in exactly one `CallRecord` for the sinks and one INFO log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .._backends import Backend, CallSpec, EmbedSpec
from .._catalogue import Catalogue, normalise_model_name
from .._config import Settings
from .._exceptions import DaemonUnreachableError, MissingAPIKeyError, ModelNotFoundError
from .._types import EmbedResponse
from .admission import HostedLoad, RouteLoad
from .backoff import Breaker, BreakerState, RetryBudget
from .embed import EmbedRun
from .plan import Candidate, plan_candidates
from .run import CallRun
from .shapes import CallSink, Controls, RouteChoice, RoutedDelta, Skip

__all__ = ["Router", "shared_budget"]

# Ollama keeps an idle model loaded for 5 minutes by default; a little less, to be safe.
_KEEP_ALIVE_GUESS_S = 240.0
# Below this many estimated tokens no DeepSeek model's context can overflow; skip the check.
_SMALL_PROMPT_TOKENS = 1536


class Router:
    """Routing state shared by all calls of one client: breakers, loads, estimates."""

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        *,
        backends: Sequence[Backend],
        sinks: Sequence[CallSink] = (),
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.backends = list(backends)
        self._by_name = {b.route: b for b in self.backends}
        self.sinks = list(sinks)
        self.budget = budget or RetryBudget(
            ratio=settings.retry_budget_ratio, floor=settings.retry_budget_floor
        )
        self.clock = clock
        self._breakers: dict[str, Breaker] = {}
        self._loads: dict[tuple[str, str], RouteLoad] = {}
        self._hosted_loads: dict[str, HostedLoad] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def private_routes(self) -> list[Backend]:
        return [b for b in self.backends if b.kind == "local"]

    # -- shared state ---------------------------------------------------------------------

    def breaker(self, route: str) -> Breaker:
        breaker = self._breakers.get(route)
        if breaker is None:
            s = self.settings
            breaker = Breaker(
                threshold=s.breaker_threshold,
                cooldown=s.breaker_cooldown,
                cooldown_max=s.breaker_cooldown_max,
                clock=self.clock,
            )
            self._breakers[route] = breaker
        return breaker

    def load(self, route: str, model: str) -> RouteLoad:
        key = (route, normalise_model_name(model))
        load = self._loads.get(key)
        if load is None:
            budget = self.settings.first_token_timeout
            backend = self._by_name.get(route)
            slots = (backend.config.capacity if backend is not None else None) or 1
            load = RouteLoad(
                slots=slots,
                prompt_prior=min(0.5, budget / 4),
                generation_prior=budget / 2,
                clock=self.clock,
            )
            self._loads[key] = load
        return load

    def gate_for(self, choice: RouteChoice) -> HostedLoad | None:
        """The client-side gate of a route that refuses work above its limit (a 429)."""
        if choice.backend.config.over_capacity != "refuses":
            return None
        return self.hosted_load(choice.route)

    def load_for(self, choice: RouteChoice) -> RouteLoad:
        """The queue model of the route a choice goes to."""
        gate = self.gate_for(choice)
        if gate is not None:
            return gate
        return self.load(choice.route, choice.model)

    def hosted_load(self, route: str) -> HostedLoad:
        load = self._hosted_loads.get(route)
        if load is None:
            backend = self._by_name.get(route)
            limit = backend.config.capacity if backend is not None else None
            load = self._hosted_loads[route] = HostedLoad(limit=limit)
        return load

    def status(self) -> dict[str, Any]:
        """Breakers and loads, for `dsollama status`, /readyz and debugging."""
        return {
            "breakers": {route: vars(b.snapshot()) for route, b in self._breakers.items()},
            "local": {f"{r} {m}": vars(load.snapshot()) for (r, m), load in self._loads.items()},
            "hosted": {
                route: {**vars(h.snapshot()), "limit": h.limit, "sent": h.sent}
                for route, h in self._hosted_loads.items()
            },
        }

    # -- planning -------------------------------------------------------------------------

    def _rank(self, candidate: Candidate) -> tuple[float, ...]:
        """Within a tier: the route predicted to answer first, then the cheaper one."""
        backend = self._by_name[candidate.route.name]
        choice = RouteChoice(backend, candidate.model, candidate.thinking)
        price = 0.0
        if not candidate.route.private:
            listed = candidate.route.prices.get(candidate.model)
            if listed is not None:
                price = listed.output
            else:
                catalogue_price = self.catalogue.price(candidate.model)
                price = catalogue_price.output if catalogue_price is not None else 0.0
        return (self.load_for(choice).predict_first_token(), price)

    def plan(self, spec: CallSpec, controls: Controls) -> list[RouteChoice]:
        """Ordered (route, model) choices for a call. Privacy first (see `plan.py`)."""
        local_only = controls.local_only or controls.policy == "local-only"
        if (
            controls.policy == "hosted-first"
            and not local_only
            and not any(b.kind == "hosted" for b in self.backends)
        ):
            raise MissingAPIKeyError()
        candidates, _ = plan_candidates(
            spec.model,
            [b.config for b in self.backends],
            catalogue=self.catalogue,
            settings=self.settings,
            policy=controls.policy,
            local_only=local_only,
            think=spec.think,
            fallback_models=controls.fallback_models,
            rank=self._rank,
        )
        if not candidates and self.backends:
            error = ModelNotFoundError(spec.model, message=f"no route serves model {spec.model!r}")
            error.hint = (
                f"pull it (`dsollama pull {spec.model}`), or connect it to a route "
                "(hosted_model_map, a route's model_map; `dsollama routes` lists them)"
            )
            raise error
        return [RouteChoice(self._by_name[c.route.name], c.model, c.thinking) for c in candidates]

    async def breaker_state(self, route: str) -> BreakerState:
        return self.breaker(route).snapshot()

    def viable(self, choice: RouteChoice) -> bool:
        """Could this route take a request now (without using up a half-open probe)?"""
        return self.breaker(choice.route).snapshot().state != "open"

    async def skip_reason(
        self, choice: RouteChoice, spec: CallSpec, controls: Controls, *, has_alternative: bool
    ) -> Skip | None:
        """Why not to try this route now for this call (None = try it).

        Raises `DaemonUnreachableError` when a pre-flight question found nothing listening:
        that is the attempt's answer, and the call moves on without another connect.
        """
        gap = _capability_gap(choice, spec)
        if gap is not None:
            return Skip(gap)
        gate = self.gate_for(choice)
        if gate is not None:
            if has_alternative and gate.at_capacity():
                predicted = gate.predict_first_token()
                if predicted > controls.first_token_timeout:
                    return Skip(
                        f"{choice.kind} at its concurrency limit ({gate.sent} sent, limit {gate.limit}): "
                        f"first token predicted in {predicted:.1f}s > {controls.first_token_timeout:.1f}s",
                        deferrable=True,
                    )
            return None
        if not has_alternative:
            return None
        load = self.load(choice.route, choice.model)
        await self._check_warm(choice, load)
        if load.missing:
            return Skip(
                f"model not pulled on the local daemon (run `dsollama pull {choice.model}`)"
            )
        predicted = load.predict_first_token()
        limit = controls.first_token_timeout
        if controls.admission == "latency":
            # Queueing for a route at its concurrency limit is in the prediction.
            for other in self.backends:
                if other is not choice.backend and other.config.over_capacity == "refuses":
                    limit = min(limit, self.hosted_load(other.route).predict_first_token())
        if predicted > limit:
            snap = load.snapshot()
            if load.cold and snap.in_flight == 0:
                return Skip(
                    f"local model not loaded: a cold load (~{snap.load_s:.1f}s) puts the first "
                    f"token at {predicted:.1f}s > {limit:.1f}s",
                    deferrable=True,
                )
            return Skip(
                f"{choice.kind} busy: {snap.in_flight} in flight on {snap.slots} slot(s), "
                f"first token predicted in {predicted:.1f}s > {limit:.1f}s",
                deferrable=True,
            )
        tokens = _estimate_prompt_tokens(spec)
        if tokens > _SMALL_PROMPT_TOKENS:
            window = await _context_window(choice, spec)
            if window is not None and tokens > window:
                return Skip(f"prompt ~{tokens} tokens > {choice.kind} context {window}")
        return None

    async def _check_warm(self, choice: RouteChoice, load: RouteLoad) -> None:
        """Ask the server whether an idle model is still loaded (a cold load can take minutes).

        Only when nothing of ours is in flight and the model has not answered recently:
        a model that answered within Ollama's default keep-alive is still loaded.
        """
        if load.in_flight:
            return
        idle = load.idle_for()
        if idle is not None and idle < _KEEP_ALIVE_GUESS_S:
            return
        state = await choice.backend.model_state(choice.model)  # DaemonUnreachableError ends it
        if state is None:
            return  # the server cannot say; the call itself will find out
        load.cold = state != "loaded"
        load.missing = state == "missing"
        if not load.cold or load.missing:
            return
        if not load.warming:
            # If this call goes elsewhere because the model is cold, load it now, so the
            # next calls can stay local (loading sends no content anywhere).
            load.warming = True
            backend = choice.backend

            async def warm_up() -> None:
                seconds: float | None = None
                try:
                    seconds = await backend.warm(choice.model)
                finally:
                    load.warmed(seconds)

            task = asyncio.get_running_loop().create_task(warm_up())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- running --------------------------------------------------------------------------

    def run(self, spec: CallSpec, controls: Controls) -> AsyncIterator[RoutedDelta]:
        return CallRun(self, spec, controls).execute()

    async def embed(self, spec: EmbedSpec, controls: Controls) -> EmbedResponse:
        return await EmbedRun(self, spec, controls).execute()

    def forget_loop(self) -> None:
        """The event loop changed: what belonged to the old one is gone with it."""
        self._background.clear()
        for gate in self._hosted_loads.values():
            gate.forget_waiters()

    async def close_connections(self) -> None:
        for task in list(self._background):
            task.cancel()
        for backend in self.backends:
            await backend.aclose()

    async def aclose(self) -> None:
        await self.close_connections()


def _capability_gap(choice: RouteChoice, spec: CallSpec) -> str | None:
    caps = choice.backend.capabilities
    if spec.has_images() and not caps.images:
        return f"images cannot go to the {choice.kind} route ({choice.route})"
    if spec.tools and not caps.tools:
        return f"the {choice.kind} route {choice.route} has no tool calling"
    if spec.operation == "generate" and spec.suffix and not caps.fim:
        return f"the {choice.kind} route {choice.route} has no fill-in-the-middle (suffix=)"
    return None


def _estimate_prompt_tokens(spec: CallSpec) -> int:
    """A cheap, deliberately generous token estimate (CJK ~1 token per char, else ~4 chars)."""
    texts: list[str] = []
    for message in spec.messages or ():
        content = (
            message.get("content")
            if isinstance(message, dict)
            else getattr(message, "content", None)
        )
        if content:
            texts.append(str(content))
    for extra in (spec.prompt, spec.system, spec.suffix):
        if extra:
            texts.append(extra)
    total = 0
    for text in texts:
        cjk = sum(1 for ch in text if "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
        total += cjk + (len(text) - cjk + 3) // 4
    return total


async def _context_window(choice: RouteChoice, spec: CallSpec) -> int | None:
    num_ctx = (spec.options or {}).get("num_ctx") if isinstance(spec.options, dict) else None
    if isinstance(num_ctx, int) and num_ctx > 0 and choice.backend.api == "ollama":
        return num_ctx
    try:
        return await choice.backend.context_window(choice.model)
    except DaemonUnreachableError:
        raise
    except Exception:  # a context lookup must never fail a call; the call finds out
        return None


_SHARED_BUDGETS: dict[tuple[float, int], RetryBudget] = {}


def shared_budget(settings: Settings) -> RetryBudget:
    """The process-wide retry budget (one per budget setting), for clients that share one."""
    key = (settings.retry_budget_ratio, settings.retry_budget_floor)
    budget = _SHARED_BUDGETS.get(key)
    if budget is None:
        budget = _SHARED_BUDGETS[key] = RetryBudget(ratio=key[0], floor=key[1])
    return budget
