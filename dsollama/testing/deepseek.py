"""A test double of the hosted DeepSeek API (OpenAI format), faithful at the byte level.

``FakeDeepSeek`` serves what the real service serves (the project's DeepSeek reference,
"Test-relevant facts"): chat completions at the root, ``/v1`` and ``/beta`` (prefix
completion only on ``/beta``), FIM on ``/beta/completions``, ``/models``,
``/user/balance``; bearer auth with DeepSeek's messages; thinking mode on by default
(``reasoning_content`` first, then ``content``); tool calls; JSON mode; usage with cache
and reasoning counts; every ``finish_reason``. And it misbehaves the way the real one does
when busy: 200 at once and then blank lines or ``: keep-alive`` comments for as long as it
is told, stalls mid-reasoning, streams cut without ``[DONE]``, 429 above a concurrency cap.

Faults come from the shared vocabulary (`dsollama.testing._faults`): a request to a
serving route takes the first matching fault. How each kind looks here:

- ``refuse``, ``reset``, ``status``, ``stall_before``: before anything else, auth included.
- ``keepalive`` / ``keepalive_then_close``: 200 and headers at once, then ``\\n`` lines
  (non-streaming, ``application/json``) or ``: keep-alive`` comments (streaming) every
  ``interval`` (default ``keepalive_interval``) for ``seconds`` — 0 means until
  `release()` — then the answer, or (``_then_close``) the end of the body with no data.
- ``slow_first_token``: headers at once, the first data ``seconds`` later.
- mid-stream kinds (``stall_after``, ``drop``, ``close_without_done``, ``error_line``,
  ``malformed_line``, ``blank_line``) act after ``after_chunks`` SSE events, counting
  the opening role chunk (so 3 in thinking mode is the middle of ``reasoning_content``).
  Non-streaming, they shape the JSON body: headers, then (``after_chunks`` > 0) half of
  it; ``blank_line`` is the whitespace-only body seen in 2025.
- ``finish_reason``: the answer stops after ``after_chunks`` events with that reason
  (default ``insufficient_system_resource``), partial text and usage included.
- ``json_body``: a streaming request gets the whole completion as one
  ``application/json`` body, as from a server or proxy that ignored ``stream: true``
  (no change for a non-streaming request).
- ``wrong_type``: the event after ``after_chunks`` events (at most the finish chunk) has
  its text fields as the number 42 instead of strings, and the stream goes on to
  ``[DONE]``; non-streaming, the message's text fields are numbers.
- ``html_body``: before anything else, a 200 ``text/html`` page (a 502 from nginx) where
  the answer should be, as a proxy or captive portal answers.

``in_flight()`` counts chat and FIM requests from arrival to the end of their answer (held
ones included), which is also what the concurrency cap counts, and what a test waits on
(`wait_for_in_flight`) instead of sleeping.
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ._control import handle_control, is_control_path, refuse_from_loop
from ._deepseek_answer import Plan, Renderer, plan_chat, plan_fim
from ._deepseek_request import (
    ApiError,
    auth_error,
    concurrency_message,
    error_response,
    parse_chat,
    parse_fim,
)
from ._deepseek_stream import (
    Hold,
    Pacing,
    Slot,
    html_response,
    json_response,
    sse_response,
    trace_headers,
)
from ._double import Double
from ._faults import Fault
from ._server import AbortConnection, Request, Response, StreamResponse
from ._settings import (
    Configurable,
    as_bool,
    as_count,
    as_interval,
    as_limit,
    as_seconds,
    as_strings,
)

__all__ = ["FakeDeepSeek", "main"]

# path -> (route, is the beta base)
_ROUTES: dict[str, tuple[str, bool]] = {
    "/chat/completions": ("chat", False),
    "/v1/chat/completions": ("chat", False),
    "/beta/chat/completions": ("chat", True),
    "/beta/completions": ("fim", True),
    "/models": ("models", False),
    "/v1/models": ("models", False),
    "/beta/models": ("models", True),
    "/user/balance": ("balance", False),
}
_METHODS = {"chat": "POST", "fim": "POST", "models": "GET", "balance": "GET"}
_CONNECTION_FAULTS = frozenset({"refuse", "reset", "status", "stall_before", "html_body"})


# Settings changeable at run time (attributes, `configure()`, POST /_dsollama/config).
def _keys(value: Any) -> tuple[str, ...]:
    keys = as_strings(value)
    if not keys:
        raise ValueError("at least one API key is needed")
    return keys


_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "api_keys": _keys,
    "models": as_strings,
    "retired": as_strings,
    "balance_available": as_bool,
    "concurrency_limit": as_limit,
    "tokens_per_second": as_seconds,
    "first_token_seconds": as_seconds,
    "answer_tokens": as_count,
    "thinking_tokens": as_count,
    "keepalive_interval": as_interval,
    "usage_on_separate_chunk": as_bool,
    "cache_hit_tokens": as_count,
    "json_empty_content": as_count,
}


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class FakeDeepSeek(Configurable, Double):
    """The DeepSeek API double. Start it (``with FakeDeepSeek() as fake:``), point an
    OpenAI-format client at ``fake.url`` (``fake.beta_url`` for beta features) with
    ``api_key=fake.api_key``.

    Every keyword is also an attribute that can be changed while it runs (or through
    `configure` / ``POST /_dsollama/config``). ``tokens_per_second <= 0`` means no pacing.
    ``json_empty_content=N``: the next N JSON-mode answers come back with empty content
    (§5.3 of the reference).
    """

    _settings = _SETTINGS

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Iterable[str] = ("sk-test",),
        models: Iterable[str] = ("deepseek-flash", "deepseek-v4-pro", "deepseek-v4-flash"),
        retired: Iterable[str] = ("deepseek-chat", "deepseek-reasoner"),
        balance_available: bool = True,
        concurrency_limit: int | None = None,
        tokens_per_second: float = 1000.0,
        first_token_seconds: float = 0.0,
        answer_tokens: int = 12,
        thinking_tokens: int = 8,
        keepalive_interval: float = 0.05,
        usage_on_separate_chunk: bool = False,
        cache_hit_tokens: int = 0,
        json_empty_content: int = 0,
    ) -> None:
        self.api_keys: tuple[str, ...] = ()
        self.models: tuple[str, ...] = ()
        self.retired: tuple[str, ...] = ()
        self.balance_available = True
        self.concurrency_limit: int | None = None
        self.tokens_per_second = 0.0
        self.first_token_seconds = 0.0
        self.answer_tokens = 0
        self.thinking_tokens = 0
        self.keepalive_interval = 0.05
        self.usage_on_separate_chunk = False
        self.cache_hit_tokens = 0
        self.json_empty_content = 0
        self.configure(
            api_keys=api_keys,
            models=models,
            retired=retired,
            balance_available=balance_available,
            concurrency_limit=concurrency_limit,
            tokens_per_second=tokens_per_second,
            first_token_seconds=first_token_seconds,
            answer_tokens=answer_tokens,
            thinking_tokens=thinking_tokens,
            keepalive_interval=keepalive_interval,
            usage_on_separate_chunk=usage_on_separate_chunk,
            cache_hit_tokens=cache_hit_tokens,
            json_empty_content=json_empty_content,
        )
        Double.__init__(self, self._handle, host=host, port=port)
        self._in_flight = 0
        self._in_flight_changed = threading.Condition()
        # Shaped like the captured ones (§2.3); fixed for the life of the double.
        self.system_fingerprint = f"fp_{secrets.token_hex(5)}_prod0820_fp8_kvcache"

    # -- settings -------------------------------------------------------------------------

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def beta_url(self) -> str:
        """The ``/beta`` base: prefix completion and FIM live there."""
        return self._server.url + "/beta"

    @property
    def api_key(self) -> str:
        """The first accepted key."""
        return self.api_keys[0]

    def in_flight(self) -> int:
        """Chat and FIM requests between arrival and the end of their answer."""
        return self._in_flight

    def wait_for_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        """Block until exactly ``count`` requests are in flight; False on timeout."""
        with self._in_flight_changed:
            return self._in_flight_changed.wait_for(lambda: self._in_flight == count, timeout)

    def _change_in_flight(self, delta: int) -> None:
        with self._in_flight_changed:
            self._in_flight += delta
            self._in_flight_changed.notify_all()

    # -- request handling -----------------------------------------------------------------

    async def _handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        if is_control_path(path):
            return await handle_control(request, self, self._server)
        route, beta = _ROUTES.get(path, ("", False))
        if not route:
            # Assumption: unknown paths get a 404 in the usual envelope.
            return error_response(404, "Not Found")
        if request.method != _METHODS[route]:
            return error_response(405, "Method Not Allowed")  # assumption, as above
        generation = route in ("chat", "fim")
        fault = self._faults.take(path, body=request.body)
        hold = await Hold.make(self._faults, fault)
        if generation:
            self._change_in_flight(1)
        handed_off = False

        def done() -> None:
            if generation:
                self._change_in_flight(-1)
            if hold is not None:
                hold.cancel()

        try:
            if fault is not None and fault.kind in _CONNECTION_FAULTS:
                early = await self._connection_fault(fault, hold)
                if early is not None:
                    return early
                fault = None
            denied = auth_error(request.headers.get("authorization"), self.api_keys)
            if denied is not None:
                return denied.response()
            if route == "models":
                return Response.json(self._models_body(), headers=trace_headers())
            if route == "balance":
                return Response.json(self._balance_body(), headers=trace_headers())
            if route == "chat":
                result = await self._chat(request, fault, hold, beta)
            else:
                result = await self._fim(request, fault, hold)
            if isinstance(result, StreamResponse):
                result.chunks = Slot(result.chunks, done)
                handed_off = True
            return result
        except ApiError as exc:
            return exc.response()
        finally:
            if not handed_off:
                done()

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "deepseek"}
                for name in self.models
                if name not in self.retired
            ],
        }

    def _balance_body(self) -> dict[str, Any]:
        # Amounts are strings (§1.5); an exhausted account shows zeros and is_available false.
        on = self.balance_available
        return {
            "is_available": on,
            "balance_infos": [
                {
                    "currency": "USD",
                    "total_balance": "110.00" if on else "0.00",
                    "granted_balance": "10.00" if on else "0.00",
                    "topped_up_balance": "100.00" if on else "0.00",
                }
            ],
        }

    async def _connection_fault(self, fault: Fault, hold: Hold | None) -> Response | None:
        if fault.kind == "refuse":
            await refuse_from_loop(self._server, fault.seconds, keep_current=False)
            raise AbortConnection
        if fault.kind == "reset":
            raise AbortConnection
        if fault.kind == "html_body":
            return html_response()
        if fault.kind == "status":
            status = fault.status or 500
            message = fault.message
            if status == 429 and message is None:
                # Without a configured cap, the numbers of the captured message (§3.2).
                limit = self.concurrency_limit if self.concurrency_limit is not None else 39
                message = concurrency_message(limit + 1, limit)
            return ApiError(status, message).response()
        assert hold is not None  # stall_before
        await hold.wait()
        return None

    def _admit(self) -> None:
        if not self.balance_available:
            raise ApiError(402)
        limit = self.concurrency_limit
        if limit is not None and self._in_flight > limit:
            # The count includes this request: "your current concurrency is N" (§3.2).
            raise ApiError(429, concurrency_message(self._in_flight, limit))

    def _take_json_empty(self) -> bool:
        if self.json_empty_content > 0:
            self.json_empty_content -= 1
            return True
        return False

    async def _chat(
        self, request: Request, fault: Fault | None, hold: Hold | None, beta: bool
    ) -> Response | StreamResponse:
        req = parse_chat(request.body, beta=beta, models=self.models, retired=self.retired)
        self._admit()
        plan = plan_chat(
            req,
            answer_n=self.answer_tokens,
            thinking_n=self.thinking_tokens,
            json_empty=req.json_mode and self._take_json_empty(),
        )
        plan, fault = self._interrupt(plan, fault)
        renderer = Renderer(req.model, self.system_fingerprint, self.cache_hit_tokens)
        stream, fault = self._framing(req.stream, fault)
        if stream:
            events = renderer.chat_events(
                plan,
                include_usage=req.include_usage,
                separate_usage=self.usage_on_separate_chunk,
            )
            return sse_response(events, fault, hold, self._pacing())
        body = _dumps(renderer.chat_body(plan))
        return await json_response(body, plan.completion_tokens, fault, hold, self._pacing())

    async def _fim(
        self, request: Request, fault: Fault | None, hold: Hold | None
    ) -> Response | StreamResponse:
        req = parse_fim(request.body, models=self.models, retired=self.retired)
        self._admit()
        plan = plan_fim(req, answer_n=self.answer_tokens)
        plan, fault = self._interrupt(plan, fault)
        renderer = Renderer(req.model, self.system_fingerprint, self.cache_hit_tokens)
        stream, fault = self._framing(req.stream, fault)
        if stream:
            events = renderer.fim_events(
                plan,
                include_usage=req.include_usage,
                separate_usage=self.usage_on_separate_chunk,
            )
            return sse_response(events, fault, hold, self._pacing())
        body = _dumps(renderer.fim_body(plan))
        return await json_response(body, plan.completion_tokens, fault, hold, self._pacing())

    @staticmethod
    def _interrupt(plan: Plan, fault: Fault | None) -> tuple[Plan, Fault | None]:
        if fault is not None and fault.kind == "finish_reason":
            reason = fault.finish_reason or "insufficient_system_resource"
            return plan.interrupted(fault.after_chunks, reason), None
        return plan, fault

    @staticmethod
    def _framing(stream: bool, fault: Fault | None) -> tuple[bool, Fault | None]:
        """Whether the answer goes out as events; json_body makes it one JSON body."""
        if fault is not None and fault.kind == "json_body":
            return False, None
        return stream, fault

    def _pacing(self) -> Pacing:
        return Pacing(self.tokens_per_second, self.first_token_seconds, self.keepalive_interval)


# -- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m dsollama.testing deepseek``: serve a FakeDeepSeek until SIGINT/SIGTERM.

    Prints the base URL on stdout (one line) once it listens.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "deepseek":
        args = args[1:]
    parser = argparse.ArgumentParser(
        prog="python -m dsollama.testing deepseek",
        description="Serve a test double of the DeepSeek API (OpenAI format) on loopback. "
        "Steer it over HTTP with the /_dsollama/* control routes.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accepted key (repeatable)"
    )
    parser.add_argument("--model", action="append", dest="models", help="served model (repeatable)")
    parser.add_argument("--tokens-per-second", type=float, default=1000.0, help="0: no pacing")
    parser.add_argument("--first-token-seconds", type=float, default=0.0)
    parser.add_argument("--answer-tokens", type=int, default=12)
    parser.add_argument("--thinking-tokens", type=int, default=8)
    parser.add_argument("--keepalive-interval", type=float, default=0.05)
    parser.add_argument("--concurrency-limit", type=int, default=None)
    parser.add_argument("--cache-hit-tokens", type=int, default=0)
    parser.add_argument("--no-balance", action="store_true", help="answer 402 Insufficient Balance")
    parser.add_argument(
        "--usage-on-separate-chunk",
        action="store_true",
        help="the documented usage-only chunk instead of usage on the finish chunk",
    )
    ns = parser.parse_args(args)
    options: dict[str, Any] = {}
    if ns.api_keys:
        options["api_keys"] = ns.api_keys
    if ns.models:
        options["models"] = ns.models
    try:
        fake = FakeDeepSeek(
            host=ns.host,
            port=ns.port,
            balance_available=not ns.no_balance,
            concurrency_limit=ns.concurrency_limit,
            tokens_per_second=ns.tokens_per_second,
            first_token_seconds=ns.first_token_seconds,
            answer_tokens=ns.answer_tokens,
            thinking_tokens=ns.thinking_tokens,
            keepalive_interval=ns.keepalive_interval,
            usage_on_separate_chunk=ns.usage_on_separate_chunk,
            cache_hit_tokens=ns.cache_hit_tokens,
            **options,
        )
        fake.start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the DeepSeek double: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(fake.url, flush=True)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
