"""`Client`: the synchronous twin of `AsyncClient`, a drop-in for `ollama.Client`.

It runs the one async implementation on dsollama's private event-loop thread (`_loop`),
so sync and async behave identically and a sync call made inside a running event loop
(a notebook) works. Streaming calls return plain iterators; closing one (or Ctrl-C)
cancels the upstream request.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import weakref
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

import ollama

from . import _loop
from ._backends import CallSpec
from ._call import RoutingOptions, chat_spec, generate_spec
from ._client import AsyncClient
from ._types import ChatResponse, EmbedResponse, GenerateResponse

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._backends.daemon import OllamaDaemon
    from ._modelfile import Modelfile
    from ._provision import ProgressEvent
    from ._routing.router import Router

__all__ = ["Client"]


class Client:
    """Drop-in for `ollama.Client`: same `chat`/`generate`/`embed` arguments and results,
    answered locally when the daemon can and by the hosted API when it must.

        client = dsollama.Client()
        r = client.chat("deepseek-r1:8b", [{"role": "user", "content": "hi"}])
        print(r.message.content, r.served_by)
        for part in client.chat("deepseek-r1:8b", msgs, stream=True): ...

    Takes the same constructor arguments as `AsyncClient` (and `ollama.Client`).
    """

    def __init__(self, host: str | None = None, **kwargs: Any) -> None:
        self._async = AsyncClient(host, **kwargs)
        self.settings = self._async.settings
        self.catalogue = self._async.catalogue
        # Its connections live on the private loop, where nothing else would close them:
        # a client dropped without close() still releases them when collected.
        self._finalizer = weakref.finalize(self, _close_later, self._async)

    def __repr__(self) -> str:
        return repr(self._async).replace("AsyncClient", "Client", 1)

    @property
    def router(self) -> Router:
        return self._async.router

    def routes(self) -> dict[str, Any]:
        return self._async.routes()

    def daemon(self) -> OllamaDaemon:
        return self._async.daemon()

    # -- chat -----------------------------------------------------------------------------

    @overload
    def chat(
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
    def chat(
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
    ) -> Iterator[ChatResponse]: ...

    def chat(
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
    ) -> ChatResponse | Iterator[ChatResponse]:
        """Chat, as `ollama.Client.chat`; see `AsyncClient` for the extra controls."""
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
        result: ChatResponse | Iterator[ChatResponse] = self._call(spec, routing)
        return result

    # -- generate -------------------------------------------------------------------------

    @overload
    def generate(
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
    def generate(
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
    ) -> Iterator[GenerateResponse]: ...

    def generate(
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
    ) -> GenerateResponse | Iterator[GenerateResponse]:
        """Generate, as `ollama.Client.generate`; ``suffix`` uses FIM on the hosted side."""
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
        result: GenerateResponse | Iterator[GenerateResponse] = self._call(spec, routing)
        return result

    def _call(self, spec: CallSpec, routing: Mapping[str, Any]) -> Any:
        call: Any = self._async.call(spec, routing)
        return _loop.iterate(call) if spec.stream else _loop.run(call)

    # -- embed ----------------------------------------------------------------------------

    def embed(
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
        return _loop.run(
            self._async.embed(model, input, truncate, options, keep_alive, dimensions, **routing)
        )

    # -- provisioning ---------------------------------------------------------------------

    def list(self) -> ollama.ListResponse:
        return _loop.run(self._async.list())

    def show(self, model: str) -> ollama.ShowResponse:
        return _loop.run(self._async.show(model))

    def ps(self) -> ollama.ProcessResponse:
        return _loop.run(self._async.ps())

    def delete(self, model: str) -> ollama.StatusResponse:
        return _loop.run(self._async.delete(model))

    def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        return _loop.run(self._async.copy(source, destination))

    def pull(
        self, model: str, *, insecure: bool = False, stream: bool = False
    ) -> ollama.ProgressResponse | Iterator[ollama.ProgressResponse]:
        """As `ollama.Client.pull`; see `pull_events` for typed progress."""
        call: Any = self._async.pull(model, insecure=insecure, stream=stream)
        return _loop.iterate(call) if stream else _loop.run(call)

    def create(
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
    ) -> ollama.ProgressResponse | Iterator[ollama.ProgressResponse]:
        """As `ollama.Client.create` (structured fields); see `create_from_modelfile`."""
        call: Any = self._async.create(
            model,
            quantize,
            from_,
            files,
            adapters,
            template,
            license,
            system,
            parameters,
            messages,
            stream=stream,
        )
        return _loop.iterate(call) if stream else _loop.run(call)

    def provision(
        self, models: Sequence[str] | None = None, modelfiles_dir: str | PathLike[str] | None = None
    ) -> Iterator[ProgressEvent]:
        """Everything `dsollama pull` does, idempotently, as typed progress events."""
        return _loop.iterate(_ready(self._async.provision(models, modelfiles_dir)))

    def pull_events(self, model: str) -> Iterator[ProgressEvent]:
        """Pull one model, as typed progress events."""
        return _loop.iterate(_ready(self._async.pull_events(model)))

    def create_from_modelfile(
        self, name: str, modelfile: Modelfile | str | PathLike[str], *, quantize: str | None = None
    ) -> Iterator[ProgressEvent]:
        """Create ``name`` from a Modelfile (blobs first), as typed progress events."""
        return _loop.iterate(
            _ready(self._async.create_from_modelfile(name, modelfile, quantize=quantize))
        )

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._finalizer.detach() is not None:
            _loop.run(self._async.aclose())

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _close_later(client: AsyncClient) -> None:
    with contextlib.suppress(RuntimeError):  # the loop (or interpreter) is already gone
        asyncio.run_coroutine_threadsafe(client.aclose(), _loop.loop())


async def _ready(value: Any) -> Any:
    """Wrap an already-made async iterator so `_loop.iterate` can await it."""
    return value
