"""What a call leaves behind: its attempts, its summary, one CallRecord and one log line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._backends import CallSpec
from .._delta import Delta
from .._exceptions import (
    AllRoutesFailedError,
    BackendError,
    DsollamaError,
    error_fields,
    redact,
)
from .._types import Attempt, CallRecord, HostedUsage, Seam, ServedBy
from .shapes import CallSink, CallSummary, Controls, Racer, RouteChoice

__all__ = ["CallBook"]

log = logging.getLogger("dsollama")


class CallBook:
    """The record of one call: what was tried, why it moved, what it cost, how long it took.

    A part of the call's run (`run.CallRun` holds one): it knows nothing of routing, only
    what it is told, and ends the call with one `CallRecord` and one log line.
    """

    def __init__(
        self,
        spec: CallSpec,
        controls: Controls,
        *,
        clock: Callable[[], float],
        sinks: Sequence[CallSink],
    ) -> None:
        self.spec = spec
        self.controls = controls
        self.clock = clock
        self.sinks = sinks
        self.started = self.clock()
        self.started_wall = time.time()
        self.attempts: list[Attempt] = []
        self.fallback_reason: str | None = None
        self.seams: list[Seam] = []
        self._content: list[str] = []
        self._thinking: list[str] = []
        self.ttft_s: float | None = None
        self.usage: HostedUsage | None = None
        self.cost_usd: float = 0.0
        self.cost_known = False

    def note_reason(self, reason: str) -> None:
        if self.fallback_reason is None:
            self.fallback_reason = reason

    def record(
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

    def record_racer(
        self, racer: Racer, outcome: str, *, error: BaseException | None = None
    ) -> None:
        ttft = racer.first_token_at - racer.started if racer.first_token_at is not None else None
        self.record(
            racer.choice,
            outcome,
            started=racer.started,
            wall=racer.started_wall,
            error=error,
            ttft=ttft,
        )

    def track_delivered(self, delta: Delta) -> None:
        # Pieces, joined when asked: adding to a string attribute copies the whole text
        # at every chunk.
        if delta.content:
            self._content.append(delta.content)
        if delta.thinking:
            self._thinking.append(delta.thinking)

    def reset_delivered(self) -> None:
        """The answer restarts: the caller discards what it received."""
        self._content.clear()
        self._thinking.clear()

    @property
    def delivered_content(self) -> str:
        """The answer text the caller has received so far."""
        if len(self._content) > 1:
            self._content[:] = ["".join(self._content)]
        return self._content[0] if self._content else ""

    @property
    def delivered_thinking(self) -> str:
        """The reasoning the caller has received so far."""
        if len(self._thinking) > 1:
            self._thinking[:] = ["".join(self._thinking)]
        return self._thinking[0] if self._thinking else ""

    def summary(self, winner: Racer | None, routes: Sequence[RouteChoice]) -> CallSummary:
        winner_kind = winner.choice.kind if winner is not None else None
        first_kind = routes[0].kind if routes else None
        moved = winner is not None and (
            winner.choice.route != routes[0].route or len(self.attempts) > 1 or bool(self.seams)
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
            ignored=list(winner.stats.extra.get("unsupported", [])) if winner is not None else [],
        )

    def exhausted(self, routes: Sequence[RouteChoice], last: BaseException | None) -> DsollamaError:
        """The error that ends a call no route could answer.

        When every route tried failed for one reason, that reason's own class (a
        `ModelNotFoundError`, a `BusyError`…) carrying ``attempts``, so ``except`` clauses
        for it work; when they failed for different reasons, `AllRoutesFailedError`.
        """
        failed = [a for a in self.attempts if a.error is not None and a.outcome != "skipped"]
        reasons = {a.error for a in failed}
        if isinstance(last, BackendError) and len(reasons) == 1 and type(last).__name__ in reasons:
            last.attempts = list(self.attempts)
            return last
        tried_local = any(a.kind == "local" for a in self.attempts)
        has_hosted = any(c.kind == "hosted" for c in routes)
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

    def emit(
        self,
        final: Delta | None,
        answer: list[Delta],
        error: BaseException | None,
        served: ServedBy | None,
    ) -> None:
        ok = error is None and final is not None
        served = served if ok else None
        summary_ttft = self.ttft_s
        total = self.clock() - self.started
        # The prompt and the answer only when a sink may keep them: the request log of a
        # library keeps metadata only, and copying every message per call is wasted then.
        keeps = self.controls.log and any(getattr(s, "content", True) for s in self.sinks)
        content = thinking = ""
        if keeps and self.spec.stream:
            content, thinking = self.delivered_content, self.delivered_thinking
        elif keeps:
            content = "".join(d.content for d in answer)
            thinking = "".join(d.thinking for d in answer)
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
            messages=_messages_for_log(self.spec) if keeps else None,
            response_text=content or None,
            response_thinking=thinking or None,
        )
        _log_line(rec)
        if not self.controls.log:
            return
        for sink in self.sinks:
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
