"""The router: the routing state of a client, and the plan for each call.

The journey of one call is `run.CallRun`; what it records is `record.CallBook`.
Overall:

For each call it plans an ordered list of routes (by policy and privacy), then:

1. skips routes that cannot help right now — breaker open, predicted first token past the
   budget (local admission, see `admission.py`), prompt larger than the local context,
   images for the hosted route — recording why;
2. starts the first usable route in a *reader task* that pulls `Delta`s from the backend
   into a queue, under a watchdog for the gap between chunks and the total deadline;
3. waits for the first token within the first-token budget when another route exists;
   past the budget it moves on (cancelling the slow route) or, with hedging, races both
   and keeps whichever produces a token first;
4. on failure asks `policy.classify` what to do: retry (full-jitter backoff, Retry-After
   clamped, process-wide retry budget), next route, or raise;
5. commits to the route that produced the first token. A non-streaming caller has seen
   nothing yet, so later failures are still retried or moved elsewhere. A streaming
   caller has, so a later failure raises `StreamInterruptedError` with the partial text,
   or — when allowed — continues on the hosted route by prefix completion (a `Seam`).

Every call ends in exactly one `CallRecord` for the sinks and one INFO log line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .._backends import Backend, CallSpec
from .._catalogue import Catalogue, normalise_model_name
from .._config import Settings
from .._exceptions import (
    DsollamaError,
    MissingAPIKeyError,
)
from .admission import HostedLoad, RouteLoad
from .backoff import Breaker, RetryBudget
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
        local: Sequence[Backend],
        hosted: Backend | None,
        sinks: Sequence[CallSink] = (),
        budget: RetryBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.local = list(local)
        self.hosted = hosted
        self.sinks = list(sinks)
        self.budget = budget or shared_budget(settings)
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        self._loads: dict[tuple[str, str], RouteLoad] = {}
        self._hosted_loads: dict[str, HostedLoad] = {}
        self._background: set[asyncio.Task[None]] = set()

    # -- shared state ---------------------------------------------------------------------

    def breaker(self, route: str) -> Breaker:
        breaker = self._breakers.get(route)
        if breaker is None:
            s = self.settings
            breaker = Breaker(
                threshold=s.breaker_threshold,
                cooldown=s.breaker_cooldown,
                cooldown_max=s.breaker_cooldown_max,
                clock=self._clock,
            )
            self._breakers[route] = breaker
        return breaker

    def load(self, route: str, model: str) -> RouteLoad:
        key = (route, normalise_model_name(model))
        load = self._loads.get(key)
        if load is None:
            budget = self.settings.first_token_timeout
            load = RouteLoad(
                slots=self.settings.local_slots,
                prompt_prior=min(0.5, budget / 4),
                generation_prior=budget / 2,
                clock=self._clock,
            )
            self._loads[key] = load
        return load

    def load_for(self, choice: RouteChoice) -> RouteLoad:
        """The queue model of the route a choice goes to."""
        if choice.kind == "hosted":
            return self.hosted_load(choice.route)
        return self.load(choice.route, choice.model)

    def hosted_load(self, route: str) -> HostedLoad:
        load = self._hosted_loads.get(route)
        if load is None:
            load = self._hosted_loads[route] = HostedLoad(limit=self.settings.hosted_concurrency)
        return load

    def status(self) -> dict[str, Any]:
        """Breakers and local loads, for `dsollama status`, /readyz and debugging."""
        return {
            "breakers": {route: vars(b.snapshot()) for route, b in self._breakers.items()},
            "local": {f"{r} {m}": vars(load.snapshot()) for (r, m), load in self._loads.items()},
            "hosted": {
                route: {**vars(h.snapshot()), "limit": h.limit, "sent": h.sent}
                for route, h in self._hosted_loads.items()
            },
        }

    # -- planning -------------------------------------------------------------------------

    def plan(self, spec: CallSpec, controls: Controls) -> list[RouteChoice]:
        """Ordered routes for a call. Privacy first: no hosted route unless allowed."""
        settings = self.settings
        requested = spec.model
        hosted_names = set(self.catalogue.hosted) | set(self.catalogue.retired_hosted)
        asked_hosted = requested in hosted_names
        if asked_hosted:
            hosted_model = requested
            catalogue_thinking = (
                self.catalogue.hosted[requested].thinking_default
                if requested in self.catalogue.hosted
                else True
            )
        else:
            hosted_model, catalogue_thinking = self.catalogue.hosted_for(
                requested, settings.hosted_model_map
            )
            if settings.hosted_model:
                hosted_model = settings.hosted_model
        thinking = _hosted_thinking(spec.think, catalogue_thinking)
        local_model = (
            self.catalogue.local_for(hosted_model, thinking) if asked_hosted else requested
        )

        local_only = controls.local_only or controls.policy == "local-only"
        hosted_allowed = not local_only and (controls.policy == "hosted-first" or settings.fallback)
        if controls.policy == "hosted-first" and not local_only and self.hosted is None:
            raise MissingAPIKeyError()

        local_routes = [RouteChoice(b, local_model, None) for b in self.local]
        # Several hosts share load: the one predicted to answer first goes first.
        local_routes.sort(key=lambda c: self.load(c.route, c.model).predict_first_token())
        hosted_routes = (
            [RouteChoice(self.hosted, hosted_model, thinking)]
            if hosted_allowed and self.hosted is not None
            else []
        )
        if controls.policy == "hosted-first" and not local_only:
            return hosted_routes + (local_routes if settings.fallback else [])
        return local_routes + hosted_routes

    def viable(self, choice: RouteChoice) -> bool:
        """Could this route take a request now (without using up a half-open probe)?"""
        return self.breaker(choice.route).snapshot().state != "open"

    async def skip_reason(
        self, choice: RouteChoice, spec: CallSpec, controls: Controls, *, has_alternative: bool
    ) -> Skip | None:
        """Why not to try this route now for this call (None = try it)."""
        if choice.kind == "hosted" and spec.has_images():
            return Skip("images cannot go to the hosted route")
        if choice.kind == "hosted" and has_alternative:
            hosted = self.hosted_load(choice.route)
            if hosted.at_capacity():
                predicted = hosted.predict_first_token()
                if predicted > controls.first_token_timeout:
                    return Skip(
                        f"hosted at its concurrency limit ({hosted.sent} sent, limit {hosted.limit}): "
                        f"first token predicted in {predicted:.1f}s > {controls.first_token_timeout:.1f}s",
                        deferrable=True,
                    )
        if choice.kind != "local" or not has_alternative:
            return None
        load = self.load(choice.route, choice.model)
        await self._check_warm(choice, load)
        if load.missing:
            return Skip(
                f"model not pulled on the local daemon (run `dsollama pull {choice.model}`)"
            )
        predicted = load.predict_first_token()
        limit = controls.first_token_timeout
        if controls.admission == "latency" and self.hosted is not None:
            # Queueing for a hosted route at its concurrency limit is in the prediction.
            limit = min(limit, self.hosted_load(self.hosted.route).predict_first_token())
        if predicted > limit:
            snap = load.snapshot()
            if load.cold and snap.in_flight == 0:
                return Skip(
                    f"local model not loaded: a cold load (~{snap.load_s:.1f}s) puts the first "
                    f"token at {predicted:.1f}s > {limit:.1f}s",
                    deferrable=True,
                )
            return Skip(
                f"local busy: {snap.in_flight} in flight on {snap.slots} slot(s), "
                f"first token predicted in {predicted:.1f}s > {limit:.1f}s",
                deferrable=True,
            )
        tokens = _estimate_prompt_tokens(spec)
        if tokens > _SMALL_PROMPT_TOKENS:
            window = await _context_window(choice, spec)
            if window is not None and tokens > window:
                return Skip(f"prompt ~{tokens} tokens > local context {window}")
        return None

    async def _check_warm(self, choice: RouteChoice, load: RouteLoad) -> None:
        """Ask /api/ps whether an idle model is still loaded (a cold load can take minutes).

        Only when nothing of ours is in flight and the model has not answered recently:
        a model that answered within Ollama's default keep-alive is still loaded.
        """
        if load.in_flight:
            return
        idle = load.idle_for()
        if idle is not None and idle < _KEEP_ALIVE_GUESS_S:
            return
        lookup = getattr(choice.backend, "loaded_models", None)
        if lookup is None:
            return
        try:
            loaded: set[str] = await lookup()
        except DsollamaError:
            return  # the call itself will find out, at no extra cost
        name = normalise_model_name(choice.model)
        load.cold = name not in loaded
        if not load.cold:
            load.missing = False
            return
        installed = getattr(choice.backend, "installed_models", None)
        if installed is not None:
            try:
                load.missing = name not in await installed()
            except DsollamaError:
                return
            if load.missing:
                return  # nothing to warm: it has to be pulled first
        if load.load.samples == 0:
            entry = self.catalogue.resolve(choice.model)
            if entry is not None and entry.size_bytes:
                # Until a real load is seen: reading the weights at ~2 GB/s, plus start-up.
                load.load.value = 1.0 + entry.size_bytes / 2e9
        warm = getattr(choice.backend, "warm", None)
        if warm is not None and not load.warming:
            # If this call goes elsewhere because the model is cold, load it now, so the
            # next calls can stay local (loading sends no content anywhere).
            load.warming = True

            async def warm_up() -> None:
                seconds: float | None = None
                try:
                    seconds = await warm(choice.model)
                finally:
                    load.warmed(seconds)

            task = asyncio.get_running_loop().create_task(warm_up())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- running --------------------------------------------------------------------------

    def run(self, spec: CallSpec, controls: Controls) -> AsyncIterator[RoutedDelta]:
        return CallRun(self, spec, controls).execute()


def _hosted_thinking(think: bool | str | None, default: bool) -> bool:
    if think is None:
        return default
    if isinstance(think, bool):
        return think
    return True  # a level ("low"/"high"/…) means thinking on


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
    if isinstance(num_ctx, int) and num_ctx > 0:
        return num_ctx
    lookup = getattr(choice.backend, "context_window", None)
    if lookup is None:
        return None
    window = await lookup(choice.model)
    return int(window) if window is not None else None


_SHARED_BUDGETS: dict[tuple[float, int], RetryBudget] = {}


def shared_budget(settings: Settings) -> RetryBudget:
    """The process-wide retry budget (one per budget setting), shared by every client."""
    key = (settings.retry_budget_ratio, settings.retry_budget_floor)
    budget = _SHARED_BUDGETS.get(key)
    if budget is None:
        budget = _SHARED_BUDGETS[key] = RetryBudget(ratio=key[0], floor=key[1])
    return budget
