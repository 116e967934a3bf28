"""Writing answers: whole or streamed, cancelled when the client goes away.

`Answer` is the response of every model route. It runs the call and, at the same time,
watches the connection: when the client disconnects, the call is cancelled, which makes
the router cancel its reader tasks and close the upstream request (a daemon then frees
its slot; the hosted API stops generating). Without the watch, a non-streaming call
would run to its end for nobody, and a stalled stream would notice only at its next write.

A stream's status line and headers go out with the first chunk, as Ollama itself does:
until then the call may still fail over (the client sees nothing of it) or fail with a
proper status; from then on the serving route is known and goes in the headers. A failure
after the first chunk ends the stream with one error event in the dialect's framing —
never a short answer that looks complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .connection import DISCONNECT_NOTICE, Unregister
from .errors import ApiError, Dialect, from_exception, render
from .info import final_headers, served_headers
from .observe import ServeMetrics, stats_of

__all__ = ["Answer", "Encoder", "Exchange", "disconnect_notice", "run_until_disconnect"]

DisconnectNotice = Callable[[Callable[[], None]], Unregister]

SHUTDOWN_MESSAGE = (
    "dsollama serve is shutting down and its grace period ended before this answer did; "
    "the answer is incomplete: ask again"
)


class Encoder(Protocol):
    """Turns responses into the bytes of one wire format."""

    stream_media_type: str

    def whole(self, response: Any) -> bytes:
        """A whole (non-streamed) answer."""
        ...

    def part(self, part: Any) -> bytes:
        """One streamed part that is not the last."""
        ...

    def last(self, part: Any) -> bytes:
        """The final streamed part (``done``), with whatever closes the stream."""
        ...

    def failure(self, error: ApiError) -> bytes:
        """The event that ends a stream which broke after its first chunk."""
        ...


class Exchange:
    """The sending half of one HTTP exchange, and whether the client is still there."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.finished = False
        self.gone = False
        "Set when the client disconnected: nothing more can reach it."

    async def start(self, status: int, headers: dict[str, str]) -> None:
        self.started = True
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def body(self, data: bytes, *, more: bool = True) -> None:
        if not data and more:
            return  # an empty part (no new text) is not worth a write
        if not more:
            self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def end(self) -> None:
        if not self.finished:
            await self.body(b"", more=False)

    async def error(self, error: ApiError, dialect: Dialect, extra: dict[str, str]) -> None:
        status, headers, body = render(error, dialect)
        await self.start(status, {**extra, **headers})
        await self.body(body, more=False)


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def run_until_disconnect(
    receive: Receive,
    work: Coroutine[Any, Any, None],
    exchange: Exchange,
    notice: DisconnectNotice | None = None,
) -> bool:
    """Run ``work`` while watching the client; cancel it if the client disconnects.

    Call once the request body has been read (the watch consumes ``receive``). Returns
    False when the client went away (``exchange.gone`` is then set). If this task itself
    is cancelled (the server's shutdown grace ended), ``work`` is cancelled too and the
    cancellation propagates. ``notice``: the server's disconnect notice (`connection`),
    which spares the task that would otherwise wait on ``receive``.
    """
    if notice is None:
        return await _watching_receive(receive, work, exchange)
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    finished = loop.create_future()

    def done(_: object) -> None:
        if not finished.done():
            finished.set_result(None)

    def gone() -> None:
        exchange.gone = True
        task.cancel()

    task.add_done_callback(done)
    unregister = notice(gone)
    try:
        await finished
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    finally:
        unregister()
    if exchange.gone and task.cancelled():
        return False
    task.result()  # re-raise what the work raised
    return True


async def _watching_receive(
    receive: Receive, work: Coroutine[Any, Any, None], exchange: Exchange
) -> bool:
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        watch.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    if task in done:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        task.result()  # re-raise what the work raised
        return True
    exchange.gone = True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return False


def disconnect_notice(scope: Scope) -> DisconnectNotice | None:
    """The server's disconnect notice for this request, when it offers one."""
    extensions = scope.get("extensions")
    return extensions.get(DISCONNECT_NOTICE) if extensions else None


class Answer(Response):
    """A model route's response: runs the call, writes it whole or streamed.

    ``call`` returns the whole response object (non-streaming) or an async iterator of
    parts (streaming); either may raise a dsollama error, which becomes a status in the
    request's dialect when nothing has been sent yet.
    """

    def __init__(
        self,
        call: Callable[[], Awaitable[Any]],
        *,
        stream: bool,
        encoder: Encoder,
        dialect: Dialect,
        metrics: ServeMetrics | None = None,
        headers: dict[str, str] | None = None,
        whole_media_type: str = "application/json; charset=utf-8",
    ) -> None:
        # Not Response.__init__: its body and headers are never used, only __call__.
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = []
        self._call = call
        self._stream = stream
        self._encoder = encoder
        self._dialect = dialect
        self._metrics = metrics
        self._extra_headers = dict(headers or {})
        self._whole_media_type = whole_media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = Exchange(send)
        work = self._streamed(exchange, scope) if self._stream else self._whole(exchange)
        try:
            completed = await run_until_disconnect(
                receive, work, exchange, disconnect_notice(scope)
            )
        except asyncio.CancelledError:
            self._mark(scope, "shutdown")
            raise
        if not completed:
            self._mark(scope, "disconnected")

    @staticmethod
    def _mark(scope: Scope, outcome: str) -> None:
        stats = stats_of(scope)
        if stats is not None:
            stats.outcome = outcome

    async def _fail(self, exchange: Exchange, exc: BaseException) -> None:
        await exchange.error(from_exception(exc), self._dialect, self._extra_headers)

    async def _whole(self, exchange: Exchange) -> None:
        try:
            try:
                response = await self._call()
            except Exception as exc:
                await self._fail(exchange, exc)
                return
            body = self._encoder.whole(response)
            headers = {
                **self._extra_headers,
                **final_headers(response),
                "content-type": self._whole_media_type,
                "content-length": str(len(body)),
            }
            await exchange.start(200, headers)
            await exchange.body(body, more=False)
        except asyncio.CancelledError:
            await self._cut_short(exchange)
            raise

    async def _streamed(self, exchange: Exchange, scope: Scope) -> None:
        iterator: AsyncIterator[Any] | None = None
        try:
            try:
                iterator = await self._call()
                part = await anext(iterator)
            except Exception as exc:
                await self._fail(exchange, exc)
                return
            headers = {
                **self._extra_headers,
                **served_headers(getattr(part, "served_by", None)),
                "content-type": self._encoder.stream_media_type,
                "cache-control": "no-cache",
                # A reverse proxy (nginx) must not hold chunks back.
                "x-accel-buffering": "no",
            }
            await exchange.start(200, headers)
            self._first_chunk(scope, part)
            while True:
                if getattr(part, "done", False):
                    await exchange.body(self._encoder.last(part))
                    # Run the iterator to its end: closing it after its final part would
                    # record the call as cancelled in the request log.
                    async for _ in iterator:  # pragma: no cover - nothing follows done
                        pass
                    break
                await exchange.body(self._encoder.part(part))
                try:
                    part = await anext(iterator)
                    continue
                except StopAsyncIteration:  # pragma: no cover - the router ends with done
                    failure = ApiError(502, "the answer ended without its final chunk")
                except Exception as exc:
                    failure = from_exception(exc)
                self._mark(scope, "interrupted")
                await exchange.body(self._encoder.failure(failure))
                break
            await exchange.end()
        except asyncio.CancelledError:
            await self._cut_short(exchange)
            raise
        finally:
            if iterator is not None:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    def _first_chunk(self, scope: Scope, part: Any) -> None:
        stats = stats_of(scope)
        if self._metrics is None or stats is None:
            return
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        served = getattr(getattr(part, "served_by", None), "kind", None) or "none"
        self._metrics.first_chunk.observe(
            time.perf_counter() - stats.started, route=route, served=served
        )

    async def _cut_short(self, exchange: Exchange) -> None:
        """Cancelled while the client still listens (server shutdown): say so, don't just stop."""
        if exchange.gone or exchange.finished:
            return
        error = ApiError(503, SHUTDOWN_MESSAGE, code="shutting_down")
        with contextlib.suppress(Exception):
            if not exchange.started:
                await exchange.error(error, self._dialect, self._extra_headers)
            else:
                await exchange.body(self._encoder.failure(error), more=False)
