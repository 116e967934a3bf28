"""ThinkSplitter: inline <think> blocks split out of answer text, across any chunking."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsollama._wire import reasoning
from dsollama._wire.reasoning import CLOSE_TAG, ThinkSplitter


def split_all(chunks: list[str], *, thinking_model: bool = False) -> tuple[str, str]:
    """Feed chunks, then finish; the concatenated (thinking, content)."""
    splitter = ThinkSplitter(thinking_model=thinking_model)
    thinking, content = [], []
    for chunk in chunks:
        t, c = splitter.feed(chunk)
        thinking.append(t)
        content.append(c)
    t, c = splitter.finish()
    return "".join(thinking) + t, "".join(content) + c


def test_doctests() -> None:
    assert doctest.testmod(reasoning).failed == 0


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # R1 distill on an old Ollama: block, blank line, answer (reference §8).
        (["<think>\nThe user asks 2+2.\n</think>\n\n4"], ("The user asks 2+2.", "4")),
        # The tags split across chunks, as a stream delivers them.
        (["<thi", "nk>\nHm", "m\n</th", "ink>", "\n\n", "4"], ("Hmm", "4")),
        # Empty block (deepseek-r1:671b on short prompts, think=false templates).
        (["<think>\n\n</think>\n\nHello!"], ("", "Hello!")),
        # Whitespace before the opening tag is not text.
        (["\n  <think>x</think>y"], ("x", "y")),
        # No block at all: the answer is untouched, leading whitespace included.
        (["  Hello <think> world"], ("", "  Hello <think> world")),
        # Text before a tag means there is no block; the tag is ordinary text.
        (["Sure. <think>no</think> done"], ("", "Sure. <think>no</think> done")),
        # A lone closing tag without thinking_model is ordinary text.
        (["a</think>b"], ("", "a</think>b")),
        # A second block after the answer started is answer text.
        (["<think>a</think>b<think>c</think>"], ("a", "b<think>c</think>")),
        # An unclosed block (answer cut short): all reasoning, trailing space dropped.
        (["<think>still thinking  \n"], ("still thinking", "")),
        # Something that looked like a tag but was not.
        (["<thi", "ng>"], ("", "<thing>")),
    ],
)
def test_examples(chunks: list[str], expected: tuple[str, str]) -> None:
    assert split_all(chunks) == expected


def test_prefilled_opening_tag_when_caller_says_thinking_model() -> None:
    # The template pre-filled "<think>\n": only "</think>" appears in the output.
    assert split_all(["Let me see", ".\n</thi", "nk>\n\nAnswer"], thinking_model=True) == (
        "Let me see.",
        "Answer",
    )
    # The same text from a non-thinking model is all answer.
    assert split_all(["Let me see.\n</think>\n\nAnswer"]) == (
        "",
        "Let me see.\n</think>\n\nAnswer",
    )


def test_thinking_model_with_explicit_tag_still_works() -> None:
    assert split_all(["<think>a</think>b"], thinking_model=True) == ("a", "b")


def test_partial_tag_is_flushed_by_finish() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("  <thi") == ("", "")
    assert splitter.pending == "  <thi"
    assert splitter.finish() == ("", "  <thi")


def test_streaming_stays_live() -> None:
    splitter = ThinkSplitter()
    splitter.feed("<think>")
    assert splitter.in_thinking
    # Reasoning is released as it arrives, only a possible partial tag is held.
    assert splitter.feed("step one </") == ("step one", "")
    assert splitter.pending == " </"
    assert splitter.feed("b>") == (" </b>", "")
    assert splitter.feed("</think>\n\nThe answer") == ("", "The answer")
    assert splitter.feed(" is 4.") == ("", " is 4.")
    assert splitter.saw_block


def test_passthrough_stops_splitting() -> None:
    # Once the server separates reasoning, content must never become reasoning.
    splitter = ThinkSplitter(thinking_model=True)
    assert splitter.passthrough() == ("", "")
    assert splitter.feed("The answer") == ("", "The answer")
    assert splitter.feed("</think>") == ("", "</think>")
    assert splitter.passthrough() == ("", "")


def test_no_block_is_reported() -> None:
    splitter = ThinkSplitter()
    splitter.feed("plain answer")
    assert not splitter.saw_block
    assert not splitter.in_thinking


# -- properties ---------------------------------------------------------------------------

PIECES = [
    "<think>",
    "</think>",
    "<",
    "</",
    "<th",
    "ink>",
    "nk>",
    "/",
    " ",
    "\n",
    "a",
    "b",
    "é",
    "4",
]
texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@st.composite
def text_and_cuts(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = draw(texts)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return text, chunks


@settings(max_examples=150, deadline=None)
@given(text_and_cuts(), st.booleans())
def test_chunking_never_changes_the_result(
    case: tuple[str, list[str]], thinking_model: bool
) -> None:
    text, chunks = case
    assert "".join(chunks) == text
    whole = split_all([text], thinking_model=thinking_model)
    one_by_one = split_all(list(text), thinking_model=thinking_model)
    assert split_all(chunks, thinking_model=thinking_model) == whole
    assert one_by_one == whole


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans())
def test_never_holds_back_more_than_a_tag(text: str, thinking_model: bool) -> None:
    splitter = ThinkSplitter(thinking_model=thinking_model)
    for char in text:
        splitter.feed(char)
        held_text = "".join(splitter.pending.split())  # whitespace is not progress
        assert len(held_text) < len(CLOSE_TAG)


no_tags = st.text(alphabet="ab <>/\nthinké", max_size=40).filter(
    lambda s: "<think>" not in s and "</think>" not in s
)


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=" \n\t", max_size=3),
    no_tags,
    st.text(alphabet=" \n", max_size=3),
    no_tags,
)
def test_a_block_then_an_answer(lead: str, thought: str, gap: str, answer: str) -> None:
    text = f"{lead}<think>{thought}</think>{gap}{answer}"
    assert split_all([text]) == (thought.strip(), (gap + answer).lstrip())


@settings(max_examples=100, deadline=None)
@given(no_tags)
def test_text_without_tags_is_untouched(text: str) -> None:
    if text.strip().startswith("<") and "<think>".startswith(text.strip()):
        return  # a bare partial opening tag: covered by the finish test
    assert split_all([text]) == ("", text)
