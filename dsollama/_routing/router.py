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
from .._catalogue import Catalogue
from .._config import Settings
from .._exceptions import DaemonUnreachableError, MissingAPIKeyError, ModelNotFoundError
from .._state import Admission, BreakerConfig, BreakerState, StateStore
from .._state.memory import MemoryStore
from .._types import EmbedResponse
from .backoff import RetryBudget
from .embed import EmbedRun
from .plan import Candidate, plan_candidates
from .run import CallRun
from .shapes import CallSink, Controls, RouteChoice, RoutedDelta, Skip
from .state import ModelFacts, RoutingState

__all__ = ["Router", "shared_budget"]

# Ollama keeps an idle model loaded for 5 minutes by default; a little less, to be safe.
_KEEP_ALIVE_GUESS_S = 240.0
# How long closing a client waits for finished calls to give their slots back.
_SETTLE_S = 2.0
# Below this many estimated tokens no DeepSeek model's context can overflow; skip the check.
_SMALL_PROMPT_TOKENS = 1536
# Plans kept per router (one per model, policy, privacy, think and fallbacks used).
_PLANS_KEPT = 256

_Plan = tuple[list[Candidate], list[RouteChoice], list[tuple[int, int]]]
"Candidates in configuration order, their route choices, and the [start, end) spans to rank."


def _tier(candidate: Candidate) -> tuple[bool, str]:
    """What `plan_candidates` ranks within: one tier (private or not), one chain model."""
    return candidate.route.private, candidate.requested


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
        store: StateStore | None = None,
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
        config = BreakerConfig(
            threshold=settings.breaker_threshold,
            cooldown=settings.breaker_cooldown,
            cooldown_max=settings.breaker_cooldown_max,
        )
        self.state = RoutingState(
            store or MemoryStore(breaker=config, clock=clock),
            settings,
            self._by_name,
            clock=clock,
        )
        self._background: set[asyncio.Task[None]] = set()
        "Warm-ups: cancelled when the client closes."
        self._settling: set[asyncio.Task[None]] = set()
        "Readers finishing an answer the caller already has: awaited when the client closes."
        self._plans: dict[tuple[object, ...], _Plan] = {}

    @property
    def private_routes(self) -> list[Backend]:
        return [b for b in self.backends if b.kind == "local"]

    # -- shared state ---------------------------------------------------------------------

    async def breaker_state(self, route: str) -> BreakerState:
        return await self.state.breaker_state(route)

    def status(self) -> dict[str, Any]:
        """Breakers, loads and the store, as this process knows them (no I/O)."""
        return self.state.status()

    # -- planning -------------------------------------------------------------------------

    def _rank(self, pair: tuple[Candidate, RouteChoice]) -> tuple[float, ...]:
        """Within a tier: the route predicted to answer first, then the cheaper one."""
        candidate, choice = pair
        price = 0.0
        if not candidate.route.private:
            listed = candidate.route.prices.get(candidate.model)
            if listed is not None:
                price = listed.output
            else:
                catalogue_price = self.catalogue.price(candidate.model)
                price = catalogue_price.output if catalogue_price is not None else 0.0
        return (self.state.cached_prediction(choice), price)

    def plan(self, spec: CallSpec, controls: Controls) -> list[RouteChoice]:
        """Ordered (route, model) choices for a call. Privacy first (see `plan.py`).

        The candidates depend only on the request's model, policy, privacy, ``think`` and
        fallbacks (routes, settings and catalogue are the router's own): they are worked
        out once per combination and kept. Only their order within a tier can change
        from call to call (`_rank`, by predicted first token), and only where a tier has
        more than one route for a model.
        """
        local_only = controls.local_only or controls.policy == "local-only"
        if (
            controls.policy == "hosted-first"
            and not local_only
            and not any(b.kind == "hosted" for b in self.backends)
        ):
            raise MissingAPIKeyError()
        key = (spec.model, controls.policy, local_only, spec.think, controls.fallback_models)
        try:
            plan = self._plans.get(key)
        except TypeError:  # an unhashable argument: plan this call alone
            plan = self._plan(spec.model, spec.think, controls, local_only)
        if plan is None:
            plan = self._plan(spec.model, spec.think, controls, local_only)
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()  # a program cycling through model names: start over
            self._plans[key] = plan
        candidates, choices, ranked = plan
        if not candidates and self.backends:
            error = ModelNotFoundError(spec.model, message=f"no route serves model {spec.model!r}")
            error.hint = (
                f"pull it (`dsollama pull {spec.model}`), or connect it to a route "
                "(hosted_model_map, a route's model_map; `dsollama routes` lists them)"
            )
            raise error
        if not ranked:
            return list(choices)
        ordered = list(choices)
        for start, end in ranked:
            span = zip(candidates[start:end], choices[start:end], strict=True)
            pairs = sorted(span, key=self._rank)
            ordered[start:end] = [choice for _, choice in pairs]
        return ordered

    def _plan(
        self, model: str, think: bool | str | None, controls: Controls, local_only: bool
    ) -> _Plan:
        """The candidates in configuration order, their choices, and the spans to rank."""
        candidates, _ = plan_candidates(
            model,
            [b.config for b in self.backends],
            catalogue=self.catalogue,
            settings=self.settings,
            policy=controls.policy,
            local_only=local_only,
            think=think,
            fallback_models=controls.fallback_models,
            rank=None,
        )
        choices = [
            RouteChoice(self._by_name[c.route.name], c.model, c.thinking) for c in candidates
        ]
        # `plan_candidates` ranks within runs of one tier and one chain model.
        ranked: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(candidates) + 1):
            if i == len(candidates) or _tier(candidates[i]) != _tier(candidates[start]):
                if i - start > 1:
                    ranked.append((start, i))
                start = i
        return candidates, choices, ranked

    def viable(self, choice: RouteChoice) -> bool:
        """Could this route take a request now (as far as this process knows, no I/O)?"""
        return self.state.viable(choice)

    async def admit(
        self, choice: RouteChoice, spec: CallSpec, controls: Controls, *, has_alternative: bool
    ) -> Skip | Admission:
        """Take a place on the route for this call, or say why not to try it now.

        With somewhere else to go, a request is admitted only when its first token is
        predicted within the budget (check-and-take, atomic in the store, so processes
        sharing a route cannot over-admit together). Raises `DaemonUnreachableError` when
        a pre-flight question found nothing listening: that is the attempt's answer, and
        the call moves on without another connect.
        """
        state = self.state
        limit: float | None = None
        if has_alternative:
            limit = controls.first_token_timeout
            if controls.admission == "latency":
                # Going elsewhere is worth it only when the first token comes sooner there.
                for other in self.backends:
                    if other is not choice.backend:
                        other_choice = RouteChoice(other, choice.model, None)
                        limit = min(limit, state.cached_prediction(other_choice))
        cold_s = 0.0
        server = None
        if not state.refuses(choice):
            facts = state.facts(choice)
            if has_alternative:
                await self._check_warm(choice, facts)
            if facts.missing:
                return Skip(
                    f"model not pulled on the {choice.kind} route (run `dsollama pull {choice.model}`)"
                )
            if facts.cold:
                view = await state.view(choice)
                if view.estimates.load_samples:
                    cold_s = view.estimates.load_s  # measured, never a guess
            server = await choice.backend.server_queue(choice.model)
            if server is not None:
                state.learn_capacity(choice.route, server)
            tokens = _estimate_prompt_tokens(spec) if has_alternative else 0
            if tokens > _SMALL_PROMPT_TOKENS:
                window = await _context_window(choice, spec)
                if window is not None and tokens > window:
                    return Skip(f"prompt ~{tokens} tokens > {choice.kind} context {window}")
        else:
            # A route that refuses above its limit is only predicted late once it is at
            # that limit; below it (or with no limit known) a request goes straight in.
            await state.refresh_limit(choice.route)
            gate_limit = state.gate_limit(choice.route)
            if gate_limit is None or await state.gate_count(choice.route) < gate_limit:
                limit = None
        admission = await state.admit(choice, limit_s=limit, cold_s=cold_s, server=server)
        if admission.lease is not None:
            return admission
        assert limit is not None
        predicted = admission.predicted_s
        if state.refuses(choice):
            return Skip(
                f"{choice.kind} at its concurrency limit (limit {state.gate_limit(choice.route)}): "
                f"first token predicted in {predicted:.1f}s > {limit:.1f}s",
                deferrable=True,
            )
        if cold_s and admission.in_flight == 0:
            return Skip(
                f"local model not loaded: a cold load (~{cold_s:.1f}s) puts the first "
                f"token at {predicted:.1f}s > {limit:.1f}s",
                deferrable=True,
            )
        queued = f"{admission.in_flight} in flight on {state.slots(choice)} slot(s)"
        if server is not None:
            queued += f" (the server reports {server.running} running, {server.waiting} waiting)"
        return Skip(
            f"{choice.kind} busy: {queued}, first token predicted in {predicted:.1f}s > {limit:.1f}s",
            deferrable=True,
        )

    async def _check_warm(self, choice: RouteChoice, facts: ModelFacts) -> None:
        """Ask the server whether an idle model is still loaded (a cold load can take minutes).

        Only when nothing of ours is in flight and the model has not answered recently:
        a model that answered within Ollama's default keep-alive is still loaded.
        """
        if facts.in_flight:
            return
        idle = facts.idle_for(self.clock())
        if idle is not None and idle < _KEEP_ALIVE_GUESS_S:
            return
        model_state = await choice.backend.model_state(choice.model)  # unreachable: raises
        if model_state is None:
            return  # the server cannot say; the call itself will find out
        facts.cold = model_state != "loaded"
        facts.missing = model_state == "missing"
        if not facts.cold or facts.missing or facts.warming:
            return
        # Whether or not this call waits for it, load the model now so the next calls can
        # stay local (loading sends no content anywhere), and measure how long it takes.
        facts.warming = True
        backend, state, clock = choice.backend, self.state, self.clock

        async def warm_up() -> None:
            try:
                seconds = await backend.warm(choice.model)
                if seconds is not None:
                    await state.observe_load(choice, seconds)
                    facts.cold = False
                    facts.last_answer_at = clock()
            finally:
                facts.warming = False

        task = asyncio.get_running_loop().create_task(warm_up())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- running --------------------------------------------------------------------------

    def run(self, spec: CallSpec, controls: Controls) -> AsyncIterator[RoutedDelta]:
        return CallRun(self, spec, controls).execute()

    async def embed(self, spec: EmbedSpec, controls: Controls) -> EmbedResponse:
        return await EmbedRun(self, spec, controls).execute()

    def settle(self, task: asyncio.Task[None]) -> None:
        """Let a finished call's reader end in the background (see `close_connections`)."""
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def forget_loop(self) -> None:
        """The event loop changed: what belonged to the old one is gone with it."""
        self._background.clear()
        self._settling.clear()
        self.state.forget_loop()

    async def close_connections(self) -> None:
        if self._settling:
            # Their slots go back to the store before it closes (briefly: only a tail).
            await asyncio.wait(set(self._settling), timeout=_SETTLE_S)
        for task in [*self._background, *self._settling]:
            task.cancel()
        for backend in self.backends:
            await backend.aclose()
        await self.state.store.aclose()

    async def aclose(self) -> None:
        await self.close_connections()


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
