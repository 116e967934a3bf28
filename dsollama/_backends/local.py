"""The local route: one Ollama daemon, spoken to through the official `ollama` package.

Always the native ``/api/*`` API (Ollama's ``/v1`` ignores ``num_ctx``), always streaming
(so the router sees the first token and every gap, even for callers that asked for a
single answer), always with an explicit httpx timeout (the official default is none).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import ollama

from .._catalogue import Catalogue, normalise_model_name
from .._config import Settings
from .._delta import Delta
from .._exceptions import IncompleteResponseError
from .._hosts import display_host
from .._types import RouteKind
from .._wire.local import LOCAL_ERRORS, classify_local_error, local_chunk_to_delta
from .._wire.reasoning import ThinkSplitter
from . import CallSpec, StreamStats, http_limits, http_timeout

__all__ = ["LocalBackend"]

# /api/ps and /api/show answers are cached this long (seconds).
_PS_TTL = 2.0
# Ollama's automatic context below ~23 GiB of VRAM (reference §3.5): the window a model
# gets when neither the request nor its Modelfile sets num_ctx.
_DEFAULT_NUM_CTX = 4096


class LocalBackend:
    kind: RouteKind = "local"

    def __init__(
        self,
        host: str,
        settings: Settings,
        catalogue: Catalogue,
        *,
        headers: Mapping[str, str] | None = None,
        httpx_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.endpoint = host
        self.route = f"local:{display_host(host)}"
        self._settings = settings
        self._catalogue = catalogue
        timeout = http_timeout(settings)
        extra = {"limits": http_limits(), **dict(httpx_kwargs or {})}
        self._client = ollama.AsyncClient(
            host=host, timeout=timeout, headers=dict(headers or {}), **extra
        )

        self._ps_cache: tuple[float, set[str]] | None = None
        self._tags_cache: tuple[float, set[str]] | None = None
        self._version: tuple[int, ...] | None = None
        self._ctx_cache: dict[str, int | None] = {}

    def __repr__(self) -> str:
        return f"LocalBackend({self.host!r})"

    @property
    def client(self) -> ollama.AsyncClient:
        """The underlying official client (for provisioning and pass-through calls)."""
        return self._client

    def _thinking_capable(self, model: str) -> bool:
        entry = self._catalogue.resolve(model)
        if entry is not None:
            return entry.thinking
        return normalise_model_name(model).rsplit("/", 1)[-1].startswith("deepseek-r1")

    async def _inline_reasoning(self, model: str) -> bool:
        """Does reasoning arrive inline, possibly with only ``</think>`` (template pre-fill)?

        Only daemons older than 0.9.0 (no ``thinking`` field) put R1's reasoning inline;
        treating a current daemon's answer that way would file a plain answer (``think=False``,
        or empty reasoning) under thinking. Explicit ``<think>`` tags are split either way.
        """
        if not self._thinking_capable(model):
            return False
        if self._version is None:
            self._version = await self._fetch_version()
        return self._version < (0, 9, 0)

    async def _fetch_version(self) -> tuple[int, ...]:
        http: Any = getattr(self._client, "_client", None)
        try:
            response = await http.get("/api/version")
            text = str(response.json().get("version", ""))
            return tuple(int(part) for part in text.split("-")[0].split(".")[:3])
        except Exception:
            return (999,)  # unknown: assume a current daemon

    def _error(self, exc: BaseException, model: str, partial: str) -> Exception:
        return classify_local_error(
            exc, host=self.host, model=model, route=self.route, partial_text=partial
        )

    async def stream(
        self, spec: CallSpec, *, model: str, thinking: bool | None, stats: StreamStats
    ) -> AsyncIterator[Delta]:
        partial: list[str] = []
        try:
            splitter = ThinkSplitter(thinking_model=await self._inline_reasoning(model))
            if spec.operation == "chat":
                # The official overloads key on Literal stream values; the arguments are
                # passed through as the caller gave them.
                client: Any = self._client
                chunks: AsyncIterator[Any] = await client.chat(
                    model=model,
                    messages=list(spec.messages or []),
                    tools=list(spec.tools) if spec.tools else None,
                    stream=True,
                    think=spec.think,
                    format=spec.format,
                    options=spec.options,
                    keep_alive=spec.keep_alive,
                    logprobs=spec.logprobs,
                    top_logprobs=spec.top_logprobs,
                )
            else:
                client = self._client
                chunks = await client.generate(
                    model=model,
                    prompt=spec.prompt or "",
                    suffix=spec.suffix or "",
                    system=spec.system or "",
                    template=spec.template or "",
                    context=spec.context,
                    stream=True,
                    think=spec.think,
                    raw=bool(spec.raw),
                    format=spec.format,
                    images=spec.images,
                    options=spec.options,
                    keep_alive=spec.keep_alive,
                    logprobs=spec.logprobs,
                    top_logprobs=spec.top_logprobs,
                )
            done = False
            async for chunk in chunks:
                if done:
                    continue  # nothing follows done:true; read to the end so the connection is reused
                delta = local_chunk_to_delta(chunk, splitter)
                if delta.content:
                    partial.append(delta.content)
                if chunk.done:
                    done = True
                yield delta
        except LOCAL_ERRORS as exc:
            raise self._error(exc, model, "".join(partial)) from exc
        if not done:
            # The official client ends iteration silently here (reference §9.13).
            raise IncompleteResponseError(
                f"the Ollama daemon at {self.host} ended the answer without done:true",
                route=self.route,
                partial_text="".join(partial),
            )

    async def loaded_models(self) -> set[str]:
        """Models in memory (``/api/ps``), cached briefly."""
        now = time.monotonic()
        if self._ps_cache is not None and now - self._ps_cache[0] < _PS_TTL:
            return self._ps_cache[1]
        try:
            response = await self._client.ps()
        except LOCAL_ERRORS as exc:
            raise self._error(exc, "", "") from exc
        names = {normalise_model_name(m.model or m.name or "") for m in response.models}
        self._ps_cache = (now, names)
        return names

    async def installed_models(self) -> set[str]:
        """Models on the daemon's disk (``/api/tags``), cached briefly."""
        now = time.monotonic()
        if self._tags_cache is not None and now - self._tags_cache[0] < _PS_TTL:
            return self._tags_cache[1]
        try:
            response = await self._client.list()
        except LOCAL_ERRORS as exc:
            raise self._error(exc, "", "") from exc
        names = {normalise_model_name(m.model or "") for m in response.models}
        self._tags_cache = (now, names)
        return names

    async def warm(self, model: str) -> float | None:
        """Ask the daemon to load ``model`` (an empty prompt loads without generating).

        Returns the load time in seconds, or None when the daemon could not load it.
        """
        try:
            response = await self._client.generate(model=model, prompt="", stream=False)
        except LOCAL_ERRORS:
            return None
        self._ps_cache = None
        return (response.load_duration or 0) / 1e9

    async def context_window(self, model: str) -> int | None:
        """The context a request gets without its own num_ctx: the model's PARAMETER num_ctx,
        else Ollama's automatic default. None when the daemon cannot be asked."""
        key = normalise_model_name(model)
        if key in self._ctx_cache:
            return self._ctx_cache[key]
        window: int | None = _DEFAULT_NUM_CTX
        try:
            shown = await self._client.show(model)
        except LOCAL_ERRORS:
            return None
        for line in (shown.parameters or "").splitlines():
            name, _, value = line.strip().partition(" ")
            if name == "num_ctx":
                try:
                    window = int(value.strip())
                except ValueError:
                    pass
        self._ctx_cache[key] = window
        return window

    async def aclose(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            await close()
