"""What a failed pull or create means, and the fix to name.

The daemon's own failures (nothing listening, an HTTP status, a malformed answer) are
translated once, by the `OllamaDaemon` that owns the connection, into the same dsollama
errors every other door raises. What is particular to a progress stream is read here:
`progress_events` drives one NDJSON pull/create stream, insists that it ends in
``success``, and turns its in-band error lines and its stalls and breaks into a
`PullError`/`CreateError` that names the fix (a misspelt tag, a daemon too old, a
Modelfile the daemon refused; "run it again: Ollama resumes").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import ollama

from .._exceptions import (
    BackendError,
    BackendTimeoutError,
    BadRequestError,
    DaemonTooOldError,
    IncompleteResponseError,
    ProvisionError,
    ServerError,
    redact,
)
from .events import EventKind, ProgressEvent, _event_for
from .plan import known_tags

if TYPE_CHECKING:
    from .._catalogue import Catalogue

__all__ = ["progress_events", "stream_error"]

_RERUN_HINT = "run the same command again: Ollama keeps what was downloaded and resumes"


async def progress_events(
    parts: AsyncIterator[ollama.ProgressResponse],
    *,
    model: str,
    error: type[ProvisionError],
    verb: str,
    default: EventKind,
    stall_s: float,
    catalogue: Catalogue,
    daemon_version: str | None,
    host: str,
) -> AsyncIterator[ProgressEvent]:
    """Drive one NDJSON progress stream (from `OllamaDaemon.progress`); it must end in
    ``success``. The daemon's own failures pass through as the errors they are."""
    success = False
    rerun = _RERUN_HINT if verb == "pull" else None
    try:
        async for part in parts:
            if part.status == "success":
                success = True
                continue
            yield _event_for(model, part, default)
    except ollama.ResponseError as exc:  # an error line inside the stream
        raise stream_error(
            model, verb, error, str(exc.error), exc.status_code, catalogue, daemon_version, host
        ) from exc
    except BackendTimeoutError as exc:
        raise error(
            f"{verb} {model}: the daemon sent no progress for {stall_s:g} s",
            model=model,
            hint=rerun or "check the daemon's log, then retry",
        ) from exc
    except IncompleteResponseError as exc:
        raise error(
            f"{verb} {model}: the connection to the daemon broke",
            model=model,
            hint=rerun or "retry; `dsollama status` checks the daemon",
        ) from exc
    except BadRequestError as exc:  # refused before streaming: the daemon's words say why
        cause = exc.__cause__
        text = str(cause.error) if isinstance(cause, ollama.ResponseError) else exc.message
        raise stream_error(
            model, verb, error, text, exc.status_code or 400, catalogue, daemon_version, host
        ) from exc
    except ServerError as exc:
        if exc.status_code is not None:
            raise  # an HTTP failure of the daemon: the same error as through any door
        raise error(
            f"{verb} {model}: the daemon sent a progress line dsollama cannot read",
            model=model,
            hint="is this an Ollama daemon? `dsollama status` checks",
        ) from exc
    except BackendError:
        raise
    if not success:
        raise error(
            f"{verb} {model}: the daemon ended the stream before reporting success",
            model=model,
            hint=rerun or "retry; the daemon may have restarted",
        )


def stream_error(
    model: str,
    verb: str,
    error: type[ProvisionError],
    text: str,
    status: int,
    catalogue: Catalogue,
    daemon_version: str | None,
    host: str,
) -> ProvisionError:
    """The error for a pull/create failure the daemon described in words."""
    text = redact(text)
    lowered = text.lower()
    pulling = verb == "pull" or "pull model manifest" in lowered
    if "file does not exist" in lowered and "manifest" in lowered:
        target = model
        if verb == "create":
            target = "its base model"
        tags = known_tags(model, catalogue) if verb == "pull" else []
        hint = (
            "known tags: " + ", ".join(tags)
            if tags
            else "check the name at https://ollama.com/library (`dsollama models` lists DeepSeek tags)"
        )
        return error(
            f"{verb} {model}: the Ollama registry has no such model or tag ({target}): {text}",
            model=model,
            hint=hint,
        )
    if "412" in text and "newer version" in lowered:
        return error(
            f"{verb} {model}: this model needs a newer Ollama: {text}",
            model=model,
            hint="upgrade Ollama (https://ollama.com/download), then rerun",
        )
    if "path or modelfile are required" in lowered:
        return DaemonTooOldError(daemon_version or "< 0.5.5", host)
    if verb == "create" and (status in (400, 422) or lowered.startswith("template error")):
        return error(
            f"create {model}: the daemon refused the Modelfile: {text}",
            model=model,
            hint="fix the Modelfile (`dsollama show MODEL --modelfile` shows a working one)",
        )
    if "invalid model name" in lowered:
        return error(
            f"{verb} {model}: invalid model name",
            model=model,
            hint="names look like model[:tag], e.g. deepseek-r1:8b",
        )
    if pulling:
        return error(f"{verb} {model} failed: {text}", model=model, hint=_RERUN_HINT)
    return error(
        f"create {model} failed: {text}",
        model=model,
        hint="check the Modelfile and the daemon's log, then retry",
    )
