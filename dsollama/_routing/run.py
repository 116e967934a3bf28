"""One call's journey through the routes: start, race, retry, move on, commit, recover."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from .._backends import CallSpec
from .._config import Settings
from .._delta import Delta
from .._exceptions import (
    AllRoutesFailedError,
    BackendError,
    BackendTimeoutError,
    DaemonUnreachableError,
    IncompleteResponseError,
    StreamInterruptedError,
    UnsupportedRequestError,
    redact,
)
from .._routes import route_cost
from .._state import Admission, BreakerOutcome, BreakerState
from .._types import HostedUsage, Seam
from .backoff import RetryBudget, backoff_delay
from .deadline import Watchdog
from .plan import capability_gap
from .policy import Action, BreakerEffect, Decision, classify
from .record import CallBook
from .shapes import (
    Controls,
    Failure,
    QueueItem,
    Racer,
    RouteChoice,
    RoutedDelta,
    RunContext,
    Skip,
    merge_deltas,
)
from .state import Passes, Scope

__all__ = ["CallRun", "breaker_outcome", "breaker_reason", "retry_delay"]

log = logging.getLogger("dsollama")

# 401 keeps the hosted route off for the rest of the process; 402 for a long while.
_DISABLE_SESSION_S = 10 * 365 * 24 * 3600.0
_DISABLE_LONG_S = 3600.0


def retry_delay(
    decision: Decision,
    attempt_no: int,
    *,
    settings: Settings,
    remaining: float,
    budget: RetryBudget,
    gated: bool,
    alternative: bool,
    book: CallBook,
) -> float | None:
    """Seconds to wait before attempt ``attempt_no + 1`` on the same route, or None to move on."""
    if decision.action is not Action.RETRY or attempt_no >= settings.max_attempts:
        return None
    delay = backoff_delay(
        attempt_no,
        base=settings.backoff_base,
        cap=settings.backoff_cap,
        retry_after=decision.retry_after,
        retry_after_cap=settings.retry_after_cap,
    )
    if delay >= remaining:
        return None
    if (
        decision.retry_after is not None
        and decision.retry_after > settings.retry_after_cap
        and alternative
    ):
        return None  # the server wants longer than we would wait: go elsewhere now
    if not gated and not budget.try_spend():
        book.note_reason(f"{decision.reason}; retry budget exhausted")
        return None
    return delay


def breaker_reason(state: BreakerState) -> str:
    if state.state == "half-open":
        return f"another call is probing the route ({state.reason})"
    return f"breaker open for {state.retry_in:.0f}s ({state.reason})"


_OUTCOMES: dict[BreakerEffect, BreakerOutcome] = {
    BreakerEffect.FAILURE: "failure",
    BreakerEffect.OPEN: "open",
    BreakerEffect.DISABLE_SESSION: "disable",
    BreakerEffect.DISABLE_LONG: "disable",
    BreakerEffect.NEUTRAL: "neutral",
}
_DISABLE_FOR: dict[BreakerEffect, float] = {
    BreakerEffect.DISABLE_SESSION: _DISABLE_SESSION_S,
    BreakerEffect.DISABLE_LONG: _DISABLE_LONG_S,
}


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def breaker_outcome(decision: Decision) -> BreakerOutcome:
    """What a classified failure tells the breaker it counts against."""
    return _OUTCOMES[decision.breaker]


class CallRun:
    """One call's journey through the routes (its records are kept by a `CallBook`)."""

    def __init__(self, router: RunContext, spec: CallSpec, controls: Controls) -> None:
        self.router = router
        self.spec = spec
        self.controls = controls
        self.settings = router.settings
        self.clock = router.clock
        self.book = CallBook(spec, controls, clock=router.clock, sinks=router.sinks)
        self.started = self.book.started
        self.routes: list[RouteChoice] = []
        self.winner: Racer | None = None
        self.last_error: BaseException | None = None
        self.deadline = self.started + controls.total_timeout
        self.next_index = 0
        self.recovered: set[str] = set()
        "Routes that broke mid-answer or took over a broken answer in this call."
        self.racers: list[Racer] = []
        self.deferred: list[RouteChoice] = []
        "Routes skipped as busy or cold: the last resort when everything else fails."
        self._waiter: asyncio.Future[None] | None = None
        "Resolved by a reader that delivers an item while the call waits for one."

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
                if isinstance(item, Failure):
                    racer, item, restarted = await self._recover(racer, item.error, answer)
                    if restarted:
                        # Tell the caller before the first restarted chunk: discard what
                        # you have; a whole new answer follows.
                        self.book.reset_delivered()
                        yield RoutedDelta(Delta(), racer.choice.served_by(), restart=True)
                    continue
                delta = item
                if self.spec.stream:
                    self.book.track_delivered(delta)
                else:
                    answer.append(delta)
                if delta.done:
                    final = delta
                    break
                if self.spec.stream:
                    yield RoutedDelta(delta, racer.choice.served_by())
                item = await self._next_item(racer)
            await self._succeed(racer, final)
            summary = self.book.summary(self.winner, self.routes)
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
            self.book.emit(
                final,
                answer,
                outcome_error,
                self.winner.choice.served_by() if self.winner is not None else None,
            )

    # -- acquiring a route that produces a first token -------------------------------------

    async def _acquire(self) -> tuple[Racer, QueueItem]:
        """Start routes until one produces its first token (or raise when none can)."""
        while True:
            if not self.racers and not await self._start_next():
                raise self.book.exhausted(self.routes, self.last_error)
            if self.remaining() <= 0:
                await self._fail_racers_on_deadline()
                raise self.book.exhausted(self.routes, self.last_error)
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
            if isinstance(item, Failure):
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
        state = self.router.state
        while self.next_index < len(self.routes):
            choice = self.routes[self.next_index]
            self.next_index += 1
            gap = capability_gap(choice, self.spec)
            if gap is not None:
                self._skip(choice, Skip(gap))
                continue
            # The breakers first: an open one means not even a cheap probe goes there.
            passes, breaker = await state.take_passes(choice)
            if passes is None:
                self._skip(choice, Skip(breaker_reason(breaker)))
                continue
            try:
                verdict = await self.router.admit(
                    choice, self.spec, self.controls, has_alternative=self._alternative_after()
                )
            except DaemonUnreachableError as error:
                # A pre-flight question found nothing listening: that is this route's
                # answer for the call; no second connect to learn it again.
                await self._preflight_failed(choice, passes, error)
                continue
            if isinstance(verdict, Skip):
                await state.report(choice, passes, "release")
                self._skip(choice, verdict)
                continue
            await self._start(choice, attempt_no=1, admission=verdict, passes=passes)
            return True
        while self.deferred and self.remaining() > 0:
            # Every other route has failed: a busy or cold model is slow, not broken, and
            # slow beats no answer. No budget now: it may use the whole deadline.
            # The one predicted to give a first token soonest.
            choice = min(self.deferred, key=state.cached_prediction)
            self.deferred.remove(choice)
            racer = await self._start(choice, attempt_no=1)
            if racer is None:
                continue
            racer.budget_spent = True
            return True
        return False

    def _skip(self, choice: RouteChoice, skip: Skip) -> None:
        self.book.record(
            choice, "skipped", detail=skip.reason, started=self.clock(), wall=time.time()
        )
        self.book.note_reason(skip.reason)
        if skip.deferrable:
            self.deferred.append(choice)

    async def _preflight_failed(
        self, choice: RouteChoice, passes: Passes, error: DaemonUnreachableError
    ) -> None:
        self.last_error = error
        decision = classify(error, kind=choice.kind)
        await self.router.state.report(
            choice, passes, "open", scope=decision.scope, reason=decision.reason
        )
        now = self.clock()
        self.book.record(choice, "fallback", started=now, wall=time.time(), error=error)
        self.book.note_reason(decision.reason)

    async def _start(
        self,
        choice: RouteChoice,
        *,
        attempt_no: int,
        continuation: tuple[str, str] | None = None,
        admission: Admission | None = None,
        passes: Passes | None = None,
    ) -> Racer | None:
        """Start an attempt; None when the route's breaker does not let it through now."""
        state = self.router.state
        if passes is None:
            passes, breaker = await state.take_passes(choice)
            if passes is None:
                self._skip(choice, Skip(breaker_reason(breaker)))
                return None
        if admission is None:
            admission = await state.admit(choice, limit_s=None)
        racer = Racer(choice, attempt_no, self.clock(), time.time(), continuation=continuation)
        racer.lease = admission.lease
        racer.passes = passes
        racer.predicted = admission.predicted_s
        racer.task = asyncio.get_running_loop().create_task(self._read(racer))
        self.racers.append(racer)
        return racer

    async def _first_item(self, timeout: float) -> tuple[Racer | None, QueueItem | None]:
        """The first item any racer produces within ``timeout`` seconds, or (None, None)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        while True:
            for racer in self.racers:
                if racer.items:
                    return racer, racer.items.popleft()
            left = until - loop.time()
            if left <= 0:
                return None, None
            await self._wait(left)

    def _deliver(self, racer: Racer, item: QueueItem) -> None:
        """A reader hands the call an item (a delta or a failure)."""
        racer.items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        """Until a reader delivers an item, or ``timeout`` seconds have passed.

        A bare future and one timer, rather than a task per racer and `asyncio.wait` (or
        `wait_for`, which on Python < 3.12 can swallow a cancellation that lands with the
        item): this runs at least once per call, and once per chunk of a stream.
        """
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _budget_passed(self, racer: Racer) -> None:
        budget = self.controls.first_token_timeout
        filler = f", {racer.stats.filler} keep-alive(s) and no data" if racer.stats.filler else ""
        reason = f"{racer.choice.kind} gave no first token within {budget:g}s{filler}"
        error = BackendTimeoutError(
            reason, phase="first_token", route=racer.choice.route, seconds=budget
        )
        if self.controls.hedge:
            self.book.note_reason(reason)
            racer.budget_spent = True
            if not await self._start_next():
                return
        elif await self._staying_is_faster(racer):
            racer.budget_spent = True  # knowingly queued, and nothing else would be sooner
        else:
            self.book.note_reason(reason)
            await self._stop(racer, "fallback", error=error)
            # Slow is not broken: if everything else fails, this route is still the last
            # resort (without a budget, up to the deadline).
            self.deferred.append(racer.choice)

    async def _staying_is_faster(self, racer: Racer) -> bool:
        """At the budget: keep waiting on a route we knowingly queued for?

        Only when the wait was predicted when the racer started (it queued behind known
        work, e.g. at a hosted concurrency limit) and every alternative is predicted to be
        later still. A racer predicted to be in time but late is the backstop's case:
        something the prediction cannot see is in the way, so it moves on.
        """
        budget = self.controls.first_token_timeout
        if racer.predicted is None or racer.predicted <= budget or racer.lease is None:
            return False
        alternatives = [c for c in self.routes[self.next_index :] if self.router.viable(c)]
        alternatives += self.deferred
        if not alternatives:
            return True
        state = self.router.state
        best = min(state.cached_prediction(c) for c in alternatives)
        return await state.predict(racer.choice, racer.lease) <= best

    async def _handle_failure(self, racer: Racer, error: BaseException) -> None:
        """A racer failed before its first token: retry it, move on, or raise."""
        self.racers.remove(racer)
        decision = await self._fail(racer, error, note=False)
        if decision.action is Action.RAISE:
            self.book.record_racer(racer, "failed", error=error)
            if isinstance(error, BackendError):
                error.attempts = list(self.book.attempts)
            raise error
        gated = getattr(error, "concurrency_limit", None) is not None
        delay = self._retry_delay(racer, decision, gated=gated)
        self.book.record_racer(racer, "retry" if delay is not None else "fallback", error=error)
        self.book.note_reason(decision.reason)
        if decision.loud:
            log.warning(
                "dsollama: %s on %s: %s", decision.reason, racer.choice.route, redact(str(error))
            )
        if delay is not None:
            await asyncio.sleep(delay)
            # A retry asks the breakers again: one opened meanwhile keeps it away.
            await self._start(
                racer.choice, attempt_no=racer.attempt_no + 1, continuation=racer.continuation
            )

    def _retry_delay(
        self, racer: Racer, decision: Decision, *, gated: bool = False
    ) -> float | None:
        """Seconds to wait before retrying this route, or None to move on.

        ``gated``: the server stated its concurrency limit, so the retry waits at the
        client-side gate and adds no load — it does not spend the retry budget.
        """
        if self.racers:
            return None  # while another racer is still running, don't retry this one
        return retry_delay(
            decision,
            racer.attempt_no,
            settings=self.settings,
            remaining=self.remaining(),
            budget=self.router.budget,
            gated=gated,
            alternative=self._alternative_after(),
            book=self.book,
        )

    async def _won(self, racer: Racer) -> None:
        for other in list(self.racers):
            if other is not racer:
                await self._stop(other, "lost-race")
        self.racers = [racer]
        self.winner = racer
        if self.book.ttft_s is None:
            self.book.ttft_s = self.clock() - self.started

    # -- after the first token --------------------------------------------------------------

    async def _next_item(self, racer: Racer) -> QueueItem:
        while not racer.items:
            await self._wait(None)  # the reader's watchdog bounds the wait
        return racer.items.popleft()

    async def _recover(
        self, racer: Racer, error: BaseException, answer: list[Delta]
    ) -> tuple[Racer, QueueItem, bool]:
        """The committed route failed mid-answer: (the racer now answering, its first item,
        whether the answer restarted from the beginning)."""
        if not self.spec.stream or not (
            self.book.delivered_content or self.book.delivered_thinking
        ):
            # The caller has seen nothing of this answer: start over, as before the first token.
            answer.clear()
            await self._handle_failure(racer, error)
            found, item = await self._acquire()
            return found, item, False
        self.racers.remove(racer)
        broken = racer.choice
        decision = await self._fail(racer, error)
        mode = self.controls.on_broken_stream
        self.recovered.add(broken.route)  # never recover onto the route that just broke
        if decision.action is Action.RAISE or mode == "raise":
            self.book.record_racer(racer, "failed", error=error)
            raise self._interrupted(error, decision.reason, mode)
        handed_over = False
        while self.remaining() > 0:
            target = self._recovery_route(mode)
            if target is None:
                break
            if not handed_over:
                self.book.record_racer(racer, "fallback", error=error)
                handed_over = True
            # At most one recovery per route per call: a route that stalls is not
            # continued on, and stalls again.
            self.recovered.add(target.route)
            at_char = len(self.book.delivered_content)
            partial = (self.book.delivered_content, self.book.delivered_thinking)
            started = await self._start(
                target, attempt_no=1, continuation=partial if mode == "continue" else None
            )
            if started is None:
                continue
            started.budget_spent = True  # nowhere better to go: wait up to the total deadline
            taker, first = await self._first_item(max(self.remaining(), 0.0))
            if taker is None or first is None:
                await self._fail_racers_on_deadline()
                break
            if isinstance(first, Failure):
                self.racers.remove(taker)
                await self._fail(taker, first.error)
                self.book.record_racer(taker, "failed", error=first.error)
                continue
            self.book.seams.append(
                Seam(
                    at_char=at_char,
                    from_route=broken.route,
                    to_route=target.route,
                    reason=decision.reason,
                    kind=mode,
                )
            )
            self.winner = taker
            return taker, first, mode == "restart"
        if not handed_over:
            self.book.record_racer(racer, "failed", error=error)
        raise self._interrupted(self.last_error or error, decision.reason, mode)

    async def _fail(self, racer: Racer, error: BaseException, *, note: bool = True) -> Decision:
        """What a failed racer teaches: its breaker, its route's load, the call's reason."""
        self.last_error = error
        decision = classify(error, kind=racer.choice.kind)
        await self._learn(racer, error)
        await self._apply_breaker(racer, decision)
        await self._finish_lease(racer, ok=False)
        if note:
            self.book.note_reason(decision.reason)
        return decision

    def _interrupted(self, error: BaseException, reason: str, mode: str) -> StreamInterruptedError:
        if mode == "raise":
            hint: str | None = (
                "pass continue_stream=True (on_broken_stream='continue'), or "
                "on_broken_stream='restart', to recover broken answers on another route"
            )
            what = f"the answer broke after {len(self.book.delivered_content)} characters"
        else:
            hint = None
            what = (
                f"the answer broke after {len(self.book.delivered_content)} characters and no "
                f"route could {mode} it" + (" in time" if self.remaining() <= 0 else "")
            )
        interrupted = StreamInterruptedError(
            f"{what}: {reason} ({type(error).__name__}: {redact(str(error))})",
            partial_text=self.book.delivered_content,
            partial_thinking=self.book.delivered_thinking,
            attempts=self.book.attempts,
            hint=hint,
        )
        interrupted.__cause__ = error
        return interrupted

    def _recovery_route(self, mode: str) -> RouteChoice | None:
        """The next route that may take over a broken answer: in plan order, viable,
        not used for a recovery (or broken) in this call; for ``continue``, one that can
        continue a prefix."""
        for choice in self.routes:
            if choice.route in self.recovered or not self.router.viable(choice):
                continue
            if mode == "continue" and not choice.backend.capabilities.continuation:
                continue
            return choice
        return None

    # -- the reader task ------------------------------------------------------------------

    async def _read(self, racer: Racer) -> None:
        """Pull deltas from the backend and deliver them to the call, under the watchdog.

        A streaming caller gets every delta as it comes. A non-streaming caller needs the
        first (its time is the first-token budget's) and then only the whole answer: the
        rest is gathered here and delivered merged with the final delta, so the call is
        not woken for every chunk. Every chunk still re-arms the gap deadline.

        Reads each response to its very end (nothing but a terminator follows the final
        delta) so its connection goes back to the pool instead of being dropped.
        """
        watchdog = Watchdog()
        deliver = self._deliver
        choice = racer.choice
        gap = self.controls.gap_timeout
        clock = self.clock
        deadline = self.deadline
        gathered: list[Delta] | None = None if self.spec.stream else []
        got_first = False
        saw_done = False
        stream: AsyncIterator[Delta] | None = None
        state = self.router.state
        gate_lease = None
        try:
            watchdog.arm(deadline - clock(), "total")
            if state.refuses(choice):
                # At a known concurrency limit: wait here for a slot, not for a 429.
                gate_lease = await state.gate_acquire(choice.route)
            stream = self._open(racer)
            async for delta in stream:
                if saw_done:
                    continue
                saw_done = delta.done
                if got_first:
                    if gathered is None:
                        deliver(racer, delta)
                    else:
                        gathered.append(delta)
                        if saw_done:
                            deliver(racer, merge_deltas(gathered))
                else:
                    if not delta.has_output and not saw_done:
                        continue  # an empty chunk is not a first token
                    got_first = True
                    racer.first_token_at = clock()
                    deliver(racer, delta)  # the caller first; then the bookkeeping
                    if racer.lease is not None:
                        await state.first_token(choice, racer.lease)
                remaining = deadline - clock()
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
                deliver(
                    racer,
                    Failure(
                        BackendTimeoutError(
                            f"no data from {choice.route} for {watchdog.seconds:.2f}s ({phase} deadline)",
                            phase=phase,
                            route=choice.route,
                            seconds=watchdog.seconds,
                        )
                    ),
                )
        except Exception as exc:
            if not saw_done:  # a failure after the final delta changes nothing
                deliver(racer, Failure(exc))
        finally:
            watchdog.disarm()
            if gate_lease is not None:
                await state.gate_release(choice.route, gate_lease)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def _open(self, racer: Racer) -> AsyncIterator[Delta]:
        choice = racer.choice
        if racer.continuation is not None:
            if not choice.backend.capabilities.continuation:
                raise UnsupportedRequestError(f"{choice.route} cannot continue a broken answer")
            content, thinking = racer.continuation
            opened: AsyncIterator[Delta] = choice.backend.continue_stream(
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
        self, racer: Racer, outcome: str, *, error: BaseException | None = None
    ) -> None:
        if racer in self.racers:
            self.racers.remove(racer)
        if racer.task is not None and not racer.task.done():
            racer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await racer.task
        await self._finish_lease(racer, ok=False)
        # Slow, outrun or cancelled: no verdict on the route (a probe is freed).
        await self._report(racer, "release")
        self.book.record_racer(racer, outcome, error=error)

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
        self.book.note_reason("total deadline passed")
        for racer in list(self.racers):
            await self._stop(racer, "failed", error=error)

    async def _finish_lease(self, racer: Racer, *, ok: bool, load_s: float | None = None) -> None:
        """The racer no longer occupies its route (idempotent)."""
        lease, racer.lease = racer.lease, None
        if lease is not None:
            await self.router.state.finish(racer.choice, lease, ok=ok, load_s=load_s)

    async def _report(
        self,
        racer: Racer,
        outcome: BreakerOutcome,
        *,
        scope: Scope = "model",
        reason: str = "",
        disable_s: float | None = None,
    ) -> None:
        """Tell the racer's breakers how it ended (once)."""
        passes, racer.passes = racer.passes, None
        if passes is not None:
            await self.router.state.report(
                racer.choice, passes, outcome, scope=scope, reason=reason, disable_s=disable_s
            )

    async def _learn(self, racer: Racer, error: BaseException) -> None:
        """What a failure teaches about the route beyond its breaker."""
        limit = getattr(error, "concurrency_limit", None)
        state = self.router.state
        if isinstance(limit, int) and state.refuses(racer.choice):
            await state.learn_limit(racer.choice.route, limit)

    async def _apply_breaker(self, racer: Racer, decision: Decision) -> None:
        await self._report(
            racer,
            breaker_outcome(decision),
            scope=decision.scope,
            reason=decision.reason,
            disable_s=_DISABLE_FOR.get(decision.breaker),
        )

    async def _succeed(self, racer: Racer, final: Delta | None) -> None:
        await self._report(racer, "success")
        load_s = (final.load_duration_ns or 0) / 1e9 if final is not None else None
        await self._finish_lease(racer, ok=True, load_s=load_s)
        self.book.record_racer(racer, "ok")
        if racer in self.racers:
            self.racers.remove(racer)
        if racer.task is not None and not racer.task.done():
            # It reads the answer's tail and gives back its gate slot after the caller
            # has the final chunk; closing the client waits for that.
            self.router.settle(racer.task)
        if final is not None and racer.choice.backend.api == "openai":
            self.book.usage = HostedUsage(
                prompt_tokens=final.prompt_tokens or 0,
                completion_tokens=final.completion_tokens or 0,
                reasoning_tokens=final.reasoning_tokens or 0,
                cached_tokens=final.cached_tokens or 0,
            )
            cost = route_cost(
                racer.choice.backend.config,
                racer.choice.model,
                self.book.usage,
                self.router.catalogue,
            )
            if cost is not None:
                self.book.cost_usd += cost
                self.book.cost_known = True
