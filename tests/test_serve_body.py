"""Reading and checking request bodies on the hot path: the body straight from ASGI
messages, and the walk over decoded values skipped only when it cannot find anything."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import ClientDisconnect

from dsollama.serve.errors import ApiError
from dsollama.serve.safe_json import check_values, decode
from dsollama.serve.validate import parse_json_object, read_body

pytestmark = pytest.mark.anyio

BAD_TEXT = [
    '{"options": {"temperature": NaN}}',
    '{"a": [1, -Infinity]}',
    '{"n": 1e999}',
    '{"n": -2.5E+0400}',
    '{"n": ' + "9" * 400 + "e0}",
    '{"n": ' + "9" * 320 + ".5}",
    '{"content": "\\ud800"}',
    '{"\\uDFFF": 1}',
    '{"content": "ok \\ud83d\\ude00 \\udc00"}',
]
RAW_SURROGATE = b'{"content": "\xed\xa0\x80"}'  # a surrogate's code point, as UTF-8 bytes


@pytest.mark.parametrize("text", BAD_TEXT)
def test_bodies_with_values_nothing_can_reencode_are_still_refused(text: str) -> None:
    assert decode(text.encode())[1]
    with pytest.raises(ApiError) as refused:
        parse_json_object(text.encode())
    assert refused.value.status == 400
    assert refused.value.message.startswith("invalid ")  # it says where


def test_raw_surrogates_and_other_encodings_are_looked_at_too() -> None:
    assert decode(RAW_SURROGATE)[1]
    with pytest.raises(ApiError, match="surrogate"):
        parse_json_object(RAW_SURROGATE)
    utf16 = '{"a": "\ud800"}'.encode("utf-16-le", "surrogatepass")
    with pytest.raises(ApiError, match="surrogate"):
        parse_json_object(utf16)
    assert parse_json_object('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    # A list with a NaN is refused for being a list, as before.
    with pytest.raises(ApiError, match="is a list"):
        parse_json_object(b"[NaN]")


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None), max_size=8)  # lone surrogates included
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(codec=None), max_size=4), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=VALUES)
def test_the_walk_is_skipped_only_when_it_would_find_nothing(value: Any) -> None:
    for ascii_only in (True, False):
        raw = json.dumps({"v": value}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        decoded = json.loads(raw)
        data, suspect = decode(raw)
        assert data == decoded or _has_nan(decoded)
        try:
            check_values(decoded)
        except ApiError:
            assert suspect, raw


def _has_nan(value: Any) -> bool:  # NaN != NaN: equality cannot compare those
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def _receiver(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def test_a_body_is_read_from_one_message_or_several() -> None:
    one = _receiver({"type": "http.request", "body": b'{"a": 1}', "more_body": False})
    assert await read_body(one, 100) == b'{"a": 1}'
    parts = _receiver(
        {"type": "http.request", "body": b'{"a"', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b": 1}"},
    )
    assert await read_body(parts, 100, b"8") == b'{"a": 1}'
    assert await read_body(_receiver({"type": "http.request"}), 100) == b""


async def test_a_body_too_large_or_abandoned() -> None:
    with pytest.raises(ApiError) as declared:
        await read_body(_receiver(), 10, b"11")
    assert declared.value.status == 413
    assert declared.value.headers == {"connection": "close"}
    chunks = [{"type": "http.request", "body": b"x" * 6, "more_body": True}] * 2
    with pytest.raises(ApiError) as sent:
        await read_body(_receiver(*chunks), 10, b"5")  # a length that lies
    assert "12 bytes" in sent.value.message
    gone = _receiver(
        {"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(ClientDisconnect):
        await read_body(gone, 10)
