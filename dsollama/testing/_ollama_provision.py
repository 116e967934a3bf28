"""Provisioning routes of the Ollama double: tags, show, ps, pull, push, create, copy,
delete and blobs.

Pull and create stream progress like the daemon: a pull always writes
``pulling manifest`` first, so an unknown model is an error *line* under HTTP 200 when
streaming, and a 500 with ``stream: false`` (``waitForStream`` maps the first error).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import re
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from ._faults import Fault
from ._ollama_models import FakeModel, Layer, ModelName, parse_name
from ._ollama_state import DaemonState
from ._ollama_stream import collect, error_response, json_response, respond_ndjson
from ._ollama_wire import ApiError, decode_request, go_json, go_quote, rfc3339_local
from ._server import Request, Response, StreamResponse

__all__ = [
    "copy",
    "create",
    "delete",
    "head_blob",
    "post_blob",
    "ps",
    "pull",
    "pull_events",
    "push",
    "show",
    "tags",
]

_DIGEST = re.compile(r"^sha256[:-][0-9a-fA-F]{64}$")
_GGUF_MAGIC = b"GGUF"
_QUANT_TYPES = {
    "F32": "F32",
    "F16": "F16",
    "Q8_0": "Q8_0",
    "Q4_K_S": "Q4_K_S",
    "Q4_K_M": "Q4_K_M",
    "Q4_K": "Q4_K_M",
    "BF16": "BF16",
}
Event = dict[str, Any]


def _reported_capabilities(daemon: DaemonState, model: FakeModel) -> list[str]:
    caps = list(model.capabilities)
    if daemon.settings.think_inline:
        caps = [c for c in caps if c != "thinking"]  # an old server knows no thinking
    return caps


def _blob_path(digest: str) -> str:
    return f"/usr/share/ollama/.ollama/models/blobs/{digest.replace(':', '-')}"


# -- listing ----------------------------------------------------------------------------


async def tags(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    entries = []
    for key, model in daemon.newest_first():
        entries.append(
            {
                "name": model.name,
                "model": model.name,
                "modified_at": rfc3339_local(daemon.modified[key]),
                "size": model.size,
                "digest": model.digest,
                "details": model.details(),
                "capabilities": _reported_capabilities(daemon, model),
            }
        )
    return json_response({"models": entries})


async def show(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    try:
        body = decode_request(request.body, "ShowRequest")
        raw = str(body.get("model") or body.get("name") or "")
        if not raw:
            raise ApiError(400, "model is required")
        name = parse_name(raw)
        if name is None:
            raise ApiError(400, "invalid model name")
        model = daemon.lookup(name)
        if model is None:
            raise ApiError(404, f"model '{name.display}' not found")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    system = str(body.get("system") or model.system)
    payload: dict[str, Any] = {}
    if model.license:
        payload["license"] = model.license
    payload["modelfile"] = model.modelfile()
    if model.parameters:
        payload["parameters"] = model.parameters_text()
    if model.template:
        payload["template"] = model.template
    if system:
        payload["system"] = system
    payload["details"] = model.details()
    if model.messages:
        payload["messages"] = [dict(m) for m in model.messages]
    # model_info is always present: the official client requires it.
    payload["model_info"] = model.model_info()
    payload["tensors"] = [
        {
            "name": "token_embd.weight",
            "type": model.quantization,
            "shape": [model.embedding_length, 151936],
        },
        {"name": "output_norm.weight", "type": "F32", "shape": [model.embedding_length]},
    ]
    payload["capabilities"] = _reported_capabilities(daemon, model)
    payload["modified_at"] = rfc3339_local(daemon.modified[name.key])
    return json_response(payload)


async def ps(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    entries = []
    for runner in sorted(daemon.sched.loaded.values(), key=lambda r: -r.expires_at):
        model = runner.model
        entries.append(
            {
                "name": model.name,
                "model": model.name,
                "size": model.size_bytes,
                "digest": model.digest,
                "details": model.details(),
                "expires_at": rfc3339_local(
                    runner.expires_at if math.isfinite(runner.expires_at) else math.inf
                ),
                "size_vram": model.size_bytes,
                "context_length": runner.load_options["num_ctx"],
            }
        )
    return json_response({"models": entries})


# -- pull / push ------------------------------------------------------------------------


def _is_success(event: Event) -> bool:
    return event.get("status") == "success"


async def _progress_response(
    daemon: DaemonState, events: AsyncGenerator[Event, None], stream: bool, fault: Fault | None
) -> Response | StreamResponse:
    if stream:
        return await respond_ndjson(events, _is_success, fault, daemon.faults)
    # waitForStream: the last progress value, or the first error as a status; both
    # with the bare "application/json" the handler set before rendering.
    try:
        items, _ = await collect(events, fault, daemon.faults, _is_success)
    except ApiError as exc:
        return error_response(exc.status, exc.message, streaming=True)
    return Response(
        body=go_json(items[-1] if items else {"status": ""}), content_type="application/json"
    )


async def pull(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    try:
        body = decode_request(request.body, "PullRequest")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    name = parse_name(str(body.get("model") or body.get("name") or ""))
    if name is None:
        return error_response(400, "invalid model name")
    existing = daemon.lookup(name)
    display = existing.name if existing else name.display
    return await _progress_response(
        daemon, pull_events(daemon, name, display), body.get("stream") is not False, fault
    )


async def pull_events(
    daemon: DaemonState, name: ModelName, display: str, *, final: bool = True
) -> AsyncGenerator[Event, None]:
    """The pull progress stream; installs the model. ``final=False`` omits ``success``."""
    yield {"status": "pulling manifest"}
    source = daemon.registry.get(name.key)
    if source is None:
        raise ApiError(500, "pull model manifest: file does not exist")
    previous = daemon.installed.get(name.key)
    for layer in source.layers():
        async for event in _download(daemon, layer):
            yield event
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    model = dataclasses.replace(source, name=display)
    if previous is not None and {x.digest for x in previous.layers()} - {
        x.digest for x in model.layers()
    }:
        yield {"status": "removing unused layers"}
    daemon.store(name, model)
    daemon.prune()
    if final:
        yield {"status": "success"}


def _progress(layer: Layer, completed: int) -> Event:
    event: Event = {"status": f"pulling {layer.short}", "digest": layer.digest}
    if layer.size:
        event["total"] = layer.size
    if completed:
        event["completed"] = completed  # omitted while 0, as the daemon does
    return event


async def _download(daemon: DaemonState, layer: Layer) -> AsyncGenerator[Event, None]:
    if layer.digest in daemon.blobs:
        yield _progress(layer, layer.size)  # already on disk: one line, complete
        return
    yield _progress(layer, 0)
    rate = daemon.settings.pull_bytes_per_second
    if rate > 0 and math.isfinite(rate):
        started = time.monotonic()
        while True:
            done = int((time.monotonic() - started) * rate)
            if done >= layer.size:
                break
            await asyncio.sleep(min(daemon.settings.pull_tick_seconds, (layer.size - done) / rate))
            done = int((time.monotonic() - started) * rate)
            if done < layer.size:
                yield _progress(layer, done)
    daemon.blobs[layer.digest] = (layer.size, b"")
    yield _progress(layer, layer.size)


async def push(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    """Pushing needs an ollama.com key the double never has: it fails like an unauthorised push."""
    try:
        body = decode_request(request.body, "PullRequest")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    if not (body.get("model") or body.get("name")):
        return error_response(400, "model is required")

    async def events() -> AsyncGenerator[Event, None]:
        yield {"status": "retrieving manifest"}
        raise ApiError(401, "unauthorized: access denied")

    return await _progress_response(daemon, events(), body.get("stream") is not False, fault)


# -- create -----------------------------------------------------------------------------


def _valid_path(path: str) -> bool:
    # Go's fs.ValidPath: relative, slash-separated, no "." or ".." or empty elements.
    if path == ".":
        return True
    return (
        bool(path)
        and not path.startswith("/")
        and all(p not in ("", ".", "..") for p in path.split("/"))
    )


async def create(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    try:
        body = decode_request(request.body, "CreateRequest")
        for group in ("files", "adapters"):
            for path, digest in (body.get(group) or {}).items():
                if group == "files" and not _valid_path(path):
                    raise ApiError(400, "file path must be relative")
                if not digest:
                    raise ApiError(400, "invalid digest format")
        name = parse_name(str(body.get("model") or body.get("name") or ""))
        if name is None:
            raise ApiError(400, "invalid model name")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    existing = daemon.lookup(name)
    display = existing.name if existing else name.display
    return await _progress_response(
        daemon, _create_events(daemon, name, display, body), body.get("stream") is not False, fault
    )


async def _create_events(
    daemon: DaemonState, name: ModelName, display: str, body: Mapping[str, Any]
) -> AsyncGenerator[Event, None]:
    source = str(body.get("from") or "")
    files: Mapping[str, str] = body.get("files") or {}
    if source:
        base_name = parse_name(source)
        if base_name is None:
            raise ApiError(400, "invalid model name")
        base = daemon.lookup(base_name)
        if base is None:
            # `from` names a model that is not local: the daemon pulls it first, and the
            # pull's progress appears inside the create stream.
            async for event in pull_events(daemon, base_name, base_name.display, final=False):
                yield event
            base = daemon.lookup(base_name)
            assert base is not None
        parent = base.name
    elif files:
        base = None
        async for event in _check_files(daemon, files):
            yield event
        parent = ""
    else:
        raise ApiError(400, "neither 'from' or 'files' was specified")
    adapters: Mapping[str, str] = body.get("adapters") or {}
    if len(adapters) > 1:
        raise ApiError(400, "only one adapter is currently supported")
    async for event in _check_files(daemon, adapters):
        yield event
    model = _derive(daemon, display, base, parent, files, body)
    template = str(body.get("template") or "")
    if template.count("{{") != template.count("}}"):
        raise ApiError(400, "template error: template: :1: unclosed action")
    quantize = str(body.get("quantize") or body.get("quantization") or "").upper()
    if quantize:
        model = await _quantized(model, quantize)
        async for event in _quantize_progress(daemon, model):
            yield event
    for layer in model.layers()[:-1]:  # the config layer is not reported
        state = "using existing layer" if layer.digest in daemon.blobs else "creating new layer"
        yield {"status": f"{state} {layer.digest}"}
    yield {"status": "writing manifest"}
    daemon.store(name, model)
    yield {"status": "success"}


async def _check_files(
    daemon: DaemonState, files: Mapping[str, str]
) -> AsyncGenerator[Event, None]:
    if not files:
        return
    if any(path.endswith(".safetensors") for path in files):
        yield {"status": "converting model"}
        for digest in files.values():
            if _blob_key(digest) not in daemon.blobs:
                raise ApiError(500, f"open {_blob_path(digest)}: no such file or directory")
        return
    gguf = any(path.endswith(".gguf") for path in files)
    if not gguf:
        # No extension: the daemon sniffs the first blob's bytes.
        heads = [daemon.blobs.get(_blob_key(d), (0, b""))[1] for d in files.values()]
        if not any(head.startswith(_GGUF_MAGIC) for head in heads):
            raise ApiError(400, "unknown type")
    for path in sorted(files):
        digest = files[path]
        yield {"status": "parsing GGUF"}
        stored = daemon.blobs.get(_blob_key(digest))
        if stored is None:
            raise ApiError(500, f"open {_blob_path(digest)}: no such file or directory")
        if not stored[1].startswith(_GGUF_MAGIC):
            raise ApiError(400, "supplied file was not in GGUF format")


def _derive(
    daemon: DaemonState,
    display: str,
    base: FakeModel | None,
    parent: str,
    files: Mapping[str, str],
    body: Mapping[str, Any],
) -> FakeModel:
    info: Mapping[str, Any] = body.get("info") or {}
    if base is None:
        digests = sorted(_blob_key(d) for d in files.values())
        size = sum(daemon.blobs.get(d, (0, b""))[0] for d in digests)
        weights = (
            digests[0]
            if len(digests) == 1
            else "sha256:" + hashlib.sha256("".join(digests).encode()).hexdigest()
        )
        base = FakeModel(
            name=display,
            family=str(info.get("model_family") or "llama"),
            parameter_size=str(info.get("parameter_size") or ""),
            quantization=str(info.get("quantization_level") or "unknown"),
            size_bytes=size,
            context_length=int(info.get("context_length") or 4096),
            template="",  # no TEMPLATE and no chat template in the file: no template layer
            weights_digest=weights,
        )
    template = str(body.get("template") or "") or base.template
    capabilities = list(base.capabilities)
    if body.get("template"):
        # The daemon infers capabilities from the template's variables.
        capabilities = [c for c in capabilities if c not in ("tools", "insert", "thinking")]
        for variable, capability in (
            (".Tools", "tools"),
            (".Suffix", "insert"),
            (".Thinking", "thinking"),
        ):
            if variable in template:
                capabilities.append(capability)
    for extra in info.get("capabilities") or ():
        if isinstance(extra, str) and extra not in capabilities:
            capabilities.append(extra)
    license_value = body.get("license")
    licenses = [license_value] if isinstance(license_value, str) else list(license_value or [])
    messages = [dict(m) for m in body.get("messages") or [] if isinstance(m, dict)]
    return dataclasses.replace(
        base,
        name=display,
        parent=parent,
        template=template,
        system=str(body["system"]) if body.get("system") is not None else base.system,
        license="\n".join([base.license, *licenses] if base.license else licenses),
        parameters={**base.parameters, **(body.get("parameters") or {})},
        messages=tuple(messages) if messages else base.messages,
        capabilities=tuple(capabilities),
    )


async def _quantized(model: FakeModel, quantize: str) -> FakeModel:
    target = _QUANT_TYPES.get(quantize)
    if target is None:
        raise ApiError(
            500,
            f"unsupported quantization type {quantize} - supported types are F32, F16, Q4_K_S, Q4_K_M, Q8_0",
        )
    if model.quantization.upper() not in ("F16", "BF16", "F32"):
        raise ApiError(500, "quantization is only supported for F16, BF16 and F32 models")
    digest = "sha256:" + hashlib.sha256(f"{model.weights_digest}\x00{target}".encode()).hexdigest()
    return dataclasses.replace(
        model,
        quantization=target,
        weights_digest=digest,
        size_bytes=max(model.size_bytes * 3 // 10, 1),
    )


async def _quantize_progress(daemon: DaemonState, model: FakeModel) -> AsyncGenerator[Event, None]:
    total = model.size_bytes
    for step in (0, total // 2, total):
        event: Event = {
            "status": f"quantizing F16 model to {model.quantization}",
            "digest": "0000000000000000000",
            "total": total,
        }
        if step:
            event["completed"] = step
        yield event
        await asyncio.sleep(0)
    daemon.blobs[model.weights_digest] = (model.size_bytes, _GGUF_MAGIC)


# -- copy / delete ----------------------------------------------------------------------


async def copy(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    try:
        body = decode_request(request.body, "CopyRequest")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    source_text, destination_text = (
        str(body.get("source") or ""),
        str(body.get("destination") or ""),
    )
    source = parse_name(source_text)
    if source is None:
        return error_response(400, f"source {go_quote(source_text)} is invalid")
    destination = parse_name(destination_text)
    if destination is None:
        return error_response(400, f"destination {go_quote(destination_text)} is invalid")
    model = daemon.lookup(source)
    if model is None:
        return error_response(404, f"model {go_quote(source_text)} not found")  # %q: double quotes
    existing = daemon.lookup(destination)
    daemon.store(
        destination,
        dataclasses.replace(model, name=existing.name if existing else destination.display),
    )
    return Response(content_type=None)


async def delete(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    try:
        body = decode_request(request.body, "DeleteRequest")
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    raw = str(body.get("model") or body.get("name") or "")
    if not raw.strip():
        return error_response(400, "model is required")
    name = parse_name(raw)
    if name is None:
        return error_response(400, f"name {go_quote(raw)} is invalid")
    if daemon.remove(name) is None:
        return error_response(404, f"model '{raw}' not found")
    return Response(content_type=None)


# -- blobs ------------------------------------------------------------------------------


def _digest_of(request: Request) -> str:
    return request.path[len("/api/blobs/") :]


async def head_blob(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    digest = _digest_of(request)
    if not _DIGEST.match(digest):
        return error_response(400, "invalid digest format")
    if _blob_key(digest) not in daemon.blobs:
        return error_response(404, f"blob {go_quote(digest)} not found")  # invisible on HEAD
    return Response(content_type=None)


async def post_blob(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    digest = _digest_of(request)
    if not _DIGEST.match(digest):
        return error_response(400, "invalid digest format")
    if _blob_key(digest) in daemon.blobs:
        return Response(content_type=None)  # already there: 200 without reading the body
    actual = "sha256:" + hashlib.sha256(request.body).hexdigest()
    if actual != digest:
        return error_response(
            400, f"digest mismatch, expected {go_quote(digest)}, got {go_quote(actual)}"
        )
    # Keep the first bytes: create sniffs them for the GGUF magic.
    daemon.blobs[actual] = (len(request.body), request.body[:16] or b"\x00")
    return Response(status=201, content_type=None)


def _blob_key(digest: str) -> str:
    # Blobs live in files named sha256-<hex>: both spellings find the same file.
    return "sha256:" + digest[7:]
