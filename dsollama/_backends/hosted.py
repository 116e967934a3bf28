"""The hosted route: any OpenAI-format endpoint over httpx (DeepSeek by default).

The only place that knows the hosted base URL and holds the API key. The key is sent
only here, only over HTTPS (plain HTTP only to a loopback address, as test doubles
use), and never appears in a repr, a log line or an exception.

Requests always stream, so the router can tell keep-alive filler (DeepSeek's way of
holding a queued request open, reference §4) from a first token. They are spelt in the
route's dialect: DeepSeek's (`_wire.hosted_request`) or plain OpenAI's
(`_wire.openai_request`, with inline ``<think>`` split out of the answers). Where the
server publishes its own queue (vLLM, llama-server, SGLang), `server_queue` reads it
through a `LoadSampler`: at most once per ``load_ttl``, shared by concurrent callers.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal

import httpx

from .._catalogue import Catalogue
from .._config import Settings
from .._delta import Delta
from .._exceptions import (
    BackendTimeoutError,
    DaemonUnreachableError,
    IncompleteResponseError,
    InsecureEndpointError,
    MissingAPIKeyError,
    ServerError,
    UnsupportedRequestError,
    redact,
)
from .._hosts import key_may_travel_to
from .._routes import RouteConfig
from .._state import ServerQueue
from .._types import RouteKind
from .._wire.hosted_errors import classify_hosted_error
from .._wire.hosted_request import (
    HostedRequest,
    build_chat_request,
    build_continuation_request,
    build_generate_request,
)
from .._wire.hosted_response import (
    HostedStreamDecoder,
    answer_framing,
    decode_hosted_response,
    parse_hosted_body,
)
from .._wire.openai_request import (
    build_openai_chat_request,
    build_openai_continuation_request,
    build_openai_generate_request,
)
from .._wire.reasoning import ThinkSplitter
from .._wire.schema import validate_json_text
from .._wire.sse import Comment, Data, Done, SSEParser
from . import CallSpec, EmbedSpec, ModelState, StreamStats, http_limits, http_timeout
from .loadsignal import (
    METRIC_NAMES,
    LoadSampler,
    SignalUnavailable,
    queue_from_slots,
    queues_from_metrics,
    total_slots,
)

__all__ = ["HostedBackend"]

log = logging.getLogger("dsollama")

# A server's slot count changes only when it restarts: read it rarely.
_PROPS_TTL = 60.0
# /metrics of a busy vLLM with many models is tens of kilobytes; anything past this is
# not a metrics page.
_MAX_SCRAPE_BYTES = 4 * 1024 * 1024
# llama-server without --metrics (501), or a proxy that does not pass /metrics on (404).
_METRICS_OFF = (404, 501)

Queues = dict[str | None, ServerQueue]


def _origin(url: str) -> tuple[str, str, int | None]:
    split = urllib.parse.urlsplit(url)
    return split.scheme.lower(), (split.hostname or "").lower(), split.port


class HostedBackend:
    """One OpenAI-format route (see `_routes.RouteConfig`); the key goes only here."""

    api: Literal["openai"] = "openai"

    def __init__(
        self,
        config: RouteConfig,
        settings: Settings,
        catalogue: Catalogue,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        key = config.key()
        if config.key_env and not key:
            raise MissingAPIKeyError(config.key_env)
        base = config.base_url.rstrip("/")
        if key and not key_may_travel_to(base):
            raise InsecureEndpointError(base)
        self.config = config
        self.kind: RouteKind = config.kind
        self.capabilities = config.capabilities
        self._key = key or ""
        self._settings = settings
        self._catalogue = catalogue
        self.endpoint = base
        self.route = config.name
        # /beta features (prefix completion, FIM) hang off the API root, not off /v1.
        self._root = base.removesuffix("/v1").removesuffix("/beta")
        self._base = base
        timeout = http_timeout(settings)
        headers = {**config.headers, "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client_options: dict[str, Any] = {
            "timeout": timeout,
            "headers": headers,
            "transport": transport,
            "limits": http_limits(),
            "trust_env": False,  # never route the key through an ambient proxy setting
            # A redirect could lead the key to another origin or to plain HTTP: a 3xx is
            # an error (RedirectRefusedError) that names where it pointed.
            "follow_redirects": False,
        }
        self._http = httpx.AsyncClient(**self._client_options)
        self._metrics_url = config.metrics_url or self._root + "/metrics"
        self._told_slots = False
        self._load: LoadSampler[Queues] | None = None
        self._props: LoadSampler[int] | None = None
        if config.load_signal != "none":
            self._load = LoadSampler(
                self._read_load,
                ttl=config.load_ttl,
                timeout=config.load_timeout,
                route=self.route,
                what="load signal",
            )
        if config.load_signal == "llamacpp":
            self._props = LoadSampler(
                self._read_total_slots,
                ttl=_PROPS_TTL,
                timeout=config.load_timeout,
                route=self.route,
                what="slot count (/props)",
            )

    def __repr__(self) -> str:
        return f"HostedBackend({self.endpoint!r})"

    def _url(self, path: str) -> str:
        if path.startswith("/beta/"):
            return self._root + path
        return self._base + path

    def build(self, spec: CallSpec, *, model: str, thinking: bool | None) -> HostedRequest:
        if self.config.dialect != "deepseek":
            return self._build_openai(spec, model=model)
        thinking_default = bool(thinking) if thinking is not None else False
        if spec.operation == "chat":
            return build_chat_request(
                spec.messages,
                hosted_model=model,
                thinking_default=thinking_default,
                tools=spec.tools,
                think=spec.think,  # type: ignore[arg-type]
                format=spec.format,
                options=spec.options,
                stream=True,
                logprobs=spec.logprobs,
                top_logprobs=spec.top_logprobs,
            )
        return build_generate_request(
            spec.prompt,
            spec.suffix or None,
            hosted_model=model,
            thinking_default=thinking_default,
            system=spec.system,
            template=spec.template,
            context=spec.context,
            raw=spec.raw,
            images=spec.images,
            think=spec.think,  # type: ignore[arg-type]
            format=spec.format,
            options=spec.options,
            stream=True,
            logprobs=spec.logprobs,
            top_logprobs=spec.top_logprobs,
        )

    def _build_openai(self, spec: CallSpec, *, model: str) -> HostedRequest:
        if spec.operation == "chat":
            return build_openai_chat_request(
                spec.messages,
                route=self.config,
                model=model,
                tools=spec.tools,
                think=spec.think,  # type: ignore[arg-type]
                format=spec.format,
                options=spec.options,
                stream=True,
                logprobs=spec.logprobs,
                top_logprobs=spec.top_logprobs,
            )
        return build_openai_generate_request(
            spec.prompt,
            spec.suffix or None,
            route=self.config,
            model=model,
            system=spec.system,
            template=spec.template,
            context=spec.context,
            raw=spec.raw,
            images=spec.images,
            think=spec.think,  # type: ignore[arg-type]
            format=spec.format,
            options=spec.options,
            stream=True,
            logprobs=spec.logprobs,
            top_logprobs=spec.top_logprobs,
        )

    def _splitter(self, request: HostedRequest) -> ThinkSplitter | None:
        """How inline ``<think>`` is split out of this request's answer, if at all.

        DeepSeek's API always separates reasoning (and its answers stay byte for byte
        what it sent); an OpenAI-format server may not (vLLM without a reasoning parser,
        llama-server with ``--reasoning-format none``). A continuation past the
        reasoning gets answer text only.
        """
        if self.config.dialect == "deepseek" or request.continues_answer:
            return None
        return ThinkSplitter(thinking_model=self.capabilities.reasoning_field == "inline")

    async def stream(
        self, spec: CallSpec, *, model: str, thinking: bool | None, stats: StreamStats
    ) -> AsyncIterator[Delta]:
        request = self.build(spec, model=model, thinking=thinking)
        async for delta in self._send(request, stats):
            yield delta

    async def continue_stream(
        self,
        spec: CallSpec,
        *,
        model: str,
        thinking: bool | None,
        stats: StreamStats,
        partial_content: str,
        partial_thinking: str,
    ) -> AsyncIterator[Delta]:
        """Continue a broken answer from its partial text: DeepSeek's prefix completion, or
        a final assistant message on an OpenAI-format server that continues one."""
        if not self.capabilities.continuation:
            raise UnsupportedRequestError(
                f"{self.route} cannot continue a broken answer", route=self.route
            )
        original = self.build(spec, model=model, thinking=thinking)
        if self.config.dialect == "deepseek":
            request = build_continuation_request(original, partial_content, partial_thinking)
        else:
            request = build_openai_continuation_request(
                original, partial_content, partial_thinking, route=self.config
            )
        async for delta in self._send(request, stats):
            yield delta

    async def _send(self, request: HostedRequest, stats: StreamStats) -> AsyncIterator[Delta]:
        if request.unsupported:
            stats.extra.setdefault("unsupported", []).extend(request.unsupported)
        url = self._url(request.path)
        decoder = HostedStreamDecoder(route=self.route, splitter=self._splitter(request))
        parser = SSEParser(route=self.route, secrets=(self._key,))
        content: list[str] = []
        try:
            async with self._http.stream("POST", url, json=request.body) as response:
                if response.status_code >= 300:
                    body = await response.aread()
                    raise classify_hosted_error(
                        response.status_code,
                        body,
                        response.headers,
                        route=self.route,
                        hosted_model=str(request.body.get("model")),
                        secrets=(self._key,),
                        catalogue=self._catalogue,
                    )
                framing = answer_framing(response.headers.get("content-type"), route=self.route)
                if framing == "json":
                    # A server or proxy that ignored stream=true: one whole completion,
                    # possibly after blank-line filler. Decoded, never read as a stream
                    # with no events (which would end as an empty "success").
                    body = await response.aread()
                    stats.filler += body[: len(body) - len(body.lstrip())].count(b"\n")
                    whole = parse_hosted_body(body, route=self.route, secrets=(self._key,))
                    deltas = decode_hosted_response(
                        whole, route=self.route, splitter=self._splitter(request)
                    )
                    for delta in self._checked(request, content, deltas):
                        yield delta
                    return
                ended = False
                async for line in response.aiter_lines():
                    if ended:
                        # Only the end of the body follows `[DONE]`: read it, so the
                        # connection goes back to the pool instead of being dropped (a
                        # new connection per call costs more than the rest of the call).
                        continue
                    event = parser.feed_line(line)
                    if event is None:
                        if not line.strip() and parser.data_events == 0:
                            stats.filler += 1  # blank-line filler (non-stream style)
                        continue
                    if isinstance(event, Comment):
                        stats.filler += 1
                        continue
                    if isinstance(event, Done):
                        ended = True
                        finished = decoder.finish(keepalives=parser.keepalives_before_data)
                        for delta in self._checked(request, content, finished):
                            yield delta
                        continue
                    if isinstance(event, Data):
                        for delta in self._checked(request, content, decoder.feed(event.payload)):
                            yield delta
                if not ended:
                    finished = decoder.finish(keepalives=parser.keepalives_before_data)
                    for delta in self._checked(request, content, finished):
                        yield delta
        except httpx.ConnectError as exc:
            raise DaemonUnreachableError(
                self.endpoint, route=self.route, detail=redact(str(exc), (self._key,))
            ) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(
                f"{self.route}: {type(exc).__name__}",
                phase="connect" if isinstance(exc, httpx.ConnectTimeout) else "gap",
                route=self.route,
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise IncompleteResponseError(
                f"the connection to {self.endpoint} broke: {redact(str(exc), (self._key,))}",
                route=self.route,
                partial_text="".join(content),
            ) from exc
        except httpx.HTTPError as exc:
            raise ServerError(
                f"{self.route}: {type(exc).__name__}: {redact(str(exc), (self._key,))}",
                route=self.route,
            ) from exc

    def _checked(
        self, request: HostedRequest, content: list[str], deltas: list[Delta]
    ) -> Iterator[Delta]:
        """The deltas, noting their text in ``content`` and checking the schema at the end."""
        for delta in deltas:
            content.append(delta.content)
            if delta.done:
                self._check_schema(request, "".join(content))
            yield delta

    def _check_schema(self, request: HostedRequest, text: str) -> None:
        # The hosted API has JSON mode but no schema enforcement (reference §5.3), so a
        # schema-shaped answer is checked here; a mismatch is a retryable failure.
        if request.schema is None:
            return
        problems = validate_json_text(text, request.schema)
        if problems:
            raise ServerError(
                "the hosted answer does not match the requested JSON schema: "
                + "; ".join(problems[:3]),
                route=self.route,
            )

    async def balance(self) -> Mapping[str, Any]:
        """``GET /user/balance`` (a cheap way to check the key)."""
        response = await self._http.get(self._root + "/user/balance")
        if response.status_code >= 300:
            raise classify_hosted_error(
                response.status_code,
                response.content,
                response.headers,
                route=self.route,
                secrets=(self._key,),
            )
        data: Mapping[str, Any] = response.json()
        return data

    # -- what the router asks ----------------------------------------------------------------

    async def model_state(self, model: str) -> ModelState | None:
        return None  # an OpenAI-format server keeps its models loaded, or does not say

    async def warm(self, model: str) -> float | None:
        return None

    async def context_window(self, model: str) -> int | None:
        if model in self.config.context:
            return self.config.context[model]
        hosted = self._catalogue.hosted.get(model)
        return hosted.context_length if hosted is not None else None

    async def server_queue(self, model: str) -> ServerQueue | None:
        """The server's own count of running and waiting requests for ``model`` (the
        route's id for it), read at most once per ``load_ttl``; None when the route has
        no load signal, the server gives no reading, or it counts other models only."""
        if self._load is None:
            return None
        queues = await self._load.get()
        if not queues:
            return None
        return queues.get(model, queues.get(None))

    async def server_capacity(self) -> int | None:
        """Requests the server runs at once: the route's ``capacity``, else llama-server's
        ``total_slots`` (``/props``); None when neither says."""
        if self.config.capacity is not None:
            return self.config.capacity
        if self._props is None:
            return None
        return await self._props.get()

    # -- load signal -------------------------------------------------------------------------

    async def _read_load(self) -> Queues:
        names = METRIC_NAMES[self.config.load_signal]
        status, text = await self._scrape(self._metrics_url, accept="text/plain")
        if status == 200:
            queues = queues_from_metrics(text, names)
            if not queues:
                raise SignalUnavailable(f"/metrics has no {names.running} and {names.waiting}")
            return queues
        if status not in _METRICS_OFF or self.config.load_signal != "llamacpp":
            raise SignalUnavailable(f"/metrics answered {status}")
        # llama-server started without --metrics: /slots still tells which slots are busy.
        # /metrics is asked first every time, so a restart with --metrics is noticed.
        if not self._told_slots:
            self._told_slots = True
            log.info("%s: /metrics is off; reading busy slots from /slots", self.route)
        status, text = await self._scrape(self._root + "/slots", accept="application/json")
        if status != 200:
            raise SignalUnavailable(f"/slots answered {status} and /metrics is off")
        queue = queue_from_slots(self._json(text, "/slots"))
        if queue is None:
            raise SignalUnavailable("/slots is not a list of slots")
        return {None: queue}

    async def _read_total_slots(self) -> int:
        status, text = await self._scrape(self._root + "/props", accept="application/json")
        if status != 200:
            raise SignalUnavailable(f"/props answered {status}")
        slots = total_slots(self._json(text, "/props"))
        if slots is None:
            raise SignalUnavailable("/props has no total_slots")
        return slots

    @staticmethod
    def _json(text: str, where: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise SignalUnavailable(f"{where} is not JSON") from None

    async def _scrape(self, url: str, *, accept: str) -> tuple[int, str]:
        """GET a monitoring URL: its status, and its text when 200 (bounded in size).

        The key goes along only to the route's own origin: a ``metrics_url`` elsewhere
        (a Prometheus proxy, say) is read without it.
        """
        request = self._http.build_request(
            "GET", url, headers={"Accept": accept}, timeout=self.config.load_timeout
        )
        if _origin(url) != _origin(self._base):
            request.headers.pop("Authorization", None)
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code != 200:
                return response.status_code, ""
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_SCRAPE_BYTES:
                    raise SignalUnavailable(f"the answer is over {_MAX_SCRAPE_BYTES} bytes")
            return 200, body.decode("utf-8", errors="replace")
        finally:
            await response.aclose()

    async def embed(self, spec: EmbedSpec, *, model: str) -> dict[str, Any]:
        raise UnsupportedRequestError(f"{self.route} has no embeddings", route=self.route)

    def reopen(self) -> None:
        """Fresh connections for a new event loop (the old loop's were closed with it)."""
        self._http = httpx.AsyncClient(**self._client_options)

    async def aclose(self) -> None:
        await self._http.aclose()
