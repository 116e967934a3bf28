"""How the provisioner's failures become dsollama errors, and the timeouts behind them.

`DaemonErrorTranslation` is the part of `AsyncProvisioner` that turns ``ollama``,
``httpx`` and ``pydantic`` exceptions into the dsollama error tree: for one-shot calls
(`_translate`), for NDJSON pull/create progress streams (`_progress`, which also insists
that a stream ends in ``success``) and for the error lines such streams carry
(`_stream_error`, which names the fix: a misspelt tag, a daemon too old, a Modelfile the
daemon refused). The read timeouts live here because the messages cite them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .._exceptions import (
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    DaemonTooOldError,
    DaemonUnreachableError,
    DsollamaError,
    ModelNotFoundError,
    ProvisionError,
    ServerError,
    redact,
)
from .events import EventKind, ProgressEvent, _event_for
from .plan import known_tags

if TYPE_CHECKING:
    from .._catalogue import Catalogue
    from .engine import DaemonInfo

__all__ = ["QUICK_READ_TIMEOUT", "STALL_TIMEOUT", "DaemonErrorTranslation"]

QUICK_READ_TIMEOUT = 60.0
"list/show/ps/delete/version answer at once; a minute covers a daemon busy loading a model."
STALL_TIMEOUT = 1800.0
# A pull is silent while the daemon verifies the SHA-256 of a finished layer: minutes
# for the 400 GB models. A create from a large GGUF parses it silently too.

_RERUN_HINT = "run the same command again: Ollama keeps what was downloaded and resumes"


class DaemonErrorTranslation:
    """The error-translating methods of `AsyncProvisioner` (its base class).

    A base class rather than module functions so the methods move unchanged; the
    provisioner sets the attributes declared here.
    """

    host: str
    catalogue: Catalogue
    _stall: float
    _info: DaemonInfo | None

    def _unreachable(self, exc: BaseException) -> DaemonUnreachableError:
        import httpx

        detail = "connection timed out" if isinstance(exc, httpx.TimeoutException) else ""
        return DaemonUnreachableError(self.host, route=f"local:{self.host}", detail=detail)

    @contextlib.contextmanager
    def _translate(self, op: str, model: str | None = None) -> Iterator[None]:
        """Turn ollama/httpx/pydantic errors from a one-shot call into dsollama errors."""
        import httpx
        import ollama
        import pydantic

        route = f"local:{self.host}"
        try:
            yield
        except DsollamaError:
            raise
        except ollama.ResponseError as exc:
            text = redact(str(exc.error))
            if exc.status_code == 404 and model is not None:
                raise ModelNotFoundError(
                    model,
                    route=route,
                    message=f"model {model!r} is not on the daemon at {self.host}",
                ) from exc
            if exc.status_code in (400, 422):
                raise BadRequestError(
                    f"{op}: the daemon refused the request: {text}",
                    route=route,
                    status_code=exc.status_code,
                ) from exc
            if exc.status_code in (429, 503):
                raise BusyError(
                    f"{op}: the daemon is busy: {text}", route=route, status_code=exc.status_code
                ) from exc
            raise ServerError(
                f"{op}: the daemon failed: {text}", route=route, status_code=exc.status_code
            ) from exc
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # ollama turns httpx.ConnectError into the builtin ConnectionError for plain
            # calls but lets the raw httpx error through for streams (reference §6.3).
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(
                f"{op}: the daemon at {self.host} did not answer in {QUICK_READ_TIMEOUT:g} s",
                phase="total",
                route=route,
                seconds=QUICK_READ_TIMEOUT,
            ) from exc
        except httpx.HTTPError as exc:
            raise ServerError(
                f"{op}: the connection to {self.host} failed: {type(exc).__name__}: {exc}",
                route=route,
            ) from exc
        except (pydantic.ValidationError, json.JSONDecodeError) as exc:
            raise ServerError(
                f"{op}: the daemon at {self.host} sent an answer dsollama cannot read",
                route=route,
                hint="is this an Ollama daemon? `dsollama status` checks",
            ) from exc

    async def _progress(
        self,
        model: str,
        opener: Any,
        error: type[ProvisionError],
        verb: str,
        default: EventKind,
    ) -> AsyncIterator[ProgressEvent]:
        """Drive one NDJSON progress stream; it must end in ``success``."""
        import httpx
        import ollama
        import pydantic

        success = False
        stream: Any = None
        try:
            stream = await opener
            async for part in stream:
                if part.status == "success":
                    success = True
                    continue
                yield _event_for(model, part, default)
        except ollama.ResponseError as exc:
            raise self._stream_error(model, verb, error, str(exc.error), exc.status_code) from exc
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise error(
                f"{verb} {model}: the daemon sent no progress for {self._stall:g} s",
                model=model,
                hint=_RERUN_HINT if verb == "pull" else "check the daemon's log, then retry",
            ) from exc
        except httpx.HTTPError as exc:
            raise error(
                f"{verb} {model}: the connection to the daemon broke ({type(exc).__name__})",
                model=model,
                hint=_RERUN_HINT
                if verb == "pull"
                else "retry; `dsollama status` checks the daemon",
            ) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise error(
                f"{verb} {model}: the daemon sent a progress line dsollama cannot read",
                model=model,
                hint="is this an Ollama daemon? `dsollama status` checks",
            ) from exc
        finally:
            # A consumer that stops early must not leave the HTTP response open.
            if stream is not None:
                await stream.aclose()
        if not success:
            raise error(
                f"{verb} {model}: the daemon ended the stream before reporting success",
                model=model,
                hint=_RERUN_HINT if verb == "pull" else "retry; the daemon may have restarted",
            )

    def _stream_error(
        self, model: str, verb: str, error: type[ProvisionError], text: str, status: int
    ) -> ProvisionError:
        text = redact(text)
        lowered = text.lower()
        pulling = verb == "pull" or "pull model manifest" in lowered
        if "file does not exist" in lowered and "manifest" in lowered:
            target = model
            if verb == "create":
                target = "its base model"
            tags = known_tags(model, self.catalogue) if verb == "pull" else []
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
            return DaemonTooOldError(self._info.version if self._info else "< 0.5.5", self.host)
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
