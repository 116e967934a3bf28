"""`AsyncClient`: a drop-in for `ollama.AsyncClient` whose calls get answered.

``chat`` and ``generate`` take the official client's arguments and return its types
(subclassed, with `served_by`, `attempts`, … added), routed by `_routing.router`.
Provisioning methods keep the official names and go to the first local daemon; the
`provision`/`pull_events`/`create_from_modelfile` variants yield typed `ProgressEvent`s.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import ollama

from ._backends import CallSpec
from ._backends.hosted import HostedBackend
from ._backends.local import LocalBackend
from ._catalogue import Catalogue, load_catalogue
from ._config import Policy, Settings, load_settings
from ._exceptions import AllRoutesFailedError, BadRequestError, DsollamaError
from ._results import chat_response, generate_response
from ._routing.router import Router
from ._routing.shapes import CallSink, Controls, RoutedDelta
from ._types import Attempt, ChatResponse, EmbedResponse, GenerateResponse, ServedBy
from ._wire.local import LOCAL_ERRORS, classify_local_error

if TYPE_CHECKING:
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
}


class _BaseClient:
    """Everything that does no I/O: settings, backends, routing controls, result shapes."""

    def __init__(
        self,
        host: str | None = None,
        *,
        follow_redirects: bool = True,
        timeout: Any = None,
        headers: Mapping[str, str] | None = None,
        settings: Settings | None = None,
        catalogue: Catalogue | None = None,
        sinks: Sequence[CallSink] = (),
        source: str = "library",
        hosted_transport: Any = None,
        **kwargs: Any,
    ) -> None:
        overrides = {k: v for k, v in kwargs.items() if k in Settings.model_fields}
        httpx_kwargs = {k: v for k, v in kwargs.items() if k not in overrides}
        unknown = set(httpx_kwargs) - _HTTPX_PASSTHROUGH
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
        httpx_kwargs.setdefault("follow_redirects", follow_redirects)
        self._local = [
            LocalBackend(h, settings, self.catalogue, headers=headers, httpx_kwargs=httpx_kwargs)
            for h in settings.ollama_hosts
        ]
        self._hosted = (
            HostedBackend(settings, self.catalogue, transport=hosted_transport)
            if settings.api_key()
            else None
        )
        all_sinks: list[CallSink] = list(sinks)
        if settings.log:
            from ._calllog import open_call_log

            call_log = open_call_log(settings)
            if call_log is not None:
                all_sinks.append(call_log)
        self._source = source
        self._router = Router(
            settings, self.catalogue, local=self._local, hosted=self._hosted, sinks=all_sinks
        )
        self._provisioner: AsyncProvisioner | None = None

    def __repr__(self) -> str:
        hosted = self._hosted.endpoint if self._hosted is not None else None
        return f"{type(self).__name__}(hosts={list(self.settings.ollama_hosts)!r}, hosted={hosted!r}, policy={self.settings.policy!r})"

    @property
    def router(self) -> Router:
        return self._router

    def routes(self) -> dict[str, Any]:
        """Breaker states and local load estimates (what the router currently believes)."""
        return self._router.status()

    def _controls(
        self,
        *,
        local_only: bool | None,
        policy: Policy | None,
        first_token_timeout: float | None,
        gap_timeout: float | None,
        total_timeout: float | None,
        continue_stream: bool | None,
        hedge: bool | None,
        log: bool | None,
    ) -> Controls:
        s = self.settings
        return Controls(
            policy=policy or s.policy,
            local_only=bool(local_only),
            first_token_timeout=first_token_timeout or s.first_token_timeout,
            gap_timeout=gap_timeout or s.gap_timeout,
            total_timeout=total_timeout or s.total_timeout,
            continue_stream=s.continue_streams if continue_stream is None else continue_stream,
            hedge=s.hedge if hedge is None else hedge,
            admission=s.admission,
            log=True if log is None else log,
            source=self._source,
        )


def _options(options: Mapping[str, Any] | ollama.Options | None) -> dict[str, Any] | None:
    if options is None:
        return None
    if isinstance(options, ollama.Options):
        return options.model_dump(exclude_none=True)
    return dict(options)


def _check_model(model: str) -> None:
    if not model:
        raise BadRequestError(
            "model is required", hint="pass a model name, e.g. model='deepseek-r1:8b'"
        )


class AsyncClient(_BaseClient):
    """Drop-in for `ollama.AsyncClient`: same `chat`/`generate`/`embed` arguments and results,
    answered locally when the daemon can and by the hosted API when it must.

        client = dsollama.AsyncClient()
        r = await client.chat("deepseek-r1:8b", [{"role": "user", "content": "hi"}])
        async for part in await client.chat("deepseek-r1:8b", msgs, stream=True): ...

    Extra per-call controls: ``local_only`` (never leave the machine), ``policy``,
    ``first_token_timeout``, ``gap_timeout``, ``total_timeout``, ``continue_stream``,
    ``hedge`` and ``log``.
    """

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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
    ) -> ChatResponse | AsyncIterator[ChatResponse]:
        """Chat, as `ollama.AsyncClient.chat`; see the class docstring for the extras."""
        _check_model(model)
        spec = CallSpec(
            operation="chat",
            model=model,
            stream=stream,
            messages=list(messages or []),
            tools=list(tools) if tools else None,
            think=think,
            format=format or None,
            options=_options(options),
            keep_alive=keep_alive,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )
        controls = self._controls(
            local_only=local_only,
            policy=policy,
            first_token_timeout=first_token_timeout,
            gap_timeout=gap_timeout,
            total_timeout=total_timeout,
            continue_stream=continue_stream,
            hedge=hedge,
            log=log,
        )
        routed = self._router.run(spec, controls)
        if stream:
            return _stream(routed, chat_response)
        return await _single(routed, chat_response)

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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
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
        local_only: bool | None = None,
        policy: Policy | None = None,
        first_token_timeout: float | None = None,
        gap_timeout: float | None = None,
        total_timeout: float | None = None,
        continue_stream: bool | None = None,
        hedge: bool | None = None,
        log: bool | None = None,
    ) -> GenerateResponse | AsyncIterator[GenerateResponse]:
        """Generate, as `ollama.AsyncClient.generate`; ``suffix`` uses FIM on the hosted side."""
        _check_model(model)
        spec = CallSpec(
            operation="generate",
            model=model,
            stream=stream,
            prompt=prompt,
            suffix=suffix or None,
            system=system or None,
            template=template or None,
            context=context,
            raw=raw,
            images=images,
            think=think,
            format=format or None,
            options=_options(options),
            keep_alive=keep_alive,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
        )
        controls = self._controls(
            local_only=local_only,
            policy=policy,
            first_token_timeout=first_token_timeout,
            gap_timeout=gap_timeout,
            total_timeout=total_timeout,
            continue_stream=continue_stream,
            hedge=hedge,
            log=log,
        )
        routed = self._router.run(spec, controls)
        if stream:
            return _stream(routed, generate_response)
        return await _single(routed, generate_response)

    # -- embed (local only: the hosted API has no embeddings) ------------------------------

    async def embed(
        self,
        model: str = "",
        input: str | Sequence[str] = "",
        truncate: bool | None = None,
        options: Mapping[str, Any] | ollama.Options | None = None,
        keep_alive: float | str | None = None,
        dimensions: int | None = None,
    ) -> EmbedResponse:
        """Embeddings from the first local daemon that answers (never hosted)."""
        _check_model(model)
        attempts: list[Attempt] = []
        last: BaseException | None = None
        for backend in self._local:
            breaker = self._router.breaker(backend.route)
            if not breaker.allow():
                attempts.append(
                    Attempt(
                        route=backend.route,
                        kind="local",
                        model=model,
                        outcome="skipped",
                        detail="breaker open",
                    )
                )
                continue
            started, wall = time.monotonic(), time.time()
            try:
                result = await backend.client.embed(
                    model=model,
                    input=input,
                    truncate=truncate,
                    options=_options(options),
                    keep_alive=keep_alive,
                    dimensions=dimensions,
                )
            except LOCAL_ERRORS as exc:
                error = classify_local_error(
                    exc, host=backend.host, model=model, route=backend.route
                )
                breaker.record_failure(
                    str(error), open_now=type(error).__name__ == "DaemonUnreachableError"
                )
                attempts.append(
                    Attempt(
                        route=backend.route,
                        kind="local",
                        model=model,
                        outcome="fallback",
                        error=type(error).__name__,
                        status_code=error.status_code,
                        detail=str(error),
                        started_at=wall,
                        duration_s=time.monotonic() - started,
                    )
                )
                last = error
                if (
                    error.status_code is not None
                    and 400 <= error.status_code < 500
                    and error.status_code != 404
                ):
                    raise error from exc
                continue
            breaker.record_success()
            served = ServedBy(
                kind="local", route=backend.route, endpoint=backend.endpoint, model=model
            )
            attempts.append(
                Attempt(
                    route=backend.route,
                    kind="local",
                    model=model,
                    outcome="ok",
                    started_at=wall,
                    duration_s=time.monotonic() - started,
                )
            )
            return EmbedResponse(
                **result.model_dump(), served_by=served, attempts=attempts, cost_usd=0.0
            )
        raise AllRoutesFailedError(
            "no local daemon could embed (the hosted API has no embeddings)",
            attempts=attempts,
            hint=getattr(last, "hint", None),
            last_error=last,
        )

    # -- provisioning (official names, first local daemon) ---------------------------------

    def _first_local(self) -> LocalBackend:
        return self._local[0]

    async def _official(self, op: str, *args: Any, model: str | None = None, **kwargs: Any) -> Any:
        backend = self._first_local()
        method = getattr(backend.client, op)
        try:
            return await method(*args, **kwargs)
        except LOCAL_ERRORS as exc:
            raise classify_local_error(
                exc, host=backend.host, model=model, route=backend.route
            ) from exc

    async def list(self) -> ollama.ListResponse:
        return await self._official("list")  # type: ignore[no-any-return]

    async def show(self, model: str) -> ollama.ShowResponse:
        return await self._official("show", model, model=model)  # type: ignore[no-any-return]

    async def ps(self) -> ollama.ProcessResponse:
        return await self._official("ps")  # type: ignore[no-any-return]

    async def delete(self, model: str) -> ollama.StatusResponse:
        return await self._official("delete", model, model=model)  # type: ignore[no-any-return]

    async def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        return await self._official("copy", source, destination, model=source)  # type: ignore[no-any-return]

    async def pull(
        self, model: str, *, insecure: bool = False, stream: bool = False
    ) -> ollama.ProgressResponse | AsyncIterator[ollama.ProgressResponse]:
        """As `ollama.AsyncClient.pull`; see `pull_events` for typed progress."""
        if not stream:
            return await self._official("pull", model, insecure=insecure, stream=False, model=model)  # type: ignore[no-any-return]
        return self._official_stream("pull", model, insecure=insecure, model_name=model)

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
        kwargs: dict[str, Any] = {
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
        if not stream:
            return await self._official("create", model, stream=False, model=model, **kwargs)  # type: ignore[no-any-return]
        return self._official_stream("create", model, model_name=model, **kwargs)

    async def _official_stream(
        self, op: str, *args: Any, model_name: str, **kwargs: Any
    ) -> AsyncIterator[ollama.ProgressResponse]:
        backend = self._first_local()
        try:
            iterator = await getattr(backend.client, op)(*args, stream=True, **kwargs)
            async for part in iterator:
                yield part
        except LOCAL_ERRORS as exc:
            raise classify_local_error(
                exc, host=backend.host, model=model_name, route=backend.route
            ) from exc

    def provisioner(self) -> AsyncProvisioner:
        """The provisioning engine for the first local daemon (shared by this client)."""
        if self._provisioner is None:
            from ._provision import AsyncProvisioner

            self._provisioner = AsyncProvisioner(
                self._first_local().host, settings=self.settings, catalogue=self.catalogue
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
        for backend in self._local:
            await backend.aclose()
        if self._hosted is not None:
            await self._hosted.aclose()
        if self._provisioner is not None:
            await self._provisioner.close()

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
