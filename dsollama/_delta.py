"""The one internal shape of a piece of an answer.

Both backends turn what their server sends (Ollama NDJSON chunks, OpenAI-format SSE
events or JSON bodies) into `Delta`s; the router only ever sees `Delta`s, and builds the
public `ChatResponse` / `GenerateResponse` objects from them. Reasoning is already split
out into ``thinking`` here, whatever its wire form was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delta", "ToolCall"]


@dataclass(slots=True)
class ToolCall:
    """A complete tool call (arguments already decoded to a dict)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class Delta:
    """A fragment of an answer; the last one of an answer has ``done=True``."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    done: bool = False
    done_reason: str | None = None
    "stop, length, tool_calls, content_filter, load or unload (final delta only)."
    model: str | None = None
    # Counters, on the final delta when the server reports them.
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    total_duration_ns: int | None = None
    load_duration_ns: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_duration_ns: int | None = None
    context: list[int] | None = None
    "Generate's token context (local only)."
    created_at: str | None = None
    "When the server made this piece, as it wrote it (an Ollama daemon's ``created_at``)."

    @property
    def has_output(self) -> bool:
        """True when this delta carries something a caller would see as progress."""
        return bool(self.content or self.thinking or self.tool_calls)
