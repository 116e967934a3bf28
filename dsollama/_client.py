"""`AsyncClient`: a drop-in for `ollama.AsyncClient` whose calls get answered.

``chat``, ``generate`` and ``embed`` take the official client's arguments plus dsollama's
routing controls (`_call.RoutingOptions`) and return its types (subclassed, with
`served_by`, `attempts`, … added), routed by `_routing.router`. Provisioning methods keep
the official names and go to the first Ollama route's `OllamaDaemon`; the
`provision`/`pull_events`/`create_from_modelfile` variants yield typed `ProgressEvent`s.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import ollama

from ._backends import Backend, CallSpec, EmbedSpec
from ._backends.daemon import OllamaDaemon
from ._backends.hosted import HostedBackend
from ._call import RoutingOptions, chat_spec, generate_spec, resolve_controls
from ._catalogue import Catalogue, load_catalogue
from ._config import Settings, load_settings
from ._exceptions import ConfigError, DsollamaError
from ._results import chat_response, generate_response
from ._routes import RouteConfig, resolve_routes
from ._routing.router import Router, shared_budget
from ._routing.shapes import CallSink, Controls, RoutedDelta
from ._state import BreakerConfig
from ._state.open import open_store
from ._types import ChatResponse, EmbedResponse, GenerateResponse

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._modelfile import Modelfile
    from ._provision import AsyncProvisioner, ProgressEvent

__all__ = ["AsyncClient"]

T = TypeVar("T")

# Constructor keywords of ollama.Client that are about its httpx client.
_HTTPX_PASSTHROUGH = {
    "follow_redirects",
    "verify",
    "cert",
    "limits",
    "transport",
    "proxy",
    "trust_env",
    "auth",
}


class _BaseClient:
    """Everything that does no I/O: settings, routes and their backends, the router."""

    def __init__(
        self,
        host: str | None = None,
        *,
        follow_redirects: bool = True,
        timeout: Any = None,
        headers: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        catalogue: Catalogue | None = None,
        routes: Sequence[Mapping[str, Any] | RouteConfig] | None = None,
        sinks: Sequence[CallSink] = (),
        source: str = "library",
        hosted_transport: Any = None,
        **kwargs: Any,
    ) -> None:
        overrides = {k: v for k, v in kwargs.items() if k in Settings.model_fields}
        httpx_options = {k: v for k, v in kwargs.items() if k not in overrides}
        unknown = set(httpx_options) - _HTTPX_PASSTHROUGH
        if unknown:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if host is not None:
            overrides.setdefault("ollama_hosts", [host])
        if isinstance(timeout, (int, float)) and timeout > 0:
            # ollama.Client(timeout=N) bounds a whole request; here it is the total deadline.
            overrides.setdefault("total_timeout", float(timeout))
        if settings is None:
            settings = load_settings(**overrides)
        elif overrides:
            settings = settings.model_copy(
                update=load_settings(**overrides).model_dump(include=set(overrides))
            )
        self.settings = settings
        self.catalogue = catalogue or load_catalogue(settings.catalogue_path)
        httpx_options.setdefault("follow_redirects", follow_redirects)
        self.route_configs = resolve_routes(settings, tables=routes)
        self.unavailable: dict[str, str] = {}
        "Configured routes that cannot be used, and why (a key not set, say)."
        backends: list[Backend] = []
        for config in self.route_configs:
            if config.api == "ollama":
                backends.append(
                    OllamaDaemon(
                        config,
                        settings,
                        self.catalogue,
                        headers=headers,
                        httpx_options=httpx_options,
                    )
                )
            elif config.key_env and config.key() is None:
                self.unavailable[config.name] = f"no key: set {config.key_env}"
            else:
                backends.append(
                    HostedBackend(config, settings, self.catalogue, transport=hosted_transport)
                )
        all_sinks: list[CallSink] = list(sinks)
        if settings.log:
            from ._calllog import open_call_log

            call_log = open_call_log(settings, source=source)
            if call_log is not None:
                all_sinks.append(call_log)
        self._source = source
        self._router = Router(
            settings,
            self.catalogue,
            backends=backends,
            sinks=all_sinks,
            budget=shared_budget(settings) if settings.retry_budget_shared else None,
            store=open_store(
                settings.state_url,
                namespace=settings.state_namespace,
                op_timeout=settings.state_op_timeout,
                # A burst queued for a connection may wait a little longer, never forever.
                wait_limit=max(1.0, 4 * settings.state_op_timeout),
                breaker=BreakerConfig(
                    threshold=settings.breaker_threshold,
                    cooldown=settings.breaker_cooldown,
                    cooldown_max=settings.breaker_cooldown_max,
                ),
            ),
        )
        self._provisioner: AsyncProvisioner | None = None
        self._default_controls: tuple[Settings, Controls] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_watch: AsyncGenerator[None, None] | None = None

    def _controls(self, routing: Mapping[str, Any] | None) -> Controls:
        """The call's routing controls; those of a call that sets none are made once."""
        if routing:
            return resolve_controls(self.settings, routing, source=self._source)
        defaults = self._default_controls
        if defaults is None or defaults[0] is not self.settings:
            defaults = (self.settings, resolve_controls(self.settings, {}, source=self._source))
            self._default_controls = defaults
        return defaults[1]

    async def _on_this_loop(self) -> None:
        """Make sure the connections belong to the running event loop.

        Connections are tied to the loop that opened them. When the loop they belong to
        shuts down (the end of an ``asyncio.run()``) they are closed with it, and a call
        from a later loop opens fresh ones, so one client serves a script that runs
        several ``asyncio.run()`` in turn. Two loops running at once cannot share one.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        if self._loop is not None and self._loop.is_running():
            raise ConfigError(
                "this AsyncClient is in use on another running event loop",
                hint="give each event loop (each thread) its own AsyncClient, or use dsollama.Client",
            )
        if self._loop is not None or self._loop_watch is not None:
            for backend in self._router.backends:
                backend.reopen()
            self._router.forget_loop()
        self._loop = loop
        self._loop_watch = self._close_with_loop()
        await self._loop_watch.__anext__()

    async def _close_with_loop(self) -> AsyncGenerator[None, None]:
        # An async generator the loop finalises when it shuts down (asyncio.run() closes
        # every live one first), while it can still close our connections properly.
        try:
            yield
        finally:
            self._loop = None
            await self._router.close_connections()

    def __repr__(self) -> str:
        routes = [b.route for b in self._router.backends]
        return f"{type(self).__name__}(routes={routes!r}, policy={self.settings.policy!r})"

    @property
    def router(self) -> Router:
        return self._router

    def routes(self) -> dict[str, Any]:
        """Breaker states and load estimates (what the router currently believes)."""
        return self._router.status()

    def daemon(self) -> OllamaDaemon:
        """The first Ollama route's daemon: where provisioning and admin calls go."""
        for backend in self._router.backends:
            if isinstance(backend, OllamaDaemon):
                return backend
        raise ConfigError(
            "no Ollama route is configured",
            hint='add a [[routes]] table with preset = "ollama", or set OLLAMA_HOST',
        )


class AsyncClient(_BaseClient):
    """Drop-in for `ollama.AsyncClient`: same `chat`/`generate`/`embed` arguments and results,
    answered by the best route that can: your local daemon when it can, your other
    servers or a hosted API when it must.

        client = dsollama.AsyncClient()
        r = await client.chat("deepseek-r1:8b", [{"role": "user", "content": "hi"}])
        async for part in await client.chat("deepseek-r1:8b", msgs, stream=True): ...

    Extra per-call controls (`RoutingOptions`): ``local_only``, ``policy``,
    ``first_token_timeout``, ``gap_timeout``, ``total_timeout``, ``on_broken_stream``,
    ``hedge``, ``fallback_models`` and ``log``.
    """

    # -- the call, whole -----------------------------------------------------------------

    async def call(
        self, spec: CallSpec, routing: Mapping[str, Any] | None = None
    ) -> ChatResponse | GenerateResponse | AsyncIterator[ChatResponse | GenerateResponse]:
        """Route one call given whole (serve and the CLI use this; so do chat/generate)."""
        controls = self._controls(routing)
        await self._on_this_loop()
        build: Callable[[RoutedDelta], Any] = (
            chat_response if spec.operation == "chat" else generate_response
        )
        routed = self._router.run(spec, controls)
        if spec.stream:
            return _stream(routed, build)
        result: ChatResponse | GenerateResponse = await _single(routed, build)
        return result

    # -- chat -----------------------------------------------------------------------------

    @overload
    async def chat(
        self,
        model: str = "",
        messages: Sequence[Mapping[str, Any] | ollama.Message] | None = None,
        *,
        tools: Sequence[Any] | None = None,
        stream: Literal[False] = False,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> ChatResponse: ...

    @overload
    async def chat(
        self,
        model: str = "",
        messages: Sequence[Mapping[str, Any] | ollama.Message] | None = None,
        *,
        tools: Sequence[Any] | None = None,
        stream: Literal[True] = True,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> AsyncIterator[ChatResponse]: ...

    async def chat(
        self,
        model: str = "",
        messages: Sequence[Mapping[str, Any] | ollama.Message] | None = None,
        *,
        tools: Sequence[Any] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> ChatResponse | AsyncIterator[ChatResponse]:
        """Chat, as `ollama.AsyncClient.chat`; see the class docstring for the extras."""
        spec = chat_spec(
            model,
            messages,
            stream=stream,
            tools=tools,
            think=think,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            format=format,
            options=options,
            keep_alive=keep_alive,
        )
        result: Any = await self.call(spec, routing)
        return result  # type: ignore[no-any-return]

    # -- generate -------------------------------------------------------------------------

    @overload
    async def generate(
        self,
        model: str = "",
        prompt: str = "",
        suffix: str = "",
        *,
        system: str = "",
        template: str = "",
        context: Sequence[int] | None = None,
        stream: Literal[False] = False,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool = False,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        images: Sequence[str | bytes | ollama.Image] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> GenerateResponse: ...

    @overload
    async def generate(
        self,
        model: str = "",
        prompt: str = "",
        suffix: str = "",
        *,
        system: str = "",
        template: str = "",
        context: Sequence[int] | None = None,
        stream: Literal[True] = True,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool = False,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        images: Sequence[str | bytes | ollama.Image] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> AsyncIterator[GenerateResponse]: ...

    async def generate(
        self,
        model: str = "",
        prompt: str | None = None,
        suffix: str | None = None,
        *,
        system: str | None = None,
        template: str | None = None,
        context: Sequence[int] | None = None,
        stream: bool = False,
        think: bool | Literal["low", "medium", "high", "max"] | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        raw: bool | None = None,
        format: Literal["", "json"] | Mapping[str, Any] | None = None,
        images: Sequence[str | bytes | ollama.Image] | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> GenerateResponse | AsyncIterator[GenerateResponse]:
        """Generate, as `ollama.AsyncClient.generate`; ``suffix`` uses FIM on the hosted side."""
        spec = generate_spec(
            model,
            prompt,
            suffix,
            stream=stream,
            system=system,
            template=template,
            context=context,
            think=think,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            raw=raw,
            format=format,
            images=images,
            options=options,
            keep_alive=keep_alive,
        )
        result: Any = await self.call(spec, routing)
        return result  # type: ignore[no-any-return]

    # -- embed (private routes only: the hosted API has no embeddings) ---------------------

    async def embed(
        self,
        model: str = "",
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
        **routing: Unpack[RoutingOptions],
    ) -> EmbedResponse:
        """Embeddings from the first private route that answers (never a third party)."""
        if not model:
            chat_spec(model, None, stream=False)  # the one "model is required" error
        spec = EmbedSpec(
            model=model,
            input=input,
            truncate=truncate,
            options=dict(options)
            if isinstance(options, Mapping)
            else (options.model_dump(exclude_none=True) if options is not None else None),
            keep_alive=keep_alive,
            dimensions=dimensions,
        )
        controls = self._controls(routing)
        await self._on_this_loop()
        return await self._router.embed(spec, controls)

    # -- provisioning (official names, first Ollama route) ---------------------------------

    async def list(self) -> ollama.ListResponse:
        await self._on_this_loop()
        return await self.daemon().list()

    async def show(self, model: str) -> ollama.ShowResponse:
        await self._on_this_loop()
        return await self.daemon().show(model)

    async def ps(self) -> ollama.ProcessResponse:
        await self._on_this_loop()
        return await self.daemon().ps()

    async def delete(self, model: str) -> ollama.StatusResponse:
        await self._on_this_loop()
        return await self.daemon().delete(model)

    async def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        await self._on_this_loop()
        return await self.daemon().copy(source, destination)

    async def pull(
        self, model: str, *, insecure: bool = False, stream: bool = False
    ) -> ollama.ProgressResponse | AsyncIterator[ollama.ProgressResponse]:
        """As `ollama.AsyncClient.pull`; see `pull_events` for typed progress."""
        await self._on_this_loop()
        daemon = self.daemon()
        if not stream:
            return await daemon.pull(model, insecure=insecure)
        return _progress(daemon, "pull", model, insecure=insecure)

    async def create(
        self,
        model: str,
        quantize: str | None = None,
        from_: str | None = None,
        files: Mapping[str, str] | None = None,
        adapters: Mapping[str, str] | None = None,
        template: str | None = None,
        license: str | builtins.list[str] | None = None,
        system: str | None = None,
        parameters: Mapping[str, Any] | ollama.Options | None = None,
        messages: Sequence[Mapping[str, Any] | ollama.Message] | None = None,
        *,
        stream: bool = False,
    ) -> ollama.ProgressResponse | AsyncIterator[ollama.ProgressResponse]:
        """As `ollama.AsyncClient.create` (structured fields); see `create_from_modelfile`."""
        fields: dict[str, Any] = {
            "quantize": quantize,
            "from_": from_,
            "files": files,
            "adapters": adapters,
            "template": template,
            "license": license,
            "system": system,
            "parameters": parameters,
            "messages": messages,
        }
        await self._on_this_loop()
        daemon = self.daemon()
        if not stream:
            return await daemon.create(model, **fields)
        return _progress(daemon, "create", model, **fields)

    def provisioner(self) -> AsyncProvisioner:
        """The provisioning engine for the first Ollama route (shares its daemon)."""
        if self._provisioner is None:
            from ._provision import AsyncProvisioner

            self._provisioner = AsyncProvisioner(
                daemon=self.daemon(), settings=self.settings, catalogue=self.catalogue
            )
        return self._provisioner

    def provision(
        self, models: Sequence[str] | None = None, modelfiles_dir: str | PathLike[str] | None = None
    ) -> AsyncIterator[ProgressEvent]:
        """Everything `dsollama pull` does, idempotently: the recommended model plus every
        Modelfile (or just ``models``), as typed progress events."""
        return self.provisioner().provision(models, modelfiles_dir)

    def pull_events(self, model: str) -> AsyncIterator[ProgressEvent]:
        """Pull one model, as typed progress events; a stream not ending in success raises."""
        return self.provisioner().pull(model)

    def create_from_modelfile(
        self, name: str, modelfile: Modelfile | str | PathLike[str], *, quantize: str | None = None
    ) -> AsyncIterator[ProgressEvent]:
        """Create ``name`` from a Modelfile (blobs first), as typed progress events."""
        return self.provisioner().create(name, modelfile, quantize=quantize)

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._loop_watch is not None and self._loop is asyncio.get_running_loop():
            watch, self._loop_watch = self._loop_watch, None
            await watch.aclose()  # closes the connections, on the loop they belong to
            return
        await self._router.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _progress(
    daemon: OllamaDaemon, op: Literal["pull", "create"], model: str, **kwargs: Any
) -> AsyncIterator[ollama.ProgressResponse]:
    """The official progress stream, with an error line raised as the daemon's error."""
    try:
        async for part in daemon.progress(op, model, **kwargs):
            yield part
    except ollama.ResponseError as exc:
        raise daemon.error(exc, model=model) from exc


async def _single(routed: AsyncIterator[RoutedDelta], build: Callable[[RoutedDelta], T]) -> T:
    result = None
    async for item in routed:
        result = item
    if result is None:  # pragma: no cover - the router always yields a final delta or raises
        raise DsollamaError("the router ended without an answer")
    return build(result)


async def _stream(
    routed: AsyncIterator[RoutedDelta], build: Callable[[RoutedDelta], T]
) -> AsyncIterator[T]:
    try:
        async for item in routed:
            yield build(item)
    finally:
        aclose = getattr(routed, "aclose", None)
        if aclose is not None:
            await aclose()
