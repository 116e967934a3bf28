"""What both doubles share: their server's lifecycle, faults, and request records.

`FakeOllama` and `FakeDeepSeek` differ in what they answer, not in how a test drives
them; this base keeps that surface identical (and written once).
"""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

from ._control import is_control_path
from ._faults import Fault, FaultPlan
from ._server import Handler, HTTPServer, RecordedRequest

__all__ = ["Double"]

D = TypeVar("D", bound="Double")


class Double:
    """A double's server on loopback, its queued faults and what reached it."""

    #: Fault kinds this double cannot act out (rejected by `add_fault` with a clear message).
    foreign_faults: frozenset[str] = frozenset()
    foreign_owner = ""

    def __init__(self, handler: Handler, *, host: str, port: int) -> None:
        self._faults = FaultPlan()
        self._server = HTTPServer(handler, host=host, port=port)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        return self._server.url

    @property
    def port(self) -> int:
        """The port it listens on (chosen by the OS when created with ``port=0``)."""
        return self._server.port

    def _before_start(self) -> None:
        """Hook: reset state that belongs to one event loop."""

    def start(self: D) -> D:
        """Listen (on its own event-loop thread) and return self."""
        if not self._server.running:
            self._before_start()
            self._server.start()
        return self

    def stop(self) -> None:
        """Release held requests, close every connection and the port."""
        self._faults.release()
        self._server.stop()

    def __enter__(self: D) -> D:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: D) -> D:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The queued faults (the shared vocabulary, `dsollama.testing.Fault`)."""
        return self._faults

    def add_fault(self, *faults: Fault) -> None:
        """Queue faults; each request to a serving route takes the first that matches its path."""
        for fault in faults:
            if fault.kind in self.foreign_faults:
                raise ValueError(
                    f"fault kind {fault.kind!r} belongs to the {self.foreign_owner} double"
                )
        self._faults.add(*faults)

    def release(self) -> None:
        """End every stall held until release (a ``stall_*`` fault with ``seconds=0``)."""
        self._faults.release()

    # -- what reached it ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request that reached a serving route, in order (control routes left out)."""
        return self.recorded()

    def recorded(self, path: str | None = None, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally for one path (a trailing ``*`` matches a prefix) or method."""
        return [r for r in self._server.recorded(path, method) if not is_control_path(r.path)]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        self._server.clear_requests()

    # -- connections ------------------------------------------------------------------------

    def refuse_connections(self) -> None:
        """Stop listening and drop open connections: clients see a dead server."""
        self._server.refuse_connections()

    def accept_connections(self) -> None:
        """Listen again on the same port."""
        self._server.accept_connections()
