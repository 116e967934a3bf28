"""An embed call's journey: the same breakers, policy table, retries and record as chat.

Embeddings never leave the user's machines (the hosted API has none): the candidates are
the private routes that can embed, in configuration order. Each failure is classified by
`policy.classify` like any other; every call ends in one `CallRecord`, so embeds show up
in `dsollama logs`, `stats` and serve's ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .._backends import CallSpec, EmbedSpec
from .._delta import Delta
from .._exceptions import redact
from .._types import EmbedResponse, ServedBy
from .policy import Action, classify
from .record import CallBook
from .run import breaker_outcome, breaker_reason, retry_delay
from .shapes import Controls, RouteChoice, RunContext

__all__ = ["EmbedRun"]

log = logging.getLogger("dsollama")


def _logged_input(spec: EmbedSpec) -> str:
    return spec.input if isinstance(spec.input, str) else "\n".join(spec.input)


class EmbedRun:
    def __init__(self, router: RunContext, spec: EmbedSpec, controls: Controls) -> None:
        self.router = router
        self.spec = spec
        self.controls = controls
        self.clock = router.clock
        call = CallSpec(operation="embed", model=spec.model, prompt=_logged_input(spec))
        self.book = CallBook(call, controls, clock=router.clock, sinks=router.sinks)
        self.deadline = self.book.started + controls.total_timeout

    def _choices(self) -> list[RouteChoice]:
        out = []
        for backend in self.router.backends:
            if backend.kind != "local" or not backend.capabilities.embeddings:
                continue
            own = backend.config.own_model(self.spec.model)
            if own is None and backend.config.models:
                continue
            out.append(RouteChoice(backend, own or self.spec.model, None))
        return out

    async def execute(self) -> EmbedResponse:
        self.router.budget.record_call()
        served: ServedBy | None = None
        error: BaseException | None = None
        try:
            choices = self._choices()
            last: BaseException | None = None
            state = self.router.state
            for index, choice in enumerate(choices):
                attempt = 1
                while True:
                    passes, breaker = await state.take_passes(choice)
                    if passes is None:
                        reason = breaker_reason(breaker)
                        self.book.record(
                            choice, "skipped", detail=reason, started=self.clock(), wall=time.time()
                        )
                        self.book.note_reason(reason)
                        break
                    started, wall = self.clock(), time.time()
                    try:
                        data = await asyncio.wait_for(
                            choice.backend.embed(self.spec, model=choice.model),
                            timeout=max(self.deadline - self.clock(), 0.001),
                        )
                    except asyncio.TimeoutError:
                        raise self.book.exhausted([choice], last) from None
                    except Exception as exc:
                        last = exc
                        decision = classify(exc, kind=choice.kind)
                        await state.report(
                            choice,
                            passes,
                            breaker_outcome(decision),
                            scope=decision.scope,
                            reason=decision.reason,
                        )
                        if decision.action is Action.RAISE:
                            self.book.record(
                                choice, "failed", started=started, wall=wall, error=exc
                            )
                            raise
                        delay = retry_delay(
                            decision,
                            attempt,
                            settings=self.router.settings,
                            remaining=self.deadline - self.clock(),
                            budget=self.router.budget,
                            gated=False,
                            alternative=index + 1 < len(choices),
                            book=self.book,
                        )
                        outcome = "retry" if delay is not None else "fallback"
                        self.book.record(choice, outcome, started=started, wall=wall, error=exc)
                        self.book.note_reason(decision.reason)
                        if decision.loud:
                            log.warning(
                                "dsollama: %s on %s: %s",
                                decision.reason,
                                choice.route,
                                redact(str(exc)),
                            )
                        if delay is None:
                            break
                        await asyncio.sleep(delay)
                        attempt += 1
                        continue
                    await state.report(choice, passes, "success")
                    self.book.record(choice, "ok", started=started, wall=wall)
                    served = choice.served_by()
                    return EmbedResponse(
                        **data, served_by=served, attempts=list(self.book.attempts), cost_usd=0.0
                    )
            raise self.book.exhausted(choices, last)
        except BaseException as exc:
            error = exc
            raise
        finally:
            final = Delta(done=True) if error is None and served is not None else None
            self.book.emit(final, [], error, served)
