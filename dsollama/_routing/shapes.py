"""The shapes the router's modules share: controls, route choices, racers, results."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from .._backends import Backend, CallSpec, StreamStats
from .._catalogue import Catalogue
from .._config import Policy, Settings
from .._delta import Delta
from .._state import Admission, Lease
from .._types import Attempt, CallRecord, HostedUsage, Seam, ServedBy
from .backoff import RetryBudget

if TYPE_CHECKING:
    from .state import Passes, RoutingState

__all__ = [
    "CallSink",
    "CallSummary",
    "Controls",
    "Failure",
    "QueueItem",
    "Racer",
    "RouteChoice",
    "RoutedDelta",
    "RunContext",
    "Skip",
    "merge_deltas",
]


@runtime_checkable
class CallSink(Protocol):
    """Receives one `CallRecord` per finished call; must not block or raise.

    A sink whose ``content`` attribute is False (the request log of a client that keeps
    metadata only) declares it stores no prompt or answer: when no sink of a call wants
    them, its record carries none (``messages``, ``response_text`` and
    ``response_thinking`` are None), and they are not copied for it.
    """

    def record(self, rec: CallRecord) -> None: ...


BrokenStream = Literal["raise", "continue", "restart"]


@dataclass(frozen=True)
class Controls:
    """Per-call routing controls, resolved from arguments and settings (`_call.py`)."""

    policy: Policy
    local_only: bool
    first_token_timeout: float
    gap_timeout: float
    total_timeout: float
    on_broken_stream: BrokenStream = "raise"
    hedge: bool = False
    admission: Literal["budget", "latency"] = "budget"
    log: bool = True
    source: str = "library"
    fallback_models: tuple[str, ...] = ()


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
                api=self.backend.api,
                route=self.backend.route,
                endpoint=self.backend.endpoint,
                model=self.model,
                thinking=self.thinking,
            )
            object.__setattr__(self, "_served_by", cached)
        return cached


class RunContext(Protocol):
    """What one call's run needs from its router (the router is the one implementation)."""

    settings: Settings
    catalogue: Catalogue
    clock: Callable[[], float]
    sinks: list[CallSink]
    budget: RetryBudget
    backends: list[Backend]

    @property
    def state(self) -> RoutingState: ...

    def plan(self, spec: CallSpec, controls: Controls) -> list[RouteChoice]: ...

    async def admit(
        self, choice: RouteChoice, spec: CallSpec, controls: Controls, *, has_alternative: bool
    ) -> Skip | Admission: ...

    def viable(self, choice: RouteChoice) -> bool: ...

    def settle(self, task: asyncio.Task[None]) -> None: ...


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
    restart: bool = False
    "The answer restarts here on another route: discard what was received so far."


class Failure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


QueueItem = Delta | Failure


@dataclass(eq=False)
class Racer:
    """One attempt on one route: a reader task delivering items to the call."""

    choice: RouteChoice
    attempt_no: int
    started: float
    started_wall: float
    items: deque[QueueItem] = field(default_factory=deque)
    "Delivered by the reader, not yet taken by the call."
    task: asyncio.Task[None] | None = None
    stats: StreamStats = field(default_factory=StreamStats)
    lease: Lease | None = None
    "Its place in the route's queue (admission), held until it finishes."
    passes: Passes | None = None
    "The breaker passes it was let through with."
    first_token_at: float | None = None
    predicted: float | None = None
    "Predicted seconds to the first token when the racer started."
    budget_spent: bool = False
    "True once this racer's first-token budget has passed (hedged, so no second deadline)."
    continuation: tuple[str, str] | None = None
    "(partial content, partial thinking) when this racer continues a broken stream."


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
        created_at=final.created_at,
    )
    return merged
