"""Progress events: what a provisioning run reports, and how daemon status lines become them.

`ProgressEvent` is the one type the executor yields and a CLI or a GUI renders;
`_event_for` turns one line of a pull or create stream (an ``ollama.ProgressResponse``)
into one, recognising the daemon's status texts for manifests, layers and verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import ollama

__all__ = ["EventKind", "ProgressEvent"]

EventKind = Literal[
    "check",
    "plan",
    "pull-manifest",
    "layer",
    "verify",
    "write",
    "status",
    "upload-blob",
    "create",
    "up-to-date",
    "done",
    "warning",
    "summary",
]


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened while provisioning, ready to render.

    ``kind`` says what it is: ``check`` (daemon reachable, version), ``plan`` (one planned
    step, or why the recommended model was chosen), ``pull-manifest``, ``layer`` (bytes of one layer: ``digest``, ``completed``,
    ``total``), ``verify``, ``write``, ``status`` (any other daemon status line),
    ``upload-blob`` (a local file going to the daemon), ``create`` (a create status line),
    ``up-to-date``, ``done`` (one model finished), ``warning`` and ``summary`` (the last
    event of a run).
    """

    kind: EventKind
    model: str
    "The model this event is about ('' for run-wide events)."
    message: str
    "One line for people."
    digest: str | None = None
    "The layer or blob digest (``sha256:<hex>``) for layer and upload events."
    completed: int | None = None
    "Bytes done, when the daemon says."
    total: int | None = None
    "Bytes in all, when the daemon says."
    status: str | None = None
    "The daemon's own status text, when the event came from one."

    @property
    def fraction(self) -> float | None:
        """completed / total in [0, 1], when both are known."""
        if self.total and self.completed is not None:
            return max(0.0, min(1.0, self.completed / self.total))
        return None


# -- status lines -> events -------------------------------------------------------------------


def _event_for(model: str, part: ollama.ProgressResponse, default: EventKind) -> ProgressEvent:
    status = part.status or ""
    digest = part.digest or None
    kind: EventKind = default
    if status == "pulling manifest":
        kind = "pull-manifest"
    elif status.startswith("pulling ") and (digest or status == "pulling model"):
        kind = "layer"
    elif status.startswith("verifying"):
        kind = "verify"
    elif status == "writing manifest":
        kind = "write"
    if digest and set(digest.removeprefix("sha256:")) == {"0"}:
        digest = None  # quantize progress carries a dummy digest of zeros
    return ProgressEvent(
        kind=kind,
        model=model,
        message=status,
        digest=digest,
        completed=part.completed,
        total=part.total,
        status=status,
    )
