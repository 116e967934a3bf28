"""Framing for the Ollama double: NDJSON streams, error delivery, and stream-level faults.

Go's ``streamResponse`` sends nothing until the handler has its first chunk: the status
line and headers go out with it. So an error found before the first chunk still becomes
a real status (``application/json``), and an error after it becomes one more
``{"error": ...}`` line under HTTP 200, after which the response ends normally.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from ._faults import Fault, FaultPlan
from ._ollama_wire import ApiError, go_json, ndjson
from ._server import AbortConnection, Response, StreamResponse, TruncateStream

__all__ = [
    "STREAM_FAULTS",
    "Line",
    "collect",
    "error_response",
    "json_response",
    "ndjson_lines",
    "respond_stream",
    "with_fault",
]

Line = tuple[bytes, bool]
"An encoded line and whether it is the stream's last regular line (``done``/``success``)."

STREAM_FAULTS = frozenset(
    {
        "error_line",
        "close_without_done",
        "drop",
        "stall_after",
        "slow_first_token",
        "malformed_line",
        "blank_line",
    }
)
RUNNER_STOPPED = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or an "
    "internal error, check ollama server logs for details"
)


def json_response(payload: Any, status: int = 200) -> Response:
    """A one-object answer, encoded as Go encodes it."""
    return Response(status=status, body=go_json(payload))


def error_response(status: int, message: str, *, streaming: bool = False) -> Response:
    """``{"error": message}``; a stream that fails before its first chunk says ``application/json``."""
    content_type = "application/json" if streaming else "application/json; charset=utf-8"
    return Response(status=status, body=go_json({"error": message}), content_type=content_type)


async def ndjson_lines(
    objects: AsyncGenerator[dict[str, Any], None], is_final: Callable[[dict[str, Any]], bool]
) -> AsyncGenerator[Line, None]:
    """Encode objects as NDJSON; an `ApiError` after the first line becomes an error line."""
    sent = False
    async with aclosing(objects):
        try:
            async for item in objects:
                yield ndjson(item), is_final(item)
                sent = True
        except ApiError as exc:
            if not sent:
                raise
            # json.Encoder.Encode: the error object and a newline, then the stream ends.
            yield ndjson({"error": exc.message}), True


async def with_fault(
    lines: AsyncGenerator[Line, None],
    fault: Fault | None,
    plan: FaultPlan,
    *,
    error_line: Callable[[str], bytes],
) -> AsyncGenerator[bytes, None]:
    """Apply a stream-level fault after ``fault.after_chunks`` lines (or before the last one)."""
    async with aclosing(lines):
        if fault is None or fault.kind not in STREAM_FAULTS:
            async for line, _ in lines:
                yield line
            return
        if fault.kind == "slow_first_token":
            await plan.stall(fault.seconds)
            async for line, _ in lines:
                yield line
            return
        count = 0
        fired = False
        async for line, final in lines:
            if not fired and (count >= fault.after_chunks or final):
                fired = True
                kind = fault.kind
                if kind == "error_line":
                    message = fault.message or RUNNER_STOPPED
                    if count == 0:
                        # Nothing written yet: the daemon still answers with a status.
                        raise ApiError(fault.status or 500, message)
                    yield error_line(message)
                    return
                if kind == "close_without_done":
                    return
                if kind == "drop":
                    raise TruncateStream
                if kind == "stall_after":
                    await plan.stall(fault.seconds)
                elif kind == "malformed_line":
                    yield line[: max(len(line) // 2, 1)].rstrip(b"\n") + b"\n"
                elif kind == "blank_line":
                    yield b"\n"
            yield line
            count += 1


async def respond_ndjson(
    objects: AsyncGenerator[dict[str, Any], None],
    is_final: Callable[[dict[str, Any]], bool],
    fault: Fault | None,
    plan: FaultPlan,
) -> Response | StreamResponse:
    """A streamed NDJSON answer with the request's fault applied (chat, generate, pull, create)."""
    lines = with_fault(
        ndjson_lines(objects, is_final), fault, plan, error_line=lambda m: ndjson({"error": m})
    )
    early = fault is not None and fault.kind == "slow_first_token"
    return await respond_stream(lines, early_headers=early)


async def respond_stream(
    chunks: AsyncGenerator[bytes, None],
    *,
    content_type: str = "application/x-ndjson",
    early_headers: bool = False,
    on_error: Callable[[ApiError], Response] | None = None,
) -> Response | StreamResponse:
    """Hold the headers until the first chunk exists, like Go's ``c.Stream``.

    ``early_headers`` sends them at once instead (the ``slow_first_token`` fault).
    """
    if early_headers:
        return StreamResponse(_errors_as_lines(chunks), content_type=content_type)
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        return StreamResponse(_empty(), content_type=content_type)
    except ApiError as exc:
        await _close(chunks)
        if on_error is not None:
            return on_error(exc)
        return error_response(exc.status, exc.message, streaming=True)
    except TruncateStream:
        await _close(chunks)
        return StreamResponse(_cut(), content_type=content_type)
    except BaseException:
        await _close(chunks)
        raise
    return StreamResponse(_prepend(first, chunks), content_type=content_type)


async def _close(chunks: AsyncGenerator[bytes, None]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    async with aclosing(rest):
        yield first
        async for chunk in rest:
            yield chunk


async def _errors_as_lines(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    async with aclosing(chunks):
        try:
            async for chunk in chunks:
                yield chunk
        except ApiError as exc:
            yield ndjson({"error": exc.message})


_NOTHING: tuple[bytes, ...] = ()


async def _empty() -> AsyncGenerator[bytes, None]:
    for chunk in _NOTHING:
        yield chunk


async def _cut() -> AsyncGenerator[bytes, None]:
    for chunk in _NOTHING:
        yield chunk
    raise TruncateStream


async def collect(
    objects: AsyncGenerator[dict[str, Any], None],
    fault: Fault | None,
    plan: FaultPlan,
    is_final: Callable[[dict[str, Any]], bool],
) -> tuple[list[dict[str, Any]], bool]:
    """Consume a whole answer for ``stream: false``; (items, complete).

    Stream-level faults act where they would in a stream (after K items, or before the
    last one): ``error_line`` becomes a status (the non-streaming handlers turn any error
    into one), ``drop`` resets the connection, ``close_without_done`` returns what was
    produced so far (``complete`` is False), stalls delay the answer.
    """
    items: list[dict[str, Any]] = []
    active = fault is not None and fault.kind in STREAM_FAULTS
    async with aclosing(objects):
        if fault is not None and fault.kind == "slow_first_token":
            await plan.stall(fault.seconds)
            active = False
        async for item in objects:
            if (
                fault is not None
                and active
                and (len(items) >= fault.after_chunks or is_final(item))
            ):
                active = False
                if fault.kind == "error_line":
                    raise ApiError(fault.status or 500, fault.message or RUNNER_STOPPED)
                if fault.kind == "drop":
                    raise AbortConnection
                if fault.kind == "close_without_done":
                    return items, False
                if fault.kind == "stall_after":
                    await plan.stall(fault.seconds)
            items.append(item)
    return items, True


def corrupt_body(response: Response, fault: Fault | None) -> Response:
    """``malformed_line`` / ``blank_line`` on a one-object answer: a cut or an empty body."""
    if fault is None:
        return response
    if fault.kind == "malformed_line":
        response.body = response.body[: max(len(response.body) // 2, 1)]
    elif fault.kind == "blank_line":
        response.body = b""
    return response


async def sleep_fault(fault: Fault | None, plan: FaultPlan) -> None:
    """Stall a one-object answer for ``stall_after`` / ``slow_first_token``."""
    if fault is not None and fault.kind in ("stall_after", "slow_first_token"):
        await plan.stall(fault.seconds)
