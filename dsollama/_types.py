"""Public result types.

`ChatResponse`, `GenerateResponse` and `EmbedResponse` subclass the official `ollama`
types, so code written against `ollama` keeps working (`isinstance`, attribute and
item access, `model_dump`). dsollama only *adds* fields: which route served the answer
(`served_by`), what was tried (`attempts`), why a fallback happened (`fallback_reason`),
where a continued stream changed route (`seams`), hosted token detail (`usage`) and the
estimated hosted cost (`cost_usd`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import ollama
from pydantic import BaseModel, ConfigDict

__all__ = [
    "Attempt",
    "CallRecord",
    "ChatResponse",
    "EmbedResponse",
    "GenerateResponse",
    "HostedUsage",
    "RouteKind",
    "Seam",
    "ServedBy",
]

RouteKind = Literal["local", "hosted"]

Outcome = Literal["ok", "retry", "fallback", "failed", "cancelled", "skipped", "lost-race"]


class ServedBy(BaseModel):
    """Where an answer came from."""

    model_config = ConfigDict(frozen=True)

    kind: RouteKind
    "'local' for a private route (this machine or your own servers), 'hosted' for a third party."
    api: Literal["ollama", "openai"] = "ollama"
    "How the route was spoken to: Ollama's native API or the OpenAI format."
    route: str
    "Stable route name, e.g. 'local:127.0.0.1:11434' or 'hosted:api.deepseek.com'."
    endpoint: str
    "Base URL of the route (never with credentials)."
    model: str
    "The model that actually answered, as that route names it."
    thinking: bool | None = None
    "Whether reasoning was switched on for this answer, when known."

    def __str__(self) -> str:
        return f"{self.kind} {self.model} @ {self.endpoint}"


class Attempt(BaseModel):
    """One try on one route: what happened and how long it took."""

    model_config = ConfigDict(frozen=True)

    route: str
    kind: RouteKind
    model: str
    outcome: Outcome
    "ok; retry (tried again on the same route); fallback (moved on); failed; cancelled; skipped; lost-race."
    error: str | None = None
    "Error class name, e.g. 'BusyError', when the attempt failed."
    status_code: int | None = None
    detail: str | None = None
    "Short, redacted description of what happened (or why the route was skipped)."
    started_at: float = 0.0
    "Unix time the attempt began."
    duration_s: float = 0.0
    ttft_s: float | None = None
    "Time to the first token of this attempt, when one arrived."

    def brief(self) -> str:
        """Route, outcome and error class only, e.g. 'local:127.0.0.1:11434 → fallback (BusyError 503)'."""
        extra = (
            f" ({self.error}{' ' + str(self.status_code) if self.status_code else ''})"
            if self.error
            else ""
        )
        if not extra and self.outcome == "skipped" and self.detail:
            extra = f" ({self.detail})"
        return f"{self.route} → {self.outcome}{extra}"

    def describe(self) -> str:
        """One human line, e.g. 'local:127.0.0.1:11434 deepseek-r1:8b → fallback (BusyError 503)'."""
        what: str = self.outcome
        if self.error:
            extra = f"{self.error} {self.status_code}" if self.status_code else self.error
            what += f" ({extra}{': ' + self.detail if self.detail else ''})"
        elif self.detail:
            what += f" ({self.detail})"
        return f"{self.route} {self.model} → {what}"


class Seam(BaseModel):
    """Where a broken stream was continued on another route."""

    model_config = ConfigDict(frozen=True)

    at_char: int
    "Length of the answer text delivered before the seam."
    from_route: str
    to_route: str
    reason: str
    kind: Literal["continue", "restart"] = "continue"
    "continue: the answer goes on from ``at_char``; restart: it starts again from the beginning."


class HostedUsage(BaseModel):
    """Token detail only the hosted API reports."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0


class _CallInfo(BaseModel):
    served_by: ServedBy | None = None
    "Which route answered. Present on every response and every streamed chunk."
    attempts: list[Attempt] | None = None
    "Everything tried for this call, in order. On the final response or chunk."
    fallback_reason: str | None = None
    "Why the call did not stay on its first route, when it did not."
    seams: list[Seam] | None = None
    "Where a broken stream was continued on another route."
    usage: HostedUsage | None = None
    cost_usd: float | None = None
    "Estimated hosted cost of the call in US dollars (0 for local answers)."
    ignored: list[str] | None = None
    "Request arguments the serving route could not honour, as 'name: why'."
    ttft_s: float | None = None
    "Seconds from the call to its first token, as this client measured it (final only)."
    elapsed_s: float | None = None
    "Seconds the whole call took, retries and fallbacks included (final only)."
    restart: bool | None = None
    "True on the chunk that announces a restart: discard what you received; the whole answer follows from another route."


class ChatResponse(ollama.ChatResponse, _CallInfo):
    """`ollama.ChatResponse` plus where it was served and what was tried."""


class GenerateResponse(ollama.GenerateResponse, _CallInfo):
    """`ollama.GenerateResponse` plus where it was served and what was tried."""


class EmbedResponse(ollama.EmbedResponse, _CallInfo):
    """`ollama.EmbedResponse` plus the local route that served it."""


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything the request log keeps about one finished call (success or failure).

    Produced by the router once per call and handed to a `CallSink`; it holds no
    secret. ``messages`` and the answer texts are ``None`` when content logging is off.
    """

    operation: Literal["chat", "generate", "embed"]
    model_requested: str
    ok: bool
    started_at: float = field(default_factory=time.time)
    source: str = "library"
    "library, cli or serve."
    stream: bool = False
    served_by: ServedBy | None = None
    attempts: tuple[Attempt, ...] = ()
    fallback_reason: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    ttft_s: float | None = None
    total_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    messages: list[dict[str, Any]] | None = None
    "The request's messages (chat) or [{'role': 'user', 'content': prompt}] (generate)."
    response_text: str | None = None
    response_thinking: str | None = None
