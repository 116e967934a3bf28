"""``/api/chat``, ``/api/generate``, ``/api/embed`` and ``/api/embeddings`` of the Ollama double.

The order of the checks follows the daemon's handlers, because the order decides which
error a client sees: decode (400) → model name (400/404) → installed? (404) → unload
shortcut → ``think`` (400) → capabilities (400) → options (500) → scheduling (503, or a
silent wait) → the answer. Everything up to scheduling answers with a real status even
when streaming was asked for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from ._faults import Fault
from ._ollama_gen import Plan, embedding, make_plan, prompt_tokens
from ._ollama_models import FakeModel, ModelName, parse_name
from ._ollama_state import DaemonState
from ._ollama_stream import collect, error_response, json_response, respond_ndjson
from ._ollama_wire import (
    ApiError,
    decode_request,
    go_quote,
    keep_alive_seconds,
    merge_options,
    rfc3339_utc_now,
)
from ._server import Request, Response, StreamResponse
from ._text import conversation_key

__all__ = ["chat", "embed", "embeddings", "generate", "prepare_chat"]

Chunk = dict[str, Any]


@dataclass
class Call:
    """One inference request, validated, ready to schedule."""

    daemon: DaemonState
    raw_name: str
    "The model as the request spelled it: responses echo it."
    name: ModelName
    model: FakeModel
    options: dict[str, Any]
    keep_alive: float | None
    started: int = field(default_factory=time.monotonic_ns)


Assemble = Callable[[list[Chunk], bool], Chunk]
Prepared = tuple[Call, bool, AsyncGenerator[Chunk, None], Assemble]


def _model_for(
    daemon: DaemonState, raw_name: str, *, empty: ApiError, missing: ApiError
) -> tuple[ModelName, FakeModel]:
    if not raw_name.strip():
        raise empty
    name = parse_name(raw_name)
    if name is None:
        raise ApiError(400, "invalid model name")
    model = daemon.lookup(name)
    if model is None:
        raise missing
    return name, model


def _check_top_logprobs(body: dict[str, Any]) -> None:
    # Checked right after decoding, before the model is even looked up.
    if not 0 <= int(body.get("top_logprobs") or 0) <= 20:
        raise ApiError(400, "top_logprobs must be between 0 and 20")


def _thinking(daemon: DaemonState, model: FakeModel, raw_name: str, think: Any) -> bool:
    """Whether reasoning goes to ``thinking``; 400 for ``think`` on a model without it."""
    if daemon.settings.think_inline:
        return False  # an old server has no `think` field: Go ignores unknown fields
    asked = think is True or isinstance(think, str)
    if "thinking" in model.capabilities:
        # Since v0.12.4 an omitted `think` on a thinking model means true.
        return think is None or asked
    if asked:
        raise ApiError(400, f"{go_quote(raw_name)} does not support thinking")
    return False


def _require(model: FakeModel, raw_name: str, verb: str, wanted: list[str]) -> None:
    if "completion" not in model.capabilities:
        raise ApiError(400, f"{go_quote(raw_name)} does not support {verb}")
    missing = [c for c in wanted if c not in model.capabilities]
    if missing:
        full = parse_name(model.name)
        label = full.full if full else model.name
        raise ApiError(400, f"{label} does not support " + "\n".join(missing))


def _format(value: Any) -> tuple[Any, str | None]:
    """(format, error): the runner rejects anything but "json" or a schema object."""
    if value is None or value == "":
        return None, None
    if value == "json" or isinstance(value, dict):
        return value, None
    raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return None, f'invalid format: {go_quote(raw)}; expected "json" or a valid JSON Schema object'


async def _pace(first: float, index: int, rate: float) -> None:
    if rate > 0 and math.isfinite(rate):
        delay = first + index / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def _answer(
    call: Call,
    plan_for: Callable[[], Plan],
    piece: Callable[[str, Any], Chunk],
    final: Callable[[Plan, dict[str, int]], Chunk],
    format_error: str | None,
    prompt_count: int,
) -> AsyncGenerator[Chunk, None]:
    """Schedule, wait for a slot, then produce the paced chunks and the final one."""
    daemon, sched = call.daemon, call.daemon.sched
    daemon.enter(call.name)
    runner = None
    holds_slot = False
    try:
        runner = await sched.acquire(call.model, call.options, call.keep_alive)
        loaded = time.monotonic_ns()
        await sched.acquire_slot(runner)
        holds_slot = True
        if format_error:
            raise ApiError(500, format_error)
        plan = plan_for()
        prompt_started = time.monotonic()
        if daemon.settings.prompt_seconds > 0:
            await asyncio.sleep(daemon.settings.prompt_seconds)
        first = time.monotonic()
        pieces: list[tuple[str, Any]] = [("thinking", t) for t in plan.thinking]
        pieces += [("tool", t) for t in plan.tool_calls]
        pieces += [("content", t) for t in plan.content]
        rate = daemon.settings.tokens_per_second
        paced = rate > 0 and math.isfinite(rate)  # unpaced: not even a no-op await per token
        for index, (kind, value) in enumerate(pieces):
            if paced:
                await _pace(first, index, rate)
            yield piece(kind, value)
        if paced:
            await _pace(first, len(pieces), rate)
        done = time.monotonic()
        metrics = {
            "total_duration": max(time.monotonic_ns() - call.started, 1),
            "load_duration": max(loaded - call.started, 1),
            "prompt_eval_count": prompt_count,
            "prompt_eval_duration": max(int((first - prompt_started) * 1e9), 1),
            "eval_count": plan.eval_count,
            "eval_duration": max(int((done - first) * 1e9), 1),
        }
        yield final(plan, metrics)
    finally:
        if holds_slot and runner is not None:
            sched.release_slot(runner)
        if runner is not None:
            sched.detach(runner)
        daemon.leave(call.name)


async def _load_only(call: Call, shape: Chunk) -> Response:
    """An empty prompt/messages loads the model and answers ``done_reason: load``."""
    call.daemon.enter(call.name)
    try:
        runner = await call.daemon.sched.acquire(call.model, call.options, call.keep_alive)
        call.daemon.sched.detach(runner)
    finally:
        call.daemon.leave(call.name)
    return json_response(
        {
            "model": call.raw_name,
            "created_at": rfc3339_utc_now(),
            **shape,
            "done": True,
            "done_reason": "load",
        }
    )


def _is_done(item: Chunk) -> bool:
    return item.get("done") is True


async def _deliver(
    call: Call,
    objects: AsyncGenerator[Chunk, None],
    stream: bool,
    fault: Fault | None,
    assemble: Assemble,
) -> Response | StreamResponse:
    daemon = call.daemon
    if stream:
        return await respond_ndjson(objects, _is_done, fault, daemon.faults)
    try:
        items, complete = await collect(objects, fault, daemon.faults, _is_done)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    return json_response(assemble(items, complete))


# -- /api/chat --------------------------------------------------------------------------


async def chat(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    try:
        body = decode_request(request.body, "ChatRequest")
        prepared = await prepare_chat(daemon, body)
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    if isinstance(prepared, Response):
        return prepared
    call, stream, objects, assemble = prepared
    return await _deliver(call, objects, stream, fault, assemble)


async def prepare_chat(daemon: DaemonState, body: dict[str, Any]) -> Response | Prepared:
    """Validate a chat body and build its answer generator (shared with ``/v1``).

    A load or unload request is answered at once: the returned `Response`.
    """
    _check_top_logprobs(body)
    raw_name = str(body.get("model") or "")
    name, model = _model_for(
        daemon,
        raw_name,
        empty=ApiError(400, "model is required"),
        missing=ApiError(404, f"model '{raw_name}' not found"),
    )
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    keep_alive = keep_alive_seconds(body.get("keep_alive"))
    stream = body.get("stream") is not False
    empty_message = {"message": {"role": "assistant", "content": ""}}
    if not messages and keep_alive == 0:
        daemon.sched.expire_model(model)
        return json_response(
            {
                "model": raw_name,
                "created_at": rfc3339_utc_now(),
                **empty_message,
                "done": True,
                "done_reason": "unload",
            }
        )
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    think = _thinking(daemon, model, raw_name, body.get("think"))
    _require(model, raw_name, "chat", ["tools"] if tools else [])
    options = merge_options(model.parameters, body.get("options"))
    call = Call(daemon, raw_name, name, model, options, keep_alive)
    if not messages:
        return await _load_only(call, empty_message)
    fmt, format_error = _format(body.get("format"))
    history = [*model.messages, *messages]
    if model.system and messages[0].get("role") != "system":
        history.insert(0, {"role": "system", "content": model.system})
    inline = daemon.settings.think_inline and "thinking" in model.capabilities

    last = messages[-1]
    # A final assistant message is continued, not answered (the template leaves it open).
    prefix = str(last.get("content") or "") if last.get("role") == "assistant" else None

    def plan_for() -> Plan:
        return make_plan(
            conversation_key(messages),
            answer_n=daemon.settings.answer_tokens,
            thinking_n=daemon.settings.thinking_tokens,
            think=think,
            inline_think=inline,
            format=fmt,
            tools=tools,
            messages=messages,
            num_predict=options.get("num_predict"),
            stop=options.get("stop") or (),
            prefix=prefix,
        )

    def piece(kind: str, value: Any) -> Chunk:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": value if kind == "content" else "",
        }
        if kind == "thinking":
            message["thinking"] = value
        elif kind == "tool":
            message["tool_calls"] = [value]
        return {
            "model": raw_name,
            "created_at": rfc3339_utc_now(),
            "message": message,
            "done": False,
        }

    def final(plan: Plan, metrics: dict[str, int]) -> Chunk:
        return {
            "model": raw_name,
            "created_at": rfc3339_utc_now(),
            **empty_message,
            "done": True,
            "done_reason": plan.done_reason,
            **metrics,
        }

    def assemble(items: list[Chunk], complete: bool) -> Chunk:
        # stream:false concatenates content and thinking, collects tool calls (only when
        # the request had tools), and keeps the last chunk's counters.
        last = (
            dict(items[-1])
            if items
            else {"model": raw_name, "created_at": rfc3339_utc_now(), "done": False}
        )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(i["message"].get("content", "") for i in items),
        }
        thinking = "".join(i["message"].get("thinking", "") for i in items)
        if thinking:
            message["thinking"] = thinking
        calls = [c for i in items for c in i["message"].get("tool_calls", [])]
        if calls and tools:
            message["tool_calls"] = calls
        last["message"] = message
        return {k: last[k] for k in ("model", "created_at", "message")} | {
            k: v for k, v in last.items() if k not in ("model", "created_at", "message")
        }

    count = prompt_tokens(messages=history)
    objects = _answer(call, plan_for, piece, final, format_error, count)
    return call, stream, objects, assemble


# -- /api/generate ----------------------------------------------------------------------


async def generate(
    daemon: DaemonState, request: Request, fault: Fault | None
) -> Response | StreamResponse:
    try:
        body = decode_request(request.body, "GenerateRequest")
        _check_top_logprobs(body)
        raw_name = str(body.get("model") or "")
        # An empty model is a 404 here, not a 400 as in chat: the daemon's quirk.
        missing = ApiError(404, f"model '{raw_name}' not found")
        name, model = _model_for(daemon, raw_name, empty=missing, missing=missing)
        prompt = str(body.get("prompt") or "")
        keep_alive = keep_alive_seconds(body.get("keep_alive"))
        stream = body.get("stream") is not False
        if not prompt and keep_alive == 0:
            daemon.sched.expire_model(model)
            return json_response(
                {
                    "model": raw_name,
                    "created_at": rfc3339_utc_now(),
                    "response": "",
                    "done": True,
                    "done_reason": "unload",
                }
            )
        raw = body.get("raw") is True
        if raw and (body.get("template") or body.get("system") or body.get("context")):
            raise ApiError(400, "raw mode does not support template, system, or context")
        suffix = str(body.get("suffix") or "")
        think = _thinking(daemon, model, raw_name, body.get("think"))
        _require(model, raw_name, "generate", ["insert"] if suffix else [])
        options = merge_options(model.parameters, body.get("options"))
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    call = Call(daemon, raw_name, name, model, options, keep_alive)
    if not prompt:
        return await _load_only(call, {"response": ""})
    fmt, format_error = _format(body.get("format"))
    inline = daemon.settings.think_inline and "thinking" in model.capabilities
    system = str(body.get("system") or model.system)
    count = prompt_tokens(prompt=prompt + suffix, system=system) + len(body.get("context") or [])

    def plan_for() -> Plan:
        return make_plan(
            prompt,
            answer_n=daemon.settings.answer_tokens,
            thinking_n=daemon.settings.thinking_tokens,
            think=think,
            inline_think=inline,
            format=fmt,
            num_predict=options.get("num_predict"),
            stop=options.get("stop") or (),
        )

    def piece(kind: str, value: Any) -> Chunk:
        chunk: Chunk = {
            "model": raw_name,
            "created_at": rfc3339_utc_now(),
            "response": value if kind == "content" else "",
        }
        if kind == "thinking":
            chunk["thinking"] = value
        chunk["done"] = False
        return chunk

    def final(plan: Plan, metrics: dict[str, int]) -> Chunk:
        chunk: Chunk = {
            "model": raw_name,
            "created_at": rfc3339_utc_now(),
            "response": "",
            "done": True,
        }
        chunk["done_reason"] = plan.done_reason
        if not raw:
            text = prompt + "".join(plan.content)
            chunk["context"] = _context(text, count + plan.eval_count)
        return chunk | metrics

    def assemble(items: list[Chunk], complete: bool) -> Chunk:
        last = (
            dict(items[-1])
            if items
            else {"model": raw_name, "created_at": rfc3339_utc_now(), "done": False}
        )
        out: Chunk = {"model": last["model"], "created_at": last["created_at"]}
        out["response"] = "".join(i.get("response", "") for i in items)
        thinking = "".join(i.get("thinking", "") for i in items)
        if thinking:
            out["thinking"] = thinking
        return out | {
            k: v
            for k, v in last.items()
            if k not in ("model", "created_at", "response", "thinking")
        }

    objects = _answer(call, plan_for, piece, final, format_error, count)
    return await _deliver(call, objects, stream, fault, assemble)


def _context(text: str, length: int) -> list[int]:
    """Stand-in token ids for generate's deprecated ``context`` (stable per text)."""
    digest = hashlib.blake2b(text.encode(), digest_size=64).digest()
    return [151644 + digest[i % 64] * 7 + i for i in range(max(length, 1))]


# -- /api/embed and /api/embeddings -------------------------------------------------------


async def embed(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    try:
        body = decode_request(request.body, "EmbedRequest")
        raw_name = str(body.get("model") or "")
        value = body.get("input")
        if isinstance(value, str):
            inputs = [value] if value else []
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            inputs = list(value)
        elif value is None:
            inputs = []
        else:
            raise ApiError(400, "invalid input type")
        name, model = _model_for(
            daemon,
            raw_name,
            empty=ApiError(404, f"model '{raw_name}' not found"),
            missing=ApiError(404, f"model {go_quote(raw_name)} not found, try pulling it first"),
        )
        options = merge_options(model.parameters, body.get("options"))
        call = Call(
            daemon, raw_name, name, model, options, keep_alive_seconds(body.get("keep_alive"))
        )
        return await _embed(call, inputs, body)
    except ApiError as exc:
        return error_response(exc.status, exc.message)


async def _embed(call: Call, inputs: list[str], body: dict[str, Any]) -> Response:
    daemon, sched = call.daemon, call.daemon.sched
    daemon.enter(call.name)
    runner = None
    try:
        runner = await sched.acquire(call.model, call.options, call.keep_alive)
        loaded = time.monotonic_ns()
        if not inputs:
            return json_response({"model": call.raw_name, "embeddings": []})
        await sched.acquire_slot(runner)
        try:
            limit = runner.load_options["num_ctx"]
            if body.get("truncate") is False and any(len(t.split()) > limit for t in inputs):
                raise ApiError(400, "the input length exceeds the context length")
            dims = int(body.get("dimensions") or 0)
            vectors = []
            for text in inputs:
                vector = embedding(text, daemon.settings.embed_dims)
                if 0 < dims < len(vector):
                    norm = math.sqrt(sum(v * v for v in vector[:dims])) or 1.0
                    vector = [float(f"{v / norm:.7g}") for v in vector[:dims]]
                vectors.append(vector)
        finally:
            sched.release_slot(runner)
        return json_response(
            {
                "model": call.raw_name,
                "embeddings": vectors,
                "total_duration": max(time.monotonic_ns() - call.started, 1),
                "load_duration": max(loaded - call.started, 1),
                "prompt_eval_count": sum(len(t.split()) + 2 for t in inputs),
            }
        )
    finally:
        if runner is not None:
            sched.detach(runner)
        daemon.leave(call.name)


async def embeddings(daemon: DaemonState, request: Request, fault: Fault | None) -> Response:
    try:
        body = decode_request(request.body, "EmbeddingRequest")
        raw_name = str(body.get("model") or "")
        name, model = _model_for(
            daemon,
            raw_name,
            empty=ApiError(400, "model is required"),
            missing=ApiError(404, f"model {go_quote(raw_name)} not found, try pulling it first"),
        )
        options = merge_options(model.parameters, body.get("options"))
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    call = Call(daemon, raw_name, name, model, options, keep_alive_seconds(body.get("keep_alive")))
    prompt = str(body.get("prompt") or "")
    daemon.enter(name)
    runner = None
    try:
        runner = await daemon.sched.acquire(model, options, call.keep_alive)
        if not prompt:
            return json_response({"embedding": []})
        # The legacy endpoint returns the raw vector, not normalised.
        return json_response(
            {"embedding": embedding(prompt, daemon.settings.embed_dims, normalise=False)}
        )
    except ApiError as exc:
        return error_response(exc.status, exc.message)
    finally:
        if runner is not None:
            daemon.sched.detach(runner)
        daemon.leave(name)
