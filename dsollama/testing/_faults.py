"""The fault vocabulary shared by both doubles.

A test (or a process driving a double over HTTP) queues `Fault`s; each request the double
serves takes the first matching fault, which applies to it and counts down. The same JSON
shape goes over the control route ``POST /_dsollama/faults``.

Kinds, and what the double does with the request that takes the fault:

========================  ===========================================================
``refuse``                stop listening for ``seconds`` (0 = until `accept_connections`)
``reset``                 reset the connection before the status line
``status``                answer ``status`` with the server's error body (``message``)
``error_line``            stream ``after_chunks`` chunks, then an in-band error line
``close_without_done``    stream ``after_chunks`` chunks, then end cleanly, no terminator
                          event (Ollama: no ``done:true``; DeepSeek: no ``[DONE]``)
``drop``                  stream ``after_chunks`` chunks, then cut the connection
``stall_before``          hold the request ``seconds`` before the status line
``stall_after``           stream ``after_chunks`` chunks, then go silent ``seconds``
``slow_first_token``      delay the first token by ``seconds`` (headers go out at once)
``malformed_line``        after ``after_chunks`` chunks, send a line that is not JSON
``blank_line``            after ``after_chunks`` chunks, send an empty line
``keepalive``             DeepSeek: 200 at once, then filler for ``seconds``, then data
``keepalive_then_close``  DeepSeek: 200 at once, filler for ``seconds``, then close
``finish_reason``         DeepSeek: end the answer with ``finish_reason`` after
                          ``after_chunks`` chunks (e.g. insufficient_system_resource)
``json_body``             DeepSeek: answer a streaming request with the whole
                          completion as one ``application/json`` body (a server or
                          proxy that ignored ``stream: true``)
``wrong_type``            DeepSeek: the chunk after ``after_chunks`` chunks carries its
                          text as a number (``"content": 42``), then the stream goes on
                          to ``[DONE]``; non-streaming, the message's text is a number
``html_body``             DeepSeek: 200 with a ``text/html`` page instead of the answer
                          (a proxy or captive portal in the way)
========================  ===========================================================

A stall with ``seconds=0`` lasts until `FaultPlan.release()` (or the client goes away), so
tests can hold a request open and let it go on an event instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

__all__ = ["Fault", "FaultKind", "FaultPlan"]

FaultKind = Literal[
    "refuse",
    "reset",
    "status",
    "error_line",
    "close_without_done",
    "drop",
    "stall_before",
    "stall_after",
    "slow_first_token",
    "malformed_line",
    "blank_line",
    "keepalive",
    "keepalive_then_close",
    "finish_reason",
    "json_body",
    "wrong_type",
    "html_body",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
DEEPSEEK_ONLY_KINDS = frozenset(
    {"keepalive", "keepalive_then_close", "finish_reason", "json_body", "wrong_type", "html_body"}
)
"Kinds that only make sense for the OpenAI-format double (the Ollama double refuses them)."


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1
    "How many matching requests take this fault; None = every one until cleared."
    path: str | None = None
    "Only requests to this path (a trailing '*' matches a prefix); None = any serving route."
    status: int | None = None
    message: str | None = None
    after_chunks: int = 0
    seconds: float = 0.0
    interval: float | None = None
    "Keep-alive filler interval (DeepSeek double)."
    finish_reason: str | None = None
    model: str | None = None
    "Only requests for this model (the ``model`` field of the request body); None = any."

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(
                f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}"
            )
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs a status code")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for every request)")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def matches(self, path: str, model: str | None = None) -> bool:
        if self.model is not None and model != self.model:
            return False
        if self.path is None:
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path


def _model_of(body: bytes) -> str | None:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


class FaultPlan:
    """Queued faults, thread-safe: tests add from their thread, the double takes from its loop."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stalls_changed = threading.Condition(self._lock)
        self._release_generation = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, path: str, *, named_only: bool = False, body: bytes = b"") -> Fault | None:
        """The first fault matching ``path`` (and the model ``body`` asks for), counted
        down (removed when used up).

        ``named_only``: only a fault whose ``path`` names this one (a double's monitoring
        routes, which a test polls while faults wait for the requests under test).
        """
        with self._lock:
            model = _model_of(body) if any(f.model for f in self._faults) else None
            for index, fault in enumerate(self._faults):
                if named_only and fault.path is None:
                    continue
                if fault.matches(path, model):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            del self._faults[index]
                    return fault
        return None

    # -- releasable stalls ------------------------------------------------------------

    def release(self) -> None:
        """End every stall that is waiting for a release (``seconds=0``)."""
        with self._lock:
            self._release_generation += 1
            waiters, self._waiters = self._waiters, []
            self._stalls_changed.notify_all()
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def stalled(self) -> int:
        """How many stalls are waiting for `release()` now.

        A test waits for this before releasing: a release only ends stalls that have
        begun, so releasing before the double reached its stall would be lost.
        """
        with self._lock:
            return len(self._waiters)

    def wait_for_stalled(self, count: int, timeout: float = 5.0) -> bool:
        """Block until exactly ``count`` stalls wait for `release()`; False on timeout."""
        with self._stalls_changed:
            return self._stalls_changed.wait_for(lambda: len(self._waiters) == count, timeout)

    async def stall(self, seconds: float) -> None:
        """Sleep ``seconds``, or until `release()` when ``seconds`` is 0."""
        if seconds > 0:
            await asyncio.sleep(seconds)
            return
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.append(waiter)
            self._stalls_changed.notify_all()
        try:
            await event.wait()
        finally:
            # A client that went away leaves no stale stall behind (see `stalled`).
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self._stalls_changed.notify_all()
