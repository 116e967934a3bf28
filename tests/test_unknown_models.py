"""A model name nothing connects to a third-party route never leaves the machine.

Before, an unknown name (a typo, a path) was answered by the hosted default model, so the
prompt went to a third party for a model the user never named.
"""

from __future__ import annotations

import httpx
import pytest

import dsollama

from .conftest import USER, Stack
from .serve_harness import serving

pytestmark = pytest.mark.anyio

UNKNOWN = ["deepsek-r1:8b", "llama3:8b", "../../etc/passwd"]


@pytest.mark.parametrize("model", UNKNOWN)
async def test_an_unknown_name_is_an_error_and_nothing_is_sent_hosted(
    stack: Stack, kind: str, model: str
) -> None:
    client = stack.client(kind)
    with pytest.raises(dsollama.DsollamaError) as caught:
        await stack.call(kind, client, "chat", model, USER)
    assert isinstance(caught.value, (dsollama.ModelNotFoundError, dsollama.BadRequestError))
    assert stack.deepseek.requests == []


async def test_a_name_the_user_maps_to_a_hosted_model_may_go_there(stack: Stack, kind: str) -> None:
    stack.ollama.refuse_connections()
    client = stack.client(kind, hosted_model_map={"my-llama": "deepseek-flash"})
    result = await stack.call(kind, client, "chat", "my-llama", USER)
    assert result.final.served_by.kind == "hosted"
    assert result.final.served_by.model == "deepseek-flash"


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_serve_answers_404_naming_the_model_and_sends_nothing_hosted(
    stack: Stack, path: str
) -> None:
    with serving(stack) as served:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                served.url + path,
                json={"model": "../../etc/passwd", "messages": USER, "stream": False},
            )
    assert response.status_code in (400, 404)
    assert "etc/passwd" in response.text
    assert stack.deepseek.requests == []
