"""The Ollama double's settings: what they are, their defaults, and checked changes.

One object, shared by the double's front (`FakeOllama`'s attributes, ``configure``) and
by the scheduler and route handlers, which read it when a request needs a value, so a
change applies to the next request without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CONFIGURABLE", "DaemonSettings", "checked_changes"]


@dataclass
class DaemonSettings:
    """The daemon's knobs (``OLLAMA_*`` variables and model behaviour), all changeable live.

    The defaults are `FakeOllama`'s keyword arguments, so they are written once.
    """

    version: str
    "What ``/api/version`` says."
    slots: int
    "Parallel requests per loaded model (``OLLAMA_NUM_PARALLEL``)."
    max_loaded: int
    "Models in memory at once (``OLLAMA_MAX_LOADED_MODELS``)."
    max_queue: int
    "Requests that may wait for a load; past that the 503 (``OLLAMA_MAX_QUEUE``)."
    load_seconds: float
    "How long a cold load takes."
    keep_alive_seconds: float
    "How long an idle model stays loaded (``OLLAMA_KEEP_ALIVE``; negative = forever)."
    prompt_seconds: float
    "Prompt evaluation time before the first token."
    tokens_per_second: float
    "Pace of the answer (``<= 0`` or infinite: no pacing)."
    answer_tokens: int
    "Tokens in an answer."
    thinking_tokens: int
    "Tokens of reasoning, for a model that thinks."
    think_inline: bool
    "Behave like an old server: ``<think>`` inline in the content, ``think`` ignored."
    pull_bytes_per_second: float
    "Download speed of a pull."
    embed_dims: int
    "Length of an embedding vector."
    pull_tick_seconds: float = 0.06
    "Progress lines while pulling come this often (the daemon's ticker)."


CONFIGURABLE: dict[str, type] = {
    "version": str,
    "slots": int,
    "max_loaded": int,
    "max_queue": int,
    "load_seconds": float,
    "keep_alive_seconds": float,
    "prompt_seconds": float,
    "tokens_per_second": float,
    "answer_tokens": int,
    "thinking_tokens": int,
    "think_inline": bool,
    "pull_bytes_per_second": float,
    "embed_dims": int,
}
"Settings shown and changed by ``/_dsollama/config``, with the type each must have."


def checked_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` in the settings' own types; ValueError naming the first bad name or value.

    Every change is checked before any is applied, so a bad one leaves the settings as
    they were.

    >>> checked_changes({"slots": 2, "load_seconds": 1})
    {'slots': 2, 'load_seconds': 1.0}
    >>> checked_changes({"slots": True})
    Traceback (most recent call last):
    ...
    ValueError: setting 'slots' must be of type int
    """
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        kind = CONFIGURABLE.get(name)
        if kind is None:
            raise ValueError(f"unknown setting {name!r}; expected one of {', '.join(CONFIGURABLE)}")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        # bool is an int to isinstance: a JSON `true` is not a slot count.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"setting {name!r} must be of type {kind.__name__}")
        checked[name] = value
    return checked
