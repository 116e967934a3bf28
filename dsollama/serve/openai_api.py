"""OpenAI's API (``/v1``), answered through the router.

For OpenAI-type connections: openai-python and openai-node with ``base_url=.../v1``,
Cherry Studio's OpenAI-compatible providers, Open WebUI's OpenAI connections, ``llm``.
Translation lives in `openai_wire`; this module reads requests and picks the encoder.
Every answer carries a top-level ``dsollama`` object (served_by, attempts,
fallback_reason, …), which openai-python keeps in ``model_extra``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError
from .info import HEADER_LOCAL_ERROR, HEADER_VERSION, dsollama_version, header_value
from .models import openai_models
from .openai_wire import (
    ChatStreamEncoder,
    CompletionStreamEncoder,
    EmbeddingEncoder,
    chat_kwargs,
    completion_kwargs,
    embedding_kwargs,
)
from .state import state_of
from .streaming import Answer, Encoder

__all__ = ["chat_completions", "completions", "embeddings", "list_models", "retrieve_model"]


def _answer(request: Request, stream: bool, encoder: Encoder, call: Any) -> Answer:
    return Answer(
        call,
        stream=stream,
        encoder=encoder,
        dialect="openai",
        metrics=state_of(request).metrics,
        headers={HEADER_VERSION: dsollama_version()},
    )


async def chat_completions(request: Request) -> Response:
    state = state_of(request)
    kwargs, stream, include_usage = chat_kwargs(await state.body(request))
    kwargs.update(state.controls(request, kwargs["model"]))
    encoder = ChatStreamEncoder(include_usage=include_usage)
    client = state.ai
    if stream:
        return _answer(request, True, encoder, lambda: client.chat(stream=True, **kwargs))
    return _answer(request, False, encoder, lambda: client.chat(stream=False, **kwargs))


async def completions(request: Request) -> Response:
    state = state_of(request)
    kwargs, stream, include_usage, echo = completion_kwargs(await state.body(request))
    kwargs.update(state.controls(request, kwargs["model"]))
    encoder = CompletionStreamEncoder(include_usage=include_usage, echo=echo)
    client = state.ai
    if stream:
        return _answer(request, True, encoder, lambda: client.generate(stream=True, **kwargs))
    return _answer(request, False, encoder, lambda: client.generate(stream=False, **kwargs))


async def embeddings(request: Request) -> Response:
    state = state_of(request)
    kwargs, encoding = embedding_kwargs(await state.body(request))
    client = state.ai
    return _answer(request, False, EmbeddingEncoder(encoding), lambda: client.embed(**kwargs))


async def list_models(request: Request) -> Response:
    state = state_of(request)
    data, error = await openai_models(state)
    if error is not None and not data:
        raise error
    headers = {HEADER_VERSION: dsollama_version()}
    if error is not None:
        headers[HEADER_LOCAL_ERROR] = header_value(error.message, 300)
    return JSONResponse({"object": "list", "data": data}, headers=headers)


async def retrieve_model(request: Request) -> Response:
    state = state_of(request)
    wanted = str(request.path_params["model"])
    data, error = await openai_models(state)
    for entry in data:
        if entry["id"] == wanted or entry["id"] == f"{wanted}:latest":
            return JSONResponse(entry, headers={HEADER_VERSION: dsollama_version()})
    if error is not None:
        raise error
    raise ApiError(
        404,
        f"the model '{wanted}' does not exist here; GET /v1/models lists the models you can use",
        param="model",
        code="model_not_found",
    )
