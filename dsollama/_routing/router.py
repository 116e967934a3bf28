"""The router: one call, many possible routes, one honest answer.

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
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._backends import Backend, CallSpec, StreamStats
from .._catalogue import Catalogue, normalise_model_name
from .._config import Policy, Settings
from .._delta import Delta
from .._exceptions import (
    AllRoutesFailedError,
    BackendTimeoutError,
    DsollamaError,
    IncompleteResponseError,
    MissingAPIKeyError,
    StreamInterruptedError,
    UnsupportedRequestError,
    error_fields,
    redact,
)
from .._types import Attempt, CallRecord, HostedUsage, Seam, ServedBy
from .admission import HostedLoad, RouteLoad, Ticket
from .backoff import Breaker, RetryBudget, backoff_delay
from .deadline import Watchdog
from .policy import Action, BreakerEffect, Decision, classify

__all__ = ["CallSink", "CallSummary", "Controls", "RouteChoice", "RoutedDelta", "Router", "Skip"]

log = logging.getLogger("dsollama")

# 401 keeps the hosted route off for the rest of the process; 402 for a long while.
_DISABLE_SESSION_S = 10 * 365 * 24 * 3600.0
_DISABLE_LONG_S = 3600.0
# Ollama keeps an idle model loaded for 5 minutes by default; a little less, to be safe.
_KEEP_ALIVE_GUESS_S = 240.0
# Below this many estimated tokens no DeepSeek model's context can overflow; skip the check.
_SMALL_PROMPT_TOKENS = 1536


@runtime_checkable
class CallSink(Protocol):
    """Receives one `CallRecord` per finished call; must not block or raise."""

    def record(self, rec: CallRecord) -> None: ...


@dataclass(frozen=True)
class Controls:
    """Per-call routing controls, resolved from arguments and settings."""

    policy: Policy
    local_only: bool
    first_token_timeout: float
    gap_timeout: float
    total_timeout: float
    continue_stream: bool
    hedge: bool
    admission: Literal["budget", "latency"] = "budget"
    log: bool = True
    source: str = "library"


@dataclass(frozen=True)
class Skip:
    """Why a route is not tried for a call."""

    reason: str
    deferrable: bool = False
    "Only slow right now (busy, cold): still worth trying if every other route fails."


@dataclass(frozen=True)
class RouteChoice:
    backend: Backend
    model: str
    thinking: bool | None
    "Hosted: the thinking switch to send. Local: None (the request's own `think` applies)."

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def route(self) -> str:
        return self.backend.route

    def served_by(self) -> ServedBy:
        # Built once per route choice: every chunk of an answer carries the same object.
        cached: ServedBy | None = self.__dict__.get("_served_by")
        if cached is None:
            cached = ServedBy(
                kind=self.backend.kind,
                route=self.backend.route,
                endpoint=self.backend.endpoint,
                model=self.model,
                thinking=self.thinking,
            )
            object.__setattr__(self, "_served_by", cached)
        return cached


@dataclass
class CallSummary:
    attempts: list[Attempt]
    fallback_reason: str | None
    seams: list[Seam]
    usage: HostedUsage | None
    cost_usd: float | None
    ttft_s: float | None
    total_s: float
    ignored: list[str] = field(default_factory=list)
    "Arguments the serving route could not honour (from the hosted translation)."


@dataclass
class RoutedDelta:
    delta: Delta
    served_by: ServedBy
    summary: CallSummary | None = None
    "Set on the final delta of the call."


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_QueueItem = Delta | _Failure


@dataclass(eq=False)
class _Racer:
    """One attempt on one route: a reader task feeding a queue."""

    choice: RouteChoice
    attempt_no: int
    started: float
    started_wall: float
    queue: asyncio.Queue[_QueueItem] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    ticket: Ticket | None = None
    load: RouteLoad | None = None
    first_token_at: float | None = None
    predicted: float | None = None
    "Predicted seconds to the first token when the racer started."
    peeked: _QueueItem | None = None
    budget_spent: bool = False
    "True once this racer's first-token budget has passed (hedged, so no second deadline)."
    continuation: tuple[str, str] | None = None
    "(partial content, partial thinking) when this racer continues a broken stream."


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
        return _Run(self, spec, controls).execute()


def _breaker_reason(breaker: Breaker) -> str:
    snap = breaker.snapshot()
    if snap.state == "half-open":
        return f"another call is probing the route ({snap.reason})"
    return f"breaker open for {snap.retry_in:.0f}s ({snap.reason})"


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


def merge_deltas(deltas: Sequence[Delta]) -> Delta:
    """One delta holding a whole answer (for non-streaming callers)."""
    if not deltas:
        return Delta(done=True, done_reason="stop")
    final = deltas[-1]
    merged = Delta(
        content="".join(d.content for d in deltas),
        thinking="".join(d.thinking for d in deltas),
        tool_calls=[call for d in deltas for call in d.tool_calls],
        done=final.done,
        done_reason=final.done_reason,
        model=final.model or next((d.model for d in deltas if d.model), None),
        prompt_tokens=final.prompt_tokens,
        completion_tokens=final.completion_tokens,
        reasoning_tokens=final.reasoning_tokens,
        cached_tokens=final.cached_tokens,
        total_duration_ns=final.total_duration_ns,
        load_duration_ns=final.load_duration_ns,
        prompt_eval_duration_ns=final.prompt_eval_duration_ns,
        eval_duration_ns=final.eval_duration_ns,
        context=final.context,
    )
    return merged


_SHARED_BUDGETS: dict[tuple[float, int], RetryBudget] = {}


def shared_budget(settings: Settings) -> RetryBudget:
    """The process-wide retry budget (one per budget setting), shared by every client."""
    key = (settings.retry_budget_ratio, settings.retry_budget_floor)
    budget = _SHARED_BUDGETS.get(key)
    if budget is None:
        budget = _SHARED_BUDGETS[key] = RetryBudget(ratio=key[0], floor=key[1])
    return budget


class _Exhausted(Exception):
    """No route is left to try (internal)."""


class _Run:
    """One call's journey through the routes."""

    def __init__(self, router: Router, spec: CallSpec, controls: Controls) -> None:
        self.router = router
        self.spec = spec
        self.controls = controls
        self.settings = router.settings
        self.clock = router._clock
        self.started = self.clock()
        self.started_wall = time.time()
        self.deadline = self.started + controls.total_timeout
        self.routes: list[RouteChoice] = []
        self.next_index = 0
        self.racers: list[_Racer] = []
        self.deferred: list[RouteChoice] = []
        "Routes skipped as busy or cold: the last resort when everything else fails."
        self.attempts: list[Attempt] = []
        self.fallback_reason: str | None = None
        self.seams: list[Seam] = []
        self.delivered_content = ""
        self.delivered_thinking = ""
        self.ttft_s: float | None = None
        self.usage: HostedUsage | None = None
        self.cost_usd: float = 0.0
        self.cost_known = False
        self.last_error: BaseException | None = None
        self.winner: _Racer | None = None

    def remaining(self) -> float:
        return self.deadline - self.clock()

    # -- the whole call -------------------------------------------------------------------

    async def execute(self) -> AsyncIterator[RoutedDelta]:
        self.router.budget.record_call()
        outcome_error: BaseException | None = None
        delivered = False
        final: Delta | None = None
        answer: list[Delta] = []
        try:
            self.routes = self.router.plan(self.spec, self.controls)
            if not self.routes:
                raise AllRoutesFailedError(
                    "no route can serve this call",
                    hint="start Ollama, or set DEEPSEEK_API_KEY to allow the hosted route",
                )
            racer, item = await self._acquire()
            while True:
                if isinstance(item, _Failure):
                    racer, item = await self._recover(racer, item.error, answer)
                    continue
                delta = item
                if self.spec.stream:
                    self._track_delivered(delta)
                else:
                    answer.append(delta)
                if delta.done:
                    final = delta
                    break
                if self.spec.stream:
                    yield RoutedDelta(delta, racer.choice.served_by())
                item = await self._next_item(racer)
            self._succeed(racer, final)
            summary = self._summary()
            out = merge_deltas(answer) if not self.spec.stream else final
            delivered = True
            yield RoutedDelta(out, racer.choice.served_by(), summary)
        except BaseException as exc:
            # A consumer that stops right after the final delta closes us at that yield:
            # the call succeeded all the same.
            if not (delivered and isinstance(exc, GeneratorExit)):
                outcome_error = exc
            raise
        finally:
            await self._cancel_all("cancelled")
            self._emit_record(final, answer, outcome_error)

    # -- acquiring a route that produces a first token -------------------------------------

    async def _acquire(self) -> tuple[_Racer, _QueueItem]:
        """Start routes until one produces its first token (or raise when none can)."""
        while True:
            if not self.racers and not await self._start_next():
                raise self._exhausted()
            if self.remaining() <= 0:
                await self._fail_racers_on_deadline()
                raise self._exhausted()
            newest = self.racers[-1]
            wait = self.remaining()
            budget_applies = not newest.budget_spent and self._alternative_after()
            if budget_applies:
                wait = min(wait, newest.started + self.controls.first_token_timeout - self.clock())
            racer, item = await self._first_item(max(wait, 0.0))
            if racer is None:
                if budget_applies and self.remaining() > 0:
                    await self._budget_passed(newest)
                continue
            if isinstance(item, _Failure):
                await self._handle_failure(racer, item.error)
                continue
            assert item is not None
            await self._won(racer)
            return racer, item

    def _alternative_after(self) -> bool:
        """Is there somewhere else to go after the routes already started?"""
        return bool(self.deferred) or any(
            self.router.viable(c) for c in self.routes[self.next_index :]
        )

    async def _start_next(self) -> bool:
        while self.next_index < len(self.routes):
            choice = self.routes[self.next_index]
            self.next_index += 1
            breaker = self.router.breaker(choice.route)
            # The breaker first: an open one means not even a cheap probe goes to the route.
            skip = Skip(_breaker_reason(breaker)) if breaker.snapshot().state == "open" else None
            if skip is None:
                skip = await self.router.skip_reason(
                    choice, self.spec, self.controls, has_alternative=self._alternative_after()
                )
            if skip is None and not breaker.allow():
                skip = Skip(_breaker_reason(breaker))
            if skip is not None:
                self._record(
                    choice, "skipped", detail=skip.reason, started=self.clock(), wall=time.time()
                )
                self._note_reason(skip.reason)
                if skip.deferrable:
                    self.deferred.append(choice)
                continue
            self._start(choice, attempt_no=1)
            return True
        if self.deferred and self.remaining() > 0:
            # Every other route has failed: a busy or cold local model is slow, not broken,
            # and slow beats no answer. No budget now: it may use the whole deadline.
            # The one predicted to give a first token soonest.
            choice = min(self.deferred, key=lambda c: self.router.load_for(c).predict_first_token())
            self.deferred.remove(choice)
            racer = self._start(choice, attempt_no=1)
            racer.budget_spent = True
            return True
        return False

    def _start(
        self, choice: RouteChoice, *, attempt_no: int, continuation: tuple[str, str] | None = None
    ) -> _Racer:
        racer = _Racer(choice, attempt_no, self.clock(), time.time(), continuation=continuation)
        racer.load = self.router.load_for(choice)
        racer.ticket = racer.load.start()
        racer.predicted = racer.load.predict_first_token(racer.ticket)
        racer.task = asyncio.get_running_loop().create_task(self._read(racer))
        self.racers.append(racer)
        return racer

    async def _first_item(self, timeout: float) -> tuple[_Racer | None, _QueueItem | None]:
        """The first item any racer produces within ``timeout`` seconds, or (None, None).

        Uses `asyncio.wait` rather than `wait_for`: on Python < 3.12, `wait_for` can swallow
        a cancellation that lands in the same loop iteration as the item, so a cancelled
        call would carry on to completion.
        """
        for racer in self.racers:
            if racer.peeked is not None:
                item, racer.peeked = racer.peeked, None
                return racer, item
        getters = {asyncio.ensure_future(r.queue.get()): r for r in self.racers}
        try:
            await asyncio.wait(getters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for getter in getters:
                if not getter.done():
                    getter.cancel()
        completed = [g for g in getters if g.done() and not g.cancelled()]
        if not completed:
            return None, None
        for other in completed[1:]:
            getters[other].peeked = other.result()
        return getters[completed[0]], completed[0].result()

    async def _budget_passed(self, racer: _Racer) -> None:
        budget = self.controls.first_token_timeout
        filler = f", {racer.stats.filler} keep-alive(s) and no data" if racer.stats.filler else ""
        reason = f"{racer.choice.kind} gave no first token within {budget:g}s{filler}"
        error = BackendTimeoutError(
            reason, phase="first_token", route=racer.choice.route, seconds=budget
        )
        if self.controls.hedge:
            self._note_reason(reason)
            racer.budget_spent = True
            if not await self._start_next():
                return
        elif self._staying_is_faster(racer):
            racer.budget_spent = True  # knowingly queued, and nothing else would be sooner
        else:
            self._note_reason(reason)
            await self._stop(racer, "fallback", error=error)
            self._apply_breaker(racer, classify(error, kind=racer.choice.kind))

    def _staying_is_faster(self, racer: _Racer) -> bool:
        """At the budget: keep waiting on a route we knowingly queued for?

        Only when the wait was predicted when the racer started (it queued behind known
        work, e.g. at a hosted concurrency limit) and every alternative is predicted to be
        later still. A racer predicted to be in time but late is the backstop's case:
        something the prediction cannot see is in the way, so it moves on.
        """
        budget = self.controls.first_token_timeout
        if racer.predicted is None or racer.predicted <= budget or racer.load is None:
            return False
        alternatives = [c for c in self.routes[self.next_index :] if self.router.viable(c)]
        alternatives += self.deferred
        if not alternatives:
            return True
        best = min(self.router.load_for(c).predict_first_token() for c in alternatives)
        return racer.load.predict_first_token(racer.ticket) <= best

    async def _handle_failure(self, racer: _Racer, error: BaseException) -> None:
        """A racer failed before its first token: retry it, move on, or raise."""
        self.racers.remove(racer)
        self.last_error = error
        decision = classify(error, kind=racer.choice.kind)
        self._learn(racer, error)
        self._apply_breaker(racer, decision)
        self._finish_load(racer, ok=False)
        if decision.action is Action.RAISE:
            self._record_racer(racer, "failed", error=error)
            raise error
        gated = getattr(error, "concurrency_limit", None) is not None
        delay = self._retry_delay(racer, decision, gated=gated)
        self._record_racer(racer, "retry" if delay is not None else "fallback", error=error)
        self._note_reason(decision.reason, error)
        if decision.loud:
            log.warning(
                "dsollama: %s on %s: %s", decision.reason, racer.choice.route, redact(str(error))
            )
        if delay is not None:
            await asyncio.sleep(delay)
            self._start(
                racer.choice, attempt_no=racer.attempt_no + 1, continuation=racer.continuation
            )

    def _retry_delay(
        self, racer: _Racer, decision: Decision, *, gated: bool = False
    ) -> float | None:
        """Seconds to wait before retrying this route, or None to move on.

        ``gated``: the server stated its concurrency limit, so the retry waits at the
        client-side gate and adds no load — it does not spend the retry budget.
        """
        if decision.action is not Action.RETRY or self.racers:
            return None  # while another racer is still running, don't retry this one
        if racer.attempt_no >= self.settings.max_attempts:
            return None
        s = self.settings
        delay = backoff_delay(
            racer.attempt_no,
            base=s.backoff_base,
            cap=s.backoff_cap,
            retry_after=decision.retry_after,
            retry_after_cap=s.retry_after_cap,
        )
        if delay >= self.remaining():
            return None
        if (
            decision.retry_after is not None
            and decision.retry_after > s.retry_after_cap
            and self._alternative_after()
        ):
            return None  # the server wants longer than we would wait: go elsewhere now
        if not gated and not self.router.budget.try_spend():
            self._note_reason(f"{decision.reason}; retry budget exhausted")
            return None
        return delay

    async def _won(self, racer: _Racer) -> None:
        for other in list(self.racers):
            if other is not racer:
                await self._stop(other, "lost-race")
        self.racers = [racer]
        self.winner = racer
        if self.ttft_s is None:
            self.ttft_s = self.clock() - self.started

    # -- after the first token --------------------------------------------------------------

    async def _next_item(self, racer: _Racer) -> _QueueItem:
        if racer.peeked is not None:
            item, racer.peeked = racer.peeked, None
            return item
        return await racer.queue.get()

    async def _recover(
        self, racer: _Racer, error: BaseException, answer: list[Delta]
    ) -> tuple[_Racer, _QueueItem]:
        """The committed route failed mid-answer."""
        if not self.spec.stream or not (self.delivered_content or self.delivered_thinking):
            # The caller has seen nothing of this answer: start over, as before the first token.
            answer.clear()
            await self._handle_failure(racer, error)
            return await self._acquire()
        self.racers.remove(racer)
        self.last_error = error
        decision = classify(error, kind=racer.choice.kind)
        self._learn(racer, error)
        self._apply_breaker(racer, decision)
        self._finish_load(racer, ok=False)
        self._note_reason(decision.reason, error)
        target = self._continuation_route()
        if decision.action is not Action.RAISE and target is not None:
            self._record_racer(racer, "fallback", error=error)
            self.seams.append(
                Seam(
                    at_char=len(self.delivered_content),
                    from_route=racer.choice.route,
                    to_route=target.route,
                    reason=decision.reason,
                )
            )
            partial = (self.delivered_content, self.delivered_thinking)
            self._start(target, attempt_no=1, continuation=partial)
            return await self._acquire_continuation()
        self._record_racer(racer, "failed", error=error)
        raise StreamInterruptedError(
            f"the answer broke after {len(self.delivered_content)} characters: {decision.reason} "
            f"({type(error).__name__}: {redact(str(error))})",
            partial_text=self.delivered_content,
            partial_thinking=self.delivered_thinking,
            attempts=self.attempts,
            hint=None
            if self.controls.continue_stream
            else "pass continue_stream=True to continue broken answers on the hosted route",
        ) from error

    def _continuation_route(self) -> RouteChoice | None:
        if not self.controls.continue_stream:
            return None
        for choice in self.routes:
            if choice.kind == "hosted" and self.router.viable(choice):
                return choice
        return None

    async def _acquire_continuation(self) -> tuple[_Racer, _QueueItem]:
        racer = self.racers[-1]
        racer.budget_spent = True  # nowhere better to go: wait up to the total deadline
        found, item = await self._first_item(max(self.remaining(), 0.0))
        if found is None or item is None:
            await self._fail_racers_on_deadline()
            raise self._exhausted()
        if isinstance(item, _Failure):
            self.racers.remove(racer)
            self._record_racer(racer, "failed", error=item.error)
            raise StreamInterruptedError(
                f"the answer broke and could not be continued: {type(item.error).__name__}: {redact(str(item.error))}",
                partial_text=self.delivered_content,
                partial_thinking=self.delivered_thinking,
                attempts=self.attempts,
            ) from item.error
        self.winner = racer
        return racer, item

    def _track_delivered(self, delta: Delta) -> None:
        self.delivered_content += delta.content
        self.delivered_thinking += delta.thinking

    # -- the reader task ------------------------------------------------------------------

    async def _read(self, racer: _Racer) -> None:
        """Pull deltas from the backend into the racer's queue, under the watchdog.

        Reads each response to its very end (nothing but a terminator follows the final
        delta) so its connection goes back to the pool instead of being dropped.
        """
        watchdog = Watchdog()
        queue = racer.queue
        choice = racer.choice
        gap = self.controls.gap_timeout
        got_first = False
        saw_done = False
        stream: AsyncIterator[Delta] | None = None
        gate = self.router.hosted_load(choice.route) if choice.kind == "hosted" else None
        holding = False
        try:
            watchdog.arm(self.remaining(), "total")
            if gate is not None:
                await gate.acquire()  # at a known concurrency limit: wait here, not for a 429
                holding = True
            stream = self._open(racer)
            async for delta in stream:
                if saw_done:
                    continue
                if not got_first:
                    if not delta.has_output and not delta.done:
                        continue  # an empty chunk is not a first token
                    got_first = True
                    racer.first_token_at = self.clock()
                    if racer.load is not None and racer.ticket is not None:
                        racer.load.first_token(racer.ticket)
                queue.put_nowait(delta)
                saw_done = delta.done
                remaining = self.remaining()
                watchdog.arm(min(gap, remaining), "gap" if gap < remaining else "total")
            if not saw_done:
                # The backend ended without a final delta: never a success.
                raise IncompleteResponseError(
                    "the answer ended without its final chunk", route=choice.route
                )
        except asyncio.CancelledError:
            if not watchdog.absorb():
                raise
            if not saw_done:  # a stall after the final delta changes nothing
                phase = watchdog.fired or "gap"
                queue.put_nowait(
                    _Failure(
                        BackendTimeoutError(
                            f"no data from {choice.route} for {watchdog.seconds:.2f}s ({phase} deadline)",
                            phase=phase,
                            route=choice.route,
                            seconds=watchdog.seconds,
                        )
                    )
                )
        except Exception as exc:
            if not saw_done:  # a failure after the final delta changes nothing
                queue.put_nowait(_Failure(exc))
        finally:
            watchdog.disarm()
            if holding and gate is not None:
                gate.release()
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _open(self, racer: _Racer) -> AsyncIterator[Delta]:
        choice = racer.choice
        if racer.continuation is not None:
            continue_stream = getattr(choice.backend, "continue_stream", None)
            if continue_stream is None:
                raise UnsupportedRequestError(f"{choice.route} cannot continue a broken answer")
            content, thinking = racer.continuation
            opened: AsyncIterator[Delta] = continue_stream(
                self.spec,
                model=choice.model,
                thinking=choice.thinking,
                stats=racer.stats,
                partial_content=content,
                partial_thinking=thinking,
            )
            return opened
        return choice.backend.stream(
            self.spec, model=choice.model, thinking=choice.thinking, stats=racer.stats
        )

    # -- bookkeeping --------------------------------------------------------------------

    async def _stop(
        self, racer: _Racer, outcome: str, *, error: BaseException | None = None
    ) -> None:
        if racer in self.racers:
            self.racers.remove(racer)
        if racer.task is not None and not racer.task.done():
            racer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await racer.task
        self._finish_load(racer, ok=False)
        if outcome in ("lost-race", "fallback", "cancelled"):
            self.router.breaker(racer.choice.route).release_probe()
        self._record_racer(racer, outcome, error=error)

    async def _cancel_all(self, outcome: str) -> None:
        for racer in list(self.racers):
            if racer is self.winner and racer.task is not None and racer.task.done():
                self.racers.remove(racer)
                continue
            await self._stop(racer, outcome)

    async def _fail_racers_on_deadline(self) -> None:
        error = BackendTimeoutError(
            f"the call's total deadline of {self.controls.total_timeout:g}s passed", phase="total"
        )
        self.last_error = error
        self._note_reason("total deadline passed")
        for racer in list(self.racers):
            await self._stop(racer, "failed", error=error)

    def _finish_load(self, racer: _Racer, *, ok: bool, load_s: float | None = None) -> None:
        """The racer no longer occupies its route (idempotent)."""
        if racer.load is not None and racer.ticket is not None:
            racer.load.finish(racer.ticket, ok=ok, load_s=load_s)
            racer.ticket = None

    def _learn(self, racer: _Racer, error: BaseException) -> None:
        """What a failure teaches about the route beyond its breaker."""
        limit = getattr(error, "concurrency_limit", None)
        if isinstance(limit, int) and racer.choice.kind == "hosted":
            self.router.hosted_load(racer.choice.route).learn_limit(limit)

    def _apply_breaker(self, racer: _Racer, decision: Decision) -> None:
        breaker = self.router.breaker(racer.choice.route)
        effect = decision.breaker
        if effect is BreakerEffect.FAILURE:
            breaker.record_failure(decision.reason)
        elif effect is BreakerEffect.OPEN:
            breaker.record_failure(decision.reason, open_now=True)
        elif effect is BreakerEffect.DISABLE_SESSION:
            breaker.disable(decision.reason, _DISABLE_SESSION_S)
        elif effect is BreakerEffect.DISABLE_LONG:
            breaker.disable(decision.reason, _DISABLE_LONG_S)
        else:
            breaker.release_probe()

    def _note_reason(self, reason: str, error: BaseException | None = None) -> None:
        if self.fallback_reason is None:
            self.fallback_reason = reason

    def _record(
        self,
        choice: RouteChoice,
        outcome: str,
        *,
        started: float,
        wall: float,
        error: BaseException | None = None,
        detail: str | None = None,
        ttft: float | None = None,
    ) -> None:
        fields = error_fields(error) if error is not None else {}
        self.attempts.append(
            Attempt(
                route=choice.route,
                kind=choice.backend.kind,
                model=choice.model,
                outcome=outcome,  # type: ignore[arg-type]
                error=fields.get("class"),
                status_code=fields.get("status_code"),
                detail=detail or (fields.get("message") or None),
                started_at=wall,
                duration_s=max(self.clock() - started, 0.0),
                ttft_s=ttft,
            )
        )

    def _record_racer(
        self, racer: _Racer, outcome: str, *, error: BaseException | None = None
    ) -> None:
        ttft = racer.first_token_at - racer.started if racer.first_token_at is not None else None
        self._record(
            racer.choice,
            outcome,
            started=racer.started,
            wall=racer.started_wall,
            error=error,
            ttft=ttft,
        )

    def _succeed(self, racer: _Racer, final: Delta | None) -> None:
        self.router.breaker(racer.choice.route).record_success()
        load_s = (final.load_duration_ns or 0) / 1e9 if final is not None else None
        self._finish_load(racer, ok=True, load_s=load_s)
        self._record_racer(racer, "ok")
        if racer in self.racers:
            self.racers.remove(racer)
        if final is not None and racer.choice.kind == "hosted":
            self.usage = HostedUsage(
                prompt_tokens=final.prompt_tokens or 0,
                completion_tokens=final.completion_tokens or 0,
                reasoning_tokens=final.reasoning_tokens or 0,
                cached_tokens=final.cached_tokens or 0,
            )
            cost = self.router.catalogue.cost_usd(
                racer.choice.model,
                prompt_tokens=self.usage.prompt_tokens,
                completion_tokens=self.usage.completion_tokens,
                cached_tokens=self.usage.cached_tokens,
            )
            if cost is not None:
                self.cost_usd += cost
                self.cost_known = True

    def _summary(self) -> CallSummary:
        winner_kind = self.winner.choice.kind if self.winner is not None else None
        first_kind = self.routes[0].kind if self.routes else None
        moved = self.winner is not None and (
            self.winner.choice.route != self.routes[0].route
            or len(self.attempts) > 1
            or bool(self.seams)
        )
        cost: float | None
        if winner_kind == "local" and not self.seams:
            cost = 0.0
        else:
            cost = round(self.cost_usd, 8) if self.cost_known else None
        return CallSummary(
            attempts=list(self.attempts),
            fallback_reason=self.fallback_reason if moved or winner_kind != first_kind else None,
            seams=list(self.seams),
            usage=self.usage,
            cost_usd=cost,
            ttft_s=self.ttft_s,
            total_s=self.clock() - self.started,
            ignored=list(self.winner.stats.extra.get("unsupported", []))
            if self.winner is not None
            else [],
        )

    def _exhausted(self) -> AllRoutesFailedError:
        last = self.last_error
        tried_local = any(a.kind == "local" for a in self.attempts)
        has_hosted = any(c.kind == "hosted" for c in self.routes)
        hint = None
        if isinstance(last, DsollamaError) and last.hint:
            hint = last.hint
        elif not has_hosted and tried_local:
            hint = "set DEEPSEEK_API_KEY to let busy or failed calls fall back to the hosted API"
        message = "no route could answer"
        if last is not None:
            message += f": {redact(str(last))}"
        return AllRoutesFailedError(message, attempts=self.attempts, hint=hint, last_error=last)

    # -- the record -------------------------------------------------------------------------

    def _emit_record(
        self, final: Delta | None, answer: list[Delta], error: BaseException | None
    ) -> None:
        ok = error is None and final is not None
        served = self.winner.choice.served_by() if (self.winner is not None and ok) else None
        summary_ttft = self.ttft_s
        total = self.clock() - self.started
        content = self.delivered_content if self.spec.stream else "".join(d.content for d in answer)
        thinking = (
            self.delivered_thinking if self.spec.stream else "".join(d.thinking for d in answer)
        )
        error_class: str | None
        error_message: str | None
        if error is not None and isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            error_class, error_message = "Cancelled", "the caller cancelled the call"
        elif error is not None:
            error_class, error_message = type(error).__name__, redact(str(error))
        else:
            error_class, error_message = None, None
        rec = CallRecord(
            operation=self.spec.operation,
            model_requested=self.spec.model,
            ok=ok,
            started_at=self.started_wall,
            source=self.controls.source,
            stream=self.spec.stream,
            served_by=served,
            attempts=tuple(self.attempts),
            fallback_reason=self.fallback_reason
            if (error is not None or len(self.attempts) > 1 or self.seams)
            else None,
            error_class=error_class,
            error_message=error_message,
            ttft_s=summary_ttft,
            total_s=total,
            prompt_tokens=final.prompt_tokens if final else None,
            completion_tokens=final.completion_tokens if final else None,
            reasoning_tokens=final.reasoning_tokens if final else None,
            cached_tokens=final.cached_tokens if final else None,
            cost_usd=(
                0.0
                if served and served.kind == "local" and not self.seams
                else (self.cost_usd if self.cost_known else None)
            ),
            messages=_messages_for_log(self.spec),
            response_text=content or None,
            response_thinking=thinking or None,
        )
        _log_line(rec)
        if not self.controls.log:
            return
        for sink in self.router.sinks:
            try:
                sink.record(rec)
            except Exception:  # a sink must never break a call
                log.debug("dsollama: call sink failed", exc_info=True)


def _messages_for_log(spec: CallSpec) -> list[dict[str, Any]]:
    if spec.operation == "generate":
        out = [{"role": "system", "content": spec.system}] if spec.system else []
        return [*out, {"role": "user", "content": spec.prompt or ""}]
    result: list[dict[str, Any]] = []
    for message in spec.messages or ():
        if isinstance(message, dict):
            result.append({"role": message.get("role"), "content": message.get("content")})
        else:
            result.append(
                {
                    "role": getattr(message, "role", None),
                    "content": getattr(message, "content", None),
                }
            )
    return result


def _log_line(rec: CallRecord) -> None:
    if not log.isEnabledFor(logging.INFO):
        return
    served = (
        f"{rec.served_by.kind} {rec.served_by.model}@{rec.served_by.route}"
        if rec.served_by
        else "nothing"
    )
    ttft = f"{rec.ttft_s:.3f}s" if rec.ttft_s is not None else "-"
    tokens = f"{rec.prompt_tokens or 0}/{rec.completion_tokens or 0}"
    reason = f" fallback={rec.fallback_reason!r}" if rec.fallback_reason else ""
    error = f" error={rec.error_class}" if rec.error_class else ""
    log.info(
        "%s %s -> %s attempts=%d%s ttft=%s total=%.3fs tokens=%s%s",
        rec.operation,
        rec.model_requested,
        served,
        len(rec.attempts),
        reason,
        ttft,
        rec.total_s,
        tokens,
        error,
    )
