"""`OllamaDaemon`: the one owner of one Ollama daemon.

Everything dsollama does with a daemon goes through the object for its host: routed
chat and generate, embeddings, the admin calls (list, show, ps, delete, copy), pulls and
creates, blob uploads, and serve's pass-through. It owns

- the connection: one transport (one pool, one TLS context) built once with the user's
  httpx options (headers, auth, transport, verify, cert, proxy), shared by the official
  ``ollama`` clients it holds (one per timeout class) and a plain httpx client for what the
  official client does not cover (version, blobs, raw JSON). Routed chat and generate
  go out on the official client's own httpx client with the body its request models
  build (`_wire.local_request`); their NDJSON answers are read here (`_wire.local`);
- one error mapping (`classify_local_error`): the same failure is the same dsollama error
  whichever door it came through;
- what it has learned about the daemon: its version (cached only from a real answer),
  the models loaded (``/api/ps``) and installed (``/api/tags``), context sizes.

Inference always uses the native ``/api/*`` (Ollama's ``/v1`` ignores ``num_ctx``), always
streams (so the router sees the first token and every gap), and always passes an explicit
timeout (the official default is none).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Literal

import httpx
import ollama

from .._catalogue import Catalogue, normalise_model_name
from .._config import Settings
from .._delta import Delta
from .._exceptions import (
    BackendError,
    DaemonUnreachableError,
    IncompleteResponseError,
    ServerError,
    UnsupportedRequestError,
)
from .._routes import RouteConfig
from .._state import ServerQueue
from .._types import RouteKind
from .._wire.local import (
    LOCAL_ERRORS,
    NdjsonLines,
    classify_local_error,
    local_chunk_to_delta,
    parse_local_line,
)
from .._wire.local_request import chat_body, generate_body
from .._wire.reasoning import ThinkSplitter
from . import CallSpec, EmbedSpec, ModelState, StreamStats, http_limits, http_timeout, loopback

__all__ = ["QUICK_READ_TIMEOUT", "STALL_TIMEOUT", "OllamaDaemon"]

QUICK_READ_TIMEOUT = 60.0
"list/show/ps/delete/version answer at once; a minute covers a daemon busy loading a model."
STALL_TIMEOUT = 1800.0
# A pull is silent while the daemon verifies the SHA-256 of a finished layer: minutes
# for the 400 GB models. A create from a large GGUF parses it silently too.

# /api/ps and /api/tags answers are cached this long (seconds).
_PS_TTL = 2.0
# Ollama's automatic context below ~23 GiB of VRAM (reference §3.5): the window a model
# gets when neither the request nor its Modelfile sets num_ctx.
_DEFAULT_NUM_CTX = 4096
# Daemons before 0.9.0 have no `thinking` field: R1's reasoning arrives inline.
_SEPARATE_THINKING = (0, 9, 0)

# httpx.AsyncClient options that belong to the transport, when dsollama builds it.
_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "proxy", "limits", "http1", "http2")


def _version_tuple(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split("-")[0].split(".")[:3])
    except ValueError:
        return None


class OllamaDaemon:
    """One Ollama daemon (see the module docstring). Not thread-safe: one event loop."""

    api: Literal["ollama"] = "ollama"

    def __init__(
        self,
        config: RouteConfig,
        settings: Settings,
        catalogue: Catalogue,
        *,
        headers: Mapping[str, str] | None = None,
        httpx_options: Mapping[str, Any] | None = None,
        stall_timeout: float = STALL_TIMEOUT,
    ) -> None:
        self.config = config
        self.host = config.base_url
        self.endpoint = config.base_url
        self.route = config.name
        self.kind: RouteKind = config.kind
        self.capabilities = config.capabilities
        self._settings = settings
        self._catalogue = catalogue
        self._httpx_options = dict(httpx_options or {})
        self._headers = {**config.headers, **dict(headers or {})}
        self._stall = stall_timeout
        connect = settings.connect_timeout
        self.quick_timeout = httpx.Timeout(QUICK_READ_TIMEOUT, connect=connect)
        self.long_timeout = httpx.Timeout(stall_timeout, connect=connect)
        self._connect()
        self._version: tuple[int, ...] | None = None
        self._ps_cache: tuple[float, set[str]] | None = None
        self._tags_cache: tuple[float, set[str]] | None = None
        self._ctx_cache: dict[str, int | None] = {}

    def _connect(self) -> None:
        """The transport and the clients on it, built with the user's httpx options."""
        options = dict(self._httpx_options)
        transport = options.pop("transport", None)
        self._owns_transport = transport is None
        transport_options = {k: options.pop(k) for k in _TRANSPORT_OPTIONS if k in options}
        if transport is None:
            transport_options.setdefault("limits", http_limits())
            transport = httpx.AsyncHTTPTransport(**transport_options)
        headers = dict(self._headers)
        # As the official client does: OLLAMA_API_KEY is its bearer token unless the
        # caller set an Authorization header. Our raw requests carry the same headers.
        api_key = os.environ.get("OLLAMA_API_KEY")
        if api_key and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = f"Bearer {api_key}"
        shared = {
            "headers": headers,
            "transport": transport,
            "follow_redirects": options.pop("follow_redirects", True),
            **options,
        }
        self._transport = transport
        infer = shared
        if self._owns_transport and loopback.eligible(self.host, transport_options):
            # Routed chat and generate stream every chunk: on a loopback daemon they go
            # through the lean transport (see `loopback`); the rest stays on httpx's.
            infer = {**shared, "transport": loopback.LoopbackTransport()}
        self._infer = ollama.AsyncClient(self.host, timeout=http_timeout(self._settings), **infer)
        # Routed chat and generate are sent on the official client's own httpx client
        # (its base URL, headers, timeout and transport: the request it would send), to
        # URLs resolved once: per-request headers and path parsing cost httpx more than
        # the rest of the request.
        self._infer_http: httpx.AsyncClient = self._infer._client
        self._urls = {
            op: self._infer_http.build_request("POST", f"/api/{op}").url
            for op in ("chat", "generate")
        }
        self.admin = ollama.AsyncClient(self.host, timeout=self.quick_timeout, **shared)
        "The official client for one-shot admin calls (list, show, ps, delete, copy)."
        self.long = ollama.AsyncClient(self.host, timeout=self.long_timeout, **shared)
        "The official client for long progress streams (pull, create)."
        self.http = httpx.AsyncClient(base_url=self.host, timeout=self.quick_timeout, **shared)
        "Plain HTTP to the daemon (version, blobs, raw JSON, serve's pass-through)."

    def reopen(self) -> None:
        """Fresh connections for a new event loop (the old loop's were closed with it)."""
        self._connect()

    def __repr__(self) -> str:
        return f"OllamaDaemon({self.route!r}, {self.host!r})"

    # -- the one error mapping ------------------------------------------------------------

    def error(
        self, exc: BaseException, *, model: str | None = None, partial_text: str = ""
    ) -> BackendError:
        """The dsollama error for anything a call to this daemon raised."""
        return classify_local_error(
            exc, host=self.host, model=model, route=self.route, partial_text=partial_text
        )

    @contextlib.contextmanager
    def translate(self, model: str | None = None) -> Iterator[None]:
        """Raise every transport, status or decoding failure as the dsollama error for it."""
        try:
            yield
        except BackendError:
            raise
        except LOCAL_ERRORS as exc:
            raise self.error(exc, model=model) from exc
        except (AttributeError, TypeError) as exc:
            # Only the official client's call runs inside: it indexes into a JSON answer
            # that is an array or a string. A malformed answer, like any other.
            raise self._malformed(exc) from exc

    def _malformed(self, exc: BaseException) -> ServerError:
        error = ServerError(
            f"the Ollama daemon at {self.host} sent an answer that is not a JSON object",
            route=self.route,
        )
        error.__cause__ = exc
        return error

    # -- what the router asks -------------------------------------------------------------

    async def version(self) -> tuple[int, ...] | None:
        """The daemon's version; cached only from a real answer.

        Raises `DaemonUnreachableError` when nothing answers (the caller's attempt is
        over: one connect is all a dead daemon costs); None when it answers oddly.
        """
        if self._version is not None:
            return self._version
        try:
            with self.translate():
                response = await self.http.get("/api/version")
        except DaemonUnreachableError:
            raise
        except BackendError:
            return None
        try:
            parsed = _version_tuple(str(response.json().get("version", "")))
        except (ValueError, AttributeError):
            return None
        if response.status_code == 200 and parsed is not None:
            self._version = parsed
        return parsed

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
        version = await self.version()
        return version is not None and version < _SEPARATE_THINKING

    async def model_state(self, model: str) -> ModelState | None:
        """loaded (``/api/ps``), installed (``/api/tags``) or missing; cached briefly.

        Raises `DaemonUnreachableError` when nothing answers; None when the daemon cannot
        say (an odd answer: the call itself will find out).
        """
        name = normalise_model_name(model)
        try:
            loaded = await self._loaded()
            if name in loaded:
                return "loaded"
            return "installed" if name in await self._installed() else "missing"
        except DaemonUnreachableError:
            raise
        except BackendError:
            return None

    async def _loaded(self) -> set[str]:
        now = time.monotonic()
        if self._ps_cache is not None and now - self._ps_cache[0] < _PS_TTL:
            return self._ps_cache[1]
        with self.translate():
            response = await self.admin.ps()
        names = {normalise_model_name(m.model or m.name or "") for m in response.models}
        self._ps_cache = (now, names)
        return names

    async def _installed(self) -> set[str]:
        now = time.monotonic()
        if self._tags_cache is not None and now - self._tags_cache[0] < _PS_TTL:
            return self._tags_cache[1]
        with self.translate():
            response = await self.admin.list()
        names = {normalise_model_name(m.model or "") for m in response.models}
        self._tags_cache = (now, names)
        return names

    async def warm(self, model: str) -> float | None:
        """Ask the daemon to load ``model`` (an empty prompt loads without generating).

        Returns the load time the daemon measured, in seconds, or None when it could not.
        """
        started = time.monotonic()
        try:
            with self.translate(model):
                response = await self._infer.generate(model=model, prompt="", stream=False)
        except BackendError:
            return None
        self._ps_cache = None
        # A load-only answer (done_reason "load") carries no durations: the request did
        # nothing but wait for the load, so its own length is the measurement.
        reported = (response.load_duration or 0) / 1e9
        return reported or time.monotonic() - started

    async def context_window(self, model: str) -> int | None:
        """The context a request gets without its own num_ctx: the model's PARAMETER
        num_ctx, else Ollama's automatic default. None when the daemon cannot be asked."""
        key = normalise_model_name(model)
        if key in self._ctx_cache:
            return self._ctx_cache[key]
        if key in self.config.context:
            return self.config.context[key]
        try:
            with self.translate(model):
                shown = await self.admin.show(model)
        except BackendError:
            return None
        window: int | None = _DEFAULT_NUM_CTX
        for line in (shown.parameters or "").splitlines():
            name, _, value = line.strip().partition(" ")
            if name == "num_ctx":
                with contextlib.suppress(ValueError):
                    window = int(value.strip())
        self._ctx_cache[key] = window
        return window

    async def server_queue(self, model: str) -> ServerQueue | None:
        """Ollama publishes no queue depth: admission counts requests itself."""
        return None

    # -- inference ------------------------------------------------------------------------

    def stream(
        self, spec: CallSpec, *, model: str, thinking: bool | None, stats: StreamStats
    ) -> AsyncIterator[Delta]:
        return self._answer(spec, model, spec.messages)

    def continue_stream(
        self,
        spec: CallSpec,
        *,
        model: str,
        thinking: bool | None,
        stats: StreamStats,
        partial_content: str,
        partial_thinking: str,
    ) -> AsyncIterator[Delta]:
        """Continue a broken chat answer: the daemon continues a final assistant message."""
        if spec.operation != "chat":
            raise UnsupportedRequestError(
                f"{self.route} cannot continue a generate answer", route=self.route
            )
        prefix: dict[str, Any] = {"role": "assistant", "content": partial_content}
        if partial_thinking:
            prefix["thinking"] = partial_thinking
        return self._answer(spec, model, [*list(spec.messages or []), prefix])

    async def _answer(self, spec: CallSpec, model: str, messages: Any) -> AsyncIterator[Delta]:
        """The answer as `Delta`s, read from the daemon's NDJSON stream.

        The request is the official client's, byte for byte (`_wire.local_request`), on
        its own httpx client; the answer is read here rather than by the official client,
        which validates every line into a pydantic model — for an unpaced answer, more
        work than everything else dsollama does per chunk. The lines are checked all the
        same (`_wire.local`), and read to the end so the connection is reused.
        """
        partial: list[str] = []
        done = False
        operation: Literal["chat", "generate"] = "chat" if spec.operation == "chat" else "generate"
        try:
            splitter = ThinkSplitter(thinking_model=await self._inline_reasoning(model))
            body = self._request_body(spec, model, messages)
            url = self._urls[operation]
            async with self._infer_http.stream("POST", url, json=body) as response:
                try:
                    response.raise_for_status()
                except httpx.HTTPStatusError as exc:
                    # As the official client reports a status: the body's "error" field.
                    await exc.response.aread()
                    raise ollama.ResponseError(
                        exc.response.text, exc.response.status_code
                    ) from None
                lines = NdjsonLines()
                async for data in response.aiter_bytes():
                    for line in lines.feed(data):
                        if done:
                            continue  # nothing follows done:true; read on so the connection is reused
                        delta = local_chunk_to_delta(
                            parse_local_line(line), splitter, operation=operation
                        )
                        if delta.content:
                            partial.append(delta.content)
                        done = delta.done
                        yield delta
                last = lines.finish()
                if last is not None and not done:
                    delta = local_chunk_to_delta(
                        parse_local_line(last), splitter, operation=operation
                    )
                    done = delta.done
                    yield delta
        except LOCAL_ERRORS as exc:
            raise self.error(exc, model=model, partial_text="".join(partial)) from exc
        if not done:
            # The official client ends iteration silently here (reference §9.13).
            raise IncompleteResponseError(
                f"the Ollama daemon at {self.host} ended the answer without done:true",
                route=self.route,
                partial_text="".join(partial),
            )

    def _request_body(self, spec: CallSpec, model: str, messages: Any) -> dict[str, Any]:
        """The JSON body of the streamed request, as the official client makes it from
        the caller's arguments (`_call` turns an empty ``suffix``, ``system``, ``template``
        or ``format`` into None, which the daemon reads the same way)."""
        if spec.operation == "chat":
            return chat_body(
                model=model,
                messages=list(messages or []),
                tools=list(spec.tools) if spec.tools else None,
                think=spec.think,
                format=spec.format,
                options=spec.options,
                keep_alive=spec.keep_alive,
                logprobs=spec.logprobs,
                top_logprobs=spec.top_logprobs,
            )
        return generate_body(
            model=model,
            prompt=spec.prompt,
            suffix=spec.suffix,
            system=spec.system,
            template=spec.template,
            context=spec.context,
            think=spec.think,
            raw=spec.raw,
            format=spec.format,
            images=spec.images,
            options=spec.options,
            keep_alive=spec.keep_alive,
            logprobs=spec.logprobs,
            top_logprobs=spec.top_logprobs,
        )

    async def embed(self, spec: EmbedSpec, *, model: str) -> dict[str, Any]:
        with self.translate(model):
            result = await self._infer.embed(
                model=model,
                input=spec.input,
                truncate=spec.truncate,
                options=spec.options,
                keep_alive=spec.keep_alive,
                dimensions=spec.dimensions,
            )
        data: dict[str, Any] = result.model_dump()
        return data

    # -- admin (official response types) ---------------------------------------------------

    async def list(self) -> ollama.ListResponse:
        with self.translate():
            return await self.admin.list()

    async def show(self, model: str) -> ollama.ShowResponse:
        with self.translate(model):
            return await self.admin.show(model)

    async def ps(self) -> ollama.ProcessResponse:
        with self.translate():
            return await self.admin.ps()

    async def delete(self, model: str) -> ollama.StatusResponse:
        with self.translate(model):
            response = await self.admin.delete(model)
        self._tags_cache = self._ps_cache = None
        return response

    async def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        with self.translate(source):
            response = await self.admin.copy(source, destination)
        self._tags_cache = None
        return response

    async def pull(self, model: str, *, insecure: bool = False) -> ollama.ProgressResponse:
        with self.translate(model):
            response = await self.long.pull(model, insecure=insecure, stream=False)
        self._tags_cache = None
        return response

    async def create(self, model: str, **fields: Any) -> ollama.ProgressResponse:
        with self.translate(model):
            response = await self.long.create(model, stream=False, **fields)
        self._tags_cache = None
        return response

    async def progress(
        self,
        op: Literal["pull", "create"],
        model: str,
        *,
        body: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ollama.ProgressResponse]:
        """A pull or create progress stream, as the official client yields it.

        ``body``: send this exact JSON instead (fields the official client lacks).
        Failures of the daemon or the connection are translated; an error *line* inside
        the stream stays an ``ollama.ResponseError`` (status -1) for the caller to read,
        as pull and create give such lines their own meaning (a misspelt tag, say).
        """
        method: Any = self.long.pull if op == "pull" else self.long.create
        stream: Any = None
        try:
            try:
                if body is not None:
                    stream = self._raw_progress(f"/api/{op}", body)
                else:
                    stream = await method(model, stream=True, **kwargs)
                async for part in stream:
                    yield part
            except ollama.ResponseError as exc:
                if exc.status_code == -1:
                    raise
                raise self.error(exc, model=model) from exc
            except LOCAL_ERRORS as exc:
                raise self.error(exc, model=model) from exc
            except (AttributeError, TypeError) as exc:
                raise self._malformed(exc) from exc
        finally:
            self._tags_cache = None
            if stream is not None:
                # A consumer that stops early must not leave the HTTP response open.
                await stream.aclose()

    async def _raw_progress(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[ollama.ProgressResponse]:
        """An NDJSON progress stream read the way the official client reads one."""
        async with self.http.stream("POST", path, json=body, timeout=self.long_timeout) as r:
            if r.status_code >= 400:
                await r.aread()
                raise ollama.ResponseError(r.text, r.status_code)
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                part = json.loads(line)
                if err := part.get("error"):
                    raise ollama.ResponseError(err)
                yield ollama.ProgressResponse(**part)

    # -- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self.http.aclose()
        # ollama's close() is untyped; held as typed callables to keep mypy strict.
        closers: list[Callable[[], Awaitable[None]]] = [
            self._infer.close,
            self.admin.close,
            self.long.close,
        ]
        for close in closers:
            await close()
        if self._owns_transport:
            await self._transport.aclose()
