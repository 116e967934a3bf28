"""`FakeVLLM`: a double of vLLM's OpenAI-compatible server (``vllm serve MODEL``).

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``,
``GET /health``, ``GET /metrics``, ``GET /version``.

Continuous batching: up to ``max_num_seqs`` requests generate at once (and, when
``kv_cache_tokens`` is set, only as many as their prompts and answers fit in the KV
cache); the rest wait in arrival order. ``/metrics`` shows both
(``vllm:num_requests_running`` / ``vllm:num_requests_waiting``). A stream's status line
goes out on arrival, before the request has a slot, as from vLLM's streaming response.

Errors are vLLM's: ``{"object": "error", "message", "type": "BadRequestError", "param":
null, "code": 400}`` (or, with ``error_wrapped=True``, the ``{"error": {...}}`` of newer
versions); a prompt over ``max_model_len`` is the 400 "This model's maximum context length
is N tokens. However, you requested M tokens (...)"; an unknown model the 404 "The model
`x` does not exist."; a wrong or missing key on ``/v1/*`` (``api_key`` set) the 401
``{"error": "Unauthorized"}`` of vLLM's middleware.

With ``reasoning_parser=True`` (``--reasoning-parser deepseek_r1``) the chain of thought
comes in ``reasoning_content`` (``reasoning_field="reasoning"`` for newer versions), else
inline in the content between ``<think>`` tags. To continue an assistant message (how a
cut answer is resumed on vLLM), send ``continue_final_message: true`` and
``add_generation_prompt: false``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import _vllm_wire
from ._deepseek_answer import Plan
from ._deepseek_request import ChatRequest, FimRequest
from ._openai_request import ServerError
from ._openai_stream import Wire
from ._prometheus import CONTENT_TYPE
from ._server import Request, Response
from ._settings import as_bool, as_count, as_positive, as_seconds, as_str, as_strings
from .openai_server import OpenAIServerDouble, Rendered, RouteHandler

__all__ = ["DEFAULT_MODEL", "FakeVLLM"]

DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
_AUTO_TOOLS = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)


def _names(value: Any) -> tuple[str, ...]:
    names = as_strings(value)
    if not names:
        raise ValueError("at least one served model name is needed")
    return names


def _optional_key(value: Any) -> str | None:
    return None if value is None else as_str(value)


def _optional_positive(value: Any) -> int | None:
    return None if value is None else as_positive(value)


def _reasoning_field(value: Any) -> str:
    if value not in ("reasoning_content", "reasoning"):
        raise ValueError('expected "reasoning_content" or "reasoning"')
    return str(value)


_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "served_model_names": _names,
    "api_key": _optional_key,
    "max_num_seqs": as_positive,
    "max_model_len": as_positive,
    "kv_cache_tokens": _optional_positive,
    "prompt_seconds": as_seconds,
    "token_seconds": as_seconds,
    "answer_tokens": as_count,
    "thinking_tokens": as_count,
    "reasoning_parser": as_bool,
    "reasoning_field": _reasoning_field,
    "error_wrapped": as_bool,
    "version": as_str,
}


class FakeVLLM(OpenAIServerDouble):
    """The vLLM double (see the module docstring). Start it (``with FakeVLLM() as fake:``)
    and point an OpenAI client at ``fake.base_url``.

    Every keyword is also an attribute and a setting (`configure`, ``POST
    /_dsollama/config``) that may change while it runs: ``max_num_seqs`` applies at once,
    letting waiting requests in. ``prompt_seconds`` is the time from taking a slot to the
    first token, ``token_seconds`` the time per token after it (0: as fast as possible).
    ``kv_cache_tokens=None`` means the cache never limits the batch before
    ``max_num_seqs`` does.
    """

    _settings = _SETTINGS
    prefill = "flag"
    stream_headers_at_once = True
    context_checked_in_slot = False
    histogram_bounds = (_vllm_wire.TTFT_BUCKETS, _vllm_wire.E2E_BUCKETS)

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        served_model_names: Iterable[str] = (DEFAULT_MODEL,),
        api_key: str | None = None,
        max_num_seqs: int = 256,
        max_model_len: int = 16384,
        kv_cache_tokens: int | None = None,
        prompt_seconds: float = 0.0,
        token_seconds: float = 0.001,
        answer_tokens: int = 12,
        thinking_tokens: int = 8,
        reasoning_parser: bool = False,
        reasoning_field: str = "reasoning_content",
        error_wrapped: bool = False,
        version: str = "0.11.0",
    ) -> None:
        self.served_model_names: tuple[str, ...] = ()
        self.api_key: str | None = None
        self.max_num_seqs = 1
        self.max_model_len = 1
        self.kv_cache_tokens: int | None = None
        self.prompt_seconds = 0.0
        self.token_seconds = 0.0
        self.answer_tokens = 0
        self.thinking_tokens = 0
        self.reasoning_parser = False
        self.reasoning_field = "reasoning_content"
        self.error_wrapped = False
        self.version = ""
        self.configure(
            served_model_names=served_model_names,
            api_key=api_key,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
            kv_cache_tokens=kv_cache_tokens,
            prompt_seconds=prompt_seconds,
            token_seconds=token_seconds,
            answer_tokens=answer_tokens,
            thinking_tokens=thinking_tokens,
            reasoning_parser=reasoning_parser,
            reasoning_field=reasoning_field,
            error_wrapped=error_wrapped,
            version=version,
        )
        super().__init__(host=host, port=port)
        self._created = int(time.time())

    @property
    def base_url(self) -> str:
        """``url + "/v1"``: what an OpenAI client takes as ``base_url``."""
        return self.url + "/v1"

    @property
    def model(self) -> str:
        """The first served name: the ``model_name`` label of the metrics."""
        return self.served_model_names[0]

    # -- settings -------------------------------------------------------------------------

    def _check_together(self, settings: Mapping[str, Any]) -> None:
        cache, length = settings.get("kv_cache_tokens"), settings.get("max_model_len", 1)
        if cache is not None and cache < length:
            # vLLM refuses to start in this case, for the same reason: one request of the
            # full length must fit.
            raise ValueError(
                f"max_model_len ({length}) is larger than the maximum number of tokens that "
                f"can be stored in the KV cache (kv_cache_tokens={cache}); raise "
                "kv_cache_tokens or lower max_model_len"
            )

    def _slot_count(self) -> int:
        return self.max_num_seqs

    def _token_capacity(self) -> float:
        if self.kv_cache_tokens is None:
            return float(self.max_num_seqs * self.max_model_len)
        return float(self.kv_cache_tokens)

    # -- the server's shapes ----------------------------------------------------------------

    def _wire(self) -> Wire:
        return _vllm_wire.wire(wrapped=self.error_wrapped)

    def _error(self, error: ServerError) -> Response:
        return _vllm_wire.error_response(error, wrapped=self.error_wrapped)

    def _not_found(self, request: Request) -> Response:
        return Response.json({"detail": "Not Found"}, status=404)  # FastAPI's own

    def _method_not_allowed(self, request: Request) -> Response:
        return Response.json({"detail": "Method Not Allowed"}, status=405)

    def _gate(self, request: Request) -> Response | None:
        # vLLM's --api-key middleware guards /v1 only (health and metrics stay open), and
        # answers with its own small body, not an ErrorResponse.
        if self.api_key is None or not request.path.startswith("/v1"):
            return None
        if request.headers.get("authorization", "") == f"Bearer {self.api_key}":
            return None
        return Response.json({"error": "Unauthorized"}, status=401)

    def _routes(self) -> Mapping[str, Mapping[str, RouteHandler]]:
        return {
            "/v1/models": {"GET": self._models},
            "/health": {"GET": self._health},
            "/metrics": {"GET": self._metrics},
            "/version": {"GET": self._version},
        }

    async def _models(self, request: Request) -> Response:
        return Response.json(
            _vllm_wire.models_body(self.served_model_names, self.max_model_len, self._created)
        )

    async def _health(self, request: Request) -> Response:
        return Response(status=200, content_type=None)  # 200, empty body

    async def _metrics(self, request: Request) -> Response:
        capacity = int(self._token_capacity())
        text = _vllm_wire.metrics_text(self.model, self._pool, capacity, self._stats)
        return Response(body=text.encode(), content_type=CONTENT_TYPE)

    async def _version(self, request: Request) -> Response:
        return Response.json({"version": self.version})

    # -- generation -------------------------------------------------------------------------

    def _response_model(self, requested: str) -> str:
        if not requested:
            return self.model  # newer versions default to the first served name
        if requested not in self.served_model_names:
            raise ServerError(404, f"The model `{requested}` does not exist.")
        return requested

    def _check_request(self, request: ChatRequest | FimRequest, body: Mapping[str, Any]) -> None:
        if body.get("stream_options") is not None and not request.stream:
            raise ServerError(400, "Stream options can only be defined when `stream=True`.")
        if isinstance(request, FimRequest):
            if body.get("suffix") is not None:
                raise ServerError(400, "suffix is not currently supported")
            return
        # Started without a tool parser (the double produces no tool calls), vLLM refuses
        # tools with "auto" choice — the default when tools are given.
        if body.get("tools") and body.get("tool_choice", "auto") == "auto":
            raise ServerError(400, _AUTO_TOOLS)

    def _answer_limit(self, prompt: int, asked: int | None) -> int | None:
        limit = self.max_model_len
        if asked is None:
            if prompt >= limit:
                raise ServerError(
                    400,
                    f"This model's maximum context length is {limit} tokens. However, you "
                    f"requested {prompt} tokens in the messages, Please reduce the length of "
                    "the messages.",
                )
            return limit - prompt
        if prompt + asked > limit:
            raise ServerError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you "
                f"requested {prompt + asked} tokens ({prompt} in the messages, {asked} in the "
                "completion). Please reduce the length of the messages or completion.",
            )
        return asked

    def _render(
        self, route: str, model: str, plan: Plan, request: ChatRequest | FimRequest, prompt: int
    ) -> Rendered:
        renderer = _vllm_wire.VLLMRenderer(
            model,
            plan,
            prompt,
            reasoning_field=self.reasoning_field if self.reasoning_parser else None,
            chat=route == "chat",
        )
        return Rendered(renderer.body, lambda: renderer.events(request.include_usage))
