"""`FakeLlamaServer`: a double of llama.cpp's ``llama-server``.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``POST
/v1/completions``, ``GET /v1/models`` (and ``/models``), ``GET /health`` (and
``/v1/health``), ``GET /props``, ``GET /slots``, ``GET /metrics``.

A fixed number of slots (``parallel``, ``-np``): a request that finds none free is
deferred and runs when one frees up, oldest first. Deferred requests get nothing at all
— not even the status line — until they have a slot and their first token, because
llama-server waits for a task's first result before it answers (so an error found in the
slot, such as a prompt over the context, is still a real status). ``/slots`` shows each
slot (``is_processing``, ``id_task``, ``n_ctx``); ``/metrics``, only with ``metrics=True``
as with ``--metrics``, shows ``llamacpp:requests_processing`` and
``llamacpp:requests_deferred``.

Errors are ``{"error": {"code", "message", "type"}}``; a prompt that does not fit in a
slot's context is the 400 ``exceed_context_size_error`` with ``n_prompt_tokens`` and
``n_ctx``. While the model is loading (``loading=True``, or the first ``load_seconds``
after start) every route answers 503 ``Loading model``.

Reasoning goes to ``reasoning_content`` (``reasoning_format="deepseek"``, the default of
recent builds) or stays inline in ``<think>`` tags (``"none"``). A final assistant message
is continued (assistant prefill), which is how a cut answer is resumed here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from . import _llamacpp_wire as wire_shapes
from ._deepseek_answer import Plan
from ._deepseek_request import ChatRequest, FimRequest
from ._openai_request import ServerError
from ._openai_stream import Wire
from ._prometheus import CONTENT_TYPE
from ._server import Request, Response
from ._settings import as_bool, as_count, as_positive, as_seconds, as_str
from .openai_server import OpenAIServerDouble, Rendered, RouteHandler, Ticket

__all__ = ["DEFAULT_ALIAS", "FakeLlamaServer"]

DEFAULT_ALIAS = "DeepSeek-R1-Distill-Qwen-7B-Q4_K_M"
_PUBLIC = frozenset({"/health", "/v1/health", "/models", "/v1/models"})
"Endpoints llama-server serves without the API key."


def _optional_key(value: Any) -> str | None:
    return None if value is None else as_str(value)


def _reasoning_format(value: Any) -> str:
    if value not in ("deepseek", "none", "auto"):
        raise ValueError('expected "deepseek", "auto" or "none"')
    return str(value)


_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "model_alias": as_str,
    "model_path": as_str,
    "api_key": _optional_key,
    "parallel": as_positive,
    "ctx_size": as_positive,
    "kv_unified": as_bool,
    "n_ctx_train": as_positive,
    "metrics": as_bool,
    "slots_endpoint": as_bool,
    "reasoning_format": _reasoning_format,
    "loading": as_bool,
    "prompt_seconds": as_seconds,
    "token_seconds": as_seconds,
    "answer_tokens": as_count,
    "thinking_tokens": as_count,
    "build_info": as_str,
}


class FakeLlamaServer(OpenAIServerDouble):
    """The llama-server double (see the module docstring). Start it
    (``with FakeLlamaServer() as fake:``) and point an OpenAI client at ``fake.base_url``.

    Every keyword is also an attribute and a setting (`configure`, ``POST
    /_dsollama/config``) that may change while it runs. A slot's context ``n_ctx`` is
    ``ctx_size / parallel``, or all of ``ctx_size`` with ``kv_unified=True``.
    ``prompt_seconds`` is the time from taking a slot to the first token,
    ``token_seconds`` the time per token after it (0: as fast as possible).
    """

    _settings = _SETTINGS
    prefill = "last_assistant"
    stream_headers_at_once = False
    context_checked_in_slot = True
    generation_routes: ClassVar[Mapping[str, str]] = {
        "/v1/chat/completions": "chat",
        "/chat/completions": "chat",
        "/v1/completions": "completion",
    }

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_alias: str = DEFAULT_ALIAS,
        model_path: str = f"models/{DEFAULT_ALIAS}.gguf",
        api_key: str | None = None,
        parallel: int = 1,
        ctx_size: int = 4096,
        kv_unified: bool = False,
        n_ctx_train: int = 131072,
        metrics: bool = False,
        slots_endpoint: bool = True,
        reasoning_format: str = "deepseek",
        loading: bool = False,
        load_seconds: float = 0.0,
        prompt_seconds: float = 0.0,
        token_seconds: float = 0.001,
        answer_tokens: int = 12,
        thinking_tokens: int = 8,
        build_info: str = "b6700-3df2244d",
    ) -> None:
        self.model_alias = ""
        self.model_path = ""
        self.api_key: str | None = None
        self.parallel = 1
        self.ctx_size = 1
        self.kv_unified = False
        self.n_ctx_train = 1
        self.metrics = False
        self.slots_endpoint = True
        self.reasoning_format = "deepseek"
        self.loading = False
        self.prompt_seconds = 0.0
        self.token_seconds = 0.0
        self.answer_tokens = 0
        self.thinking_tokens = 0
        self.build_info = ""
        self.load_seconds = as_seconds(load_seconds)
        "How long the model loads after `start` (a constructor option: it happens once)."
        self._loaded = threading.Event()
        self._slot_states: dict[int, wire_shapes.SlotState] = {}
        self.configure(
            model_alias=model_alias,
            model_path=model_path,
            api_key=api_key,
            parallel=parallel,
            ctx_size=ctx_size,
            kv_unified=kv_unified,
            n_ctx_train=n_ctx_train,
            metrics=metrics,
            slots_endpoint=slots_endpoint,
            reasoning_format=reasoning_format,
            loading=loading,
            prompt_seconds=prompt_seconds,
            token_seconds=token_seconds,
            answer_tokens=answer_tokens,
            thinking_tokens=thinking_tokens,
            build_info=build_info,
        )
        super().__init__(host=host, port=port)
        self._created = int(time.time())
        self._last_read = wire_shapes.Counts()

    @property
    def base_url(self) -> str:
        """``url + "/v1"``: what an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"

    @property
    def n_ctx(self) -> int:
        """One slot's context, in tokens."""
        return self.ctx_size if self.kv_unified else self.ctx_size // self.parallel

    # -- loading ------------------------------------------------------------------------------

    def start(self) -> FakeLlamaServer:
        """Listen; with ``load_seconds`` the model is "loading" (503) for that long first."""
        if self._server.running:
            return self
        if self.load_seconds > 0:
            self.configure(loading=True)
        super().start()
        if self.load_seconds > 0:
            loop = self._server.loop
            loop.call_soon_threadsafe(
                loop.call_later, self.load_seconds, lambda: self.configure(loading=False)
            )
        return self

    def wait_until_loaded(self, timeout: float = 5.0) -> bool:
        """Block until the model is loaded (``loading`` false); False on timeout."""
        return self._loaded.wait(timeout)

    # -- settings -------------------------------------------------------------------------------

    def _check_together(self, settings: Mapping[str, Any]) -> None:
        size, parallel = settings.get("ctx_size", 1), settings.get("parallel", 1)
        if not settings.get("kv_unified") and size < parallel:
            raise ValueError(
                f"ctx_size ({size}) leaves no context for each of {parallel} slots; raise "
                "ctx_size, lower parallel, or set kv_unified"
            )

    def _after_configure(self, changed: set[str]) -> None:
        super()._after_configure(changed)
        if self.loading:
            self._loaded.clear()
        else:
            self._loaded.set()

    def _slot_count(self) -> int:
        return self.parallel

    def _token_capacity(self) -> float:
        return float("inf")  # each slot has its own context; slots are the only limit

    # -- the server's shapes ----------------------------------------------------------------

    def _wire(self) -> Wire:
        return wire_shapes.wire()

    def _error(self, error: ServerError) -> Response:
        return wire_shapes.error_response(error)

    def _not_found(self, request: Request) -> Response:
        return self._error(ServerError(404, "File Not Found"))

    def _method_not_allowed(self, request: Request) -> Response:
        # The HTTP library routes by method and path: a wrong method is an unknown route.
        return self._not_found(request)

    def _gate(self, request: Request) -> Response | None:
        # Server state first, then the key, as llama-server's pre-routing handler does.
        if self.loading:
            return self._error(ServerError(503, wire_shapes.LOADING))
        if self.api_key is None or request.path in _PUBLIC:
            return None
        given = request.headers.get("authorization", "")
        if given == f"Bearer {self.api_key}" or request.headers.get("x-api-key") == self.api_key:
            return None
        return self._error(ServerError(401, "Invalid API Key"))

    def _routes(self) -> Mapping[str, Mapping[str, RouteHandler]]:
        return {
            "/health": {"GET": self._health},
            "/v1/health": {"GET": self._health},
            "/models": {"GET": self._models},
            "/v1/models": {"GET": self._models},
            "/props": {"GET": self._props},
            "/slots": {"GET": self._slots},
            "/metrics": {"GET": self._metrics},
        }

    async def _health(self, request: Request) -> Response:
        return wire_shapes.json_response({"status": "ok"})

    async def _models(self, request: Request) -> Response:
        return wire_shapes.json_response(
            wire_shapes.models_body(self.model_alias, self.n_ctx_train, self._created)
        )

    async def _props(self, request: Request) -> Response:
        return wire_shapes.json_response(
            wire_shapes.props_body(
                total_slots=self.parallel,
                n_ctx=self.n_ctx,
                model_alias=self.model_alias,
                model_path=self.model_path,
                build_info=self.build_info,
                reasoning_format=self.reasoning_format,
            )
        )

    def slot_states(self) -> list[wire_shapes.SlotState]:
        """Every slot as ``/slots`` shows it."""
        states = self._slot_states
        return [states.get(i) or wire_shapes.SlotState(i) for i in range(self.parallel)]

    async def _slots(self, request: Request) -> Response:
        if not self.slots_endpoint:
            return self._error(ServerError(501, wire_shapes.SLOTS_OFF))
        slots = self.slot_states()
        if request.query.get("fail_on_no_slot") and all(s.is_processing for s in slots):
            return self._error(ServerError(503, "no slot available"))
        return wire_shapes.json_response(
            wire_shapes.slots_body(slots, self.n_ctx, self.reasoning_format)
        )

    async def _metrics(self, request: Request) -> Response:
        if not self.metrics:
            return self._error(ServerError(501, wire_shapes.METRICS_OFF))
        now = wire_shapes.Counts.of(self._stats)
        last, self._last_read = self._last_read, now
        since = wire_shapes.Counts(
            now.prompt_tokens - last.prompt_tokens,
            now.prompt_seconds - last.prompt_seconds,
            now.generation_tokens - last.generation_tokens,
            now.generation_seconds - last.generation_seconds,
        )
        text = wire_shapes.metrics_text(
            now,
            since,
            processing=self._pool.running,
            deferred=self._pool.waiting,
            kv_cache_tokens=sum(s.n_past for s in self._slot_states.values()),
            kv_cache_size=self.ctx_size,
        )
        return Response(body=text.encode(), content_type=CONTENT_TYPE)

    # -- generation -------------------------------------------------------------------------

    def _response_model(self, requested: str) -> str:
        # llama-server serves its one model whatever the request names, and echoes the name.
        return requested or wire_shapes.DEFAULT_OAICOMPAT_MODEL

    def _answer_limit(self, prompt: int, asked: int | None) -> int | None:
        room = max(self.n_ctx - prompt, 1)  # generation stops when the slot's context is full
        return room if asked is None else min(asked, room)

    def _check_in_slot(self, prompt: int) -> None:
        if prompt >= self.n_ctx:
            raise ServerError(
                400,
                wire_shapes.EXCEED_CONTEXT,
                type="exceed_context_size_error",
                extra={"n_prompt_tokens": prompt, "n_ctx": self.n_ctx},
            )

    def _slot_taken(self, ticket: Ticket) -> None:
        assert ticket.slot is not None
        self._slot_states[ticket.slot] = wire_shapes.SlotState(
            ticket.slot, id_task=ticket.task, is_processing=True, n_past=ticket.prompt_tokens
        )

    def _slot_freed(self, ticket: Ticket) -> None:
        assert ticket.slot is not None
        generated = ticket.completion_tokens if ticket.first_token is not None else 0
        self._slot_states[ticket.slot] = wire_shapes.SlotState(
            ticket.slot,
            n_past=min(ticket.prompt_tokens + generated, self.n_ctx),
            n_decoded=generated,
        )

    def _render(
        self, route: str, model: str, plan: Plan, request: ChatRequest | FimRequest, prompt: int
    ) -> Rendered:
        timings = wire_shapes.Timings(
            prompt,
            self.prompt_seconds * 1e3,
            plan.completion_tokens,
            plan.completion_tokens * self.token_seconds * 1e3,
        )
        renderer = wire_shapes.LlamaRenderer(
            model,
            plan,
            prompt,
            inline=self.reasoning_format == "none",
            chat=route == "chat",
            fingerprint=self.build_info,
            timings=timings,
        )
        return Rendered(renderer.body, lambda: renderer.events(request.include_usage))
