"""Property tests: render/parse round trip, what Modelfile syntax can hold, robustness."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsollama._exceptions import ModelfileError
from dsollama._modelfile import (
    PARAMETER_TYPES,
    Message,
    Modelfile,
    coerce_parameter,
    parse_modelfile,
    render_modelfile,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Go's unicode.IsSpace, written out independently of the module under test.
GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + ("\u2028\u2029\u202f\u205f\u3000")
)

# Pieces that stress the quoting rules, mixed with arbitrary text.
FRAGMENTS = [
    '"',
    '""',
    '"""',
    "#",
    "\n",
    "\r\n",
    "\r",
    " ",
    "\t",
    "\u3000",
    "\u200d",
    "FROM ",
    "PARAMETER stop ",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|EOT|>",
    "{{ .Prompt }}",
]
any_text = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS), st.text(st.characters(exclude_categories=["Cs"]), max_size=6)
    ),
    max_size=8,
).map("".join)


def representable(value: str) -> bool:
    """Whether Modelfile syntax can hold ``value``: the only impossible case is a line
    break inside it that follows \"\"\" (give or take white space), because both
    quotings close there. Derived from the quoting rules, not from the renderer."""
    for i, ch in enumerate(value):
        if ch in "\r\n" and value[:i].rstrip(GO_SPACE).endswith('"""'):
            return False
    return True


text = any_text.filter(representable)
# Arbitrary text rarely lands on the impossible case, so build it on purpose too.
unrepresentable = st.builds(
    lambda head, blank, newline, tail: f'{head}"""{blank}{newline}{tail}',
    any_text,
    st.sampled_from(["", " ", "\t ", "\u3000"]),
    st.sampled_from(["\n", "\r", "\r\n"]),
    any_text,
)

semver = st.builds(
    lambda major, minor, patch, pre: f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else ""),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.one_of(st.none(), st.sampled_from(["rc.1", "alpha", "0.3.beta-2"])),
)


def parameter_value(kind: type) -> st.SearchStrategy[object]:
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(-(2**63), 2**63 - 1)
    if kind is float:
        return st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
        )
    return st.lists(text, min_size=1, max_size=4).map(tuple)


parameters = st.lists(st.sampled_from(sorted(PARAMETER_TYPES)), unique=True, max_size=6).flatmap(
    lambda names: st.fixed_dictionaries({n: parameter_value(PARAMETER_TYPES[n]) for n in names})
)
messages = st.lists(
    st.builds(Message, st.sampled_from(["system", "user", "assistant"]), text), max_size=3
).map(tuple)
optional_text = st.one_of(st.none(), text)

modelfiles = st.builds(
    Modelfile,
    from_=text.filter(bool),
    parameters=parameters,
    template=optional_text,
    system=optional_text,
    adapters=st.lists(text, max_size=2).map(tuple),
    licenses=st.lists(text, max_size=2).map(tuple),
    messages=messages,
    requires=st.one_of(st.none(), semver),
    renderer=optional_text,
    parser=optional_text,
    draft=optional_text,
)


@SETTINGS
@given(modelfiles)
def test_render_then_parse_gives_the_same_modelfile(m: Modelfile) -> None:
    assert parse_modelfile(render_modelfile(m)) == m


@SETTINGS
@given(st.one_of(any_text, unrepresentable))
def test_render_raises_exactly_for_values_the_syntax_cannot_hold(value: str) -> None:
    m = Modelfile(from_="x", system=value, parameters={"stop": (value,)})
    if representable(value):
        assert parse_modelfile(render_modelfile(m)) == m
    else:
        with pytest.raises(ModelfileError, match="cannot write"):
            render_modelfile(m)


@SETTINGS
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*FRAGMENTS, "SYSTEM ", "PARAMETER top_k ", "MESSAGE user "]), any_text
        ),
        max_size=12,
    ).map("".join)
)
def test_parse_either_succeeds_or_raises_modelfile_error_with_a_position(source: str) -> None:
    try:
        m = parse_modelfile("FROM x\n" + source)
    except ModelfileError as exc:
        error = exc
    else:
        assert parse_modelfile(render_modelfile(m)) == m  # whatever parses, renders back
        return
    if error.line is not None:
        assert error.line >= 1
        assert error.column is not None
        assert error.column >= 1


@SETTINGS
@given(st.integers(-(2**63), 2**63 - 1))
def test_int_parameters_read_back_exactly(n: int) -> None:
    assert coerce_parameter("num_ctx", str(n)) == n


@SETTINGS
@given(st.floats(-3.4e38, 3.4e38, allow_nan=False))
def test_float_parameters_read_back_exactly(x: float) -> None:
    value = coerce_parameter("temperature", repr(x))
    assert isinstance(value, float)
    assert value == x
    assert math.copysign(1, value) == math.copysign(1, x)
