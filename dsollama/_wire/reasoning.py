"""Split inline ``<think>…</think>`` reasoning out of answer text, incrementally.

Ollama servers before v0.9.0 (and any server or template that does not separate
reasoning) put a DeepSeek-R1 model's chain of thought inline in the answer text. The
variants a parser must tolerate (reference: DeepSeek API §8, "Key facts"):

- the tags split across stream chunks (``"<thi"`` + ``"nk>"``);
- an empty block ``<think>\\n\\n</think>`` (short or refused prompts, ``think=false``);
- whitespace and newlines around the tags;
- only ``</think>`` in the output, because the chat template pre-filled the opening tag.

`ThinkSplitter` handles all of them the way Ollama's own thinking parser does: the block
is recognised only at the start of the answer (after whitespace); the whitespace right
after ``<think>``, right before ``</think>`` and between the block and the answer is
dropped; anything after the block is answer text, tags included.

>>> s = ThinkSplitter()
>>> s.feed("<thi"), s.feed("nk>\\nHmm, 2+2."), s.feed("\\n</th"), s.feed("ink>\\n\\n4")
(('', ''), ('Hmm, 2+2.', ''), ('', ''), ('', '4'))
>>> s.finish()
('', '')
"""

from __future__ import annotations

import enum

__all__ = ["CLOSE_TAG", "OPEN_TAG", "ThinkSplitter"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


class _State(enum.Enum):
    START = "start"
    "Nothing but whitespace seen yet: the block may still open."
    THINK_LEAD = "think_lead"
    "Just inside the block: dropping the whitespace after the opening tag."
    THINK = "think"
    "Inside the block."
    ANSWER_LEAD = "answer_lead"
    "Just after the block: dropping the whitespace that separates it from the answer."
    ANSWER = "answer"
    "Answer text; passed through untouched."


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag``.

    >>> _partial_suffix("abc</th", "</think>")
    4
    >>> _partial_suffix("abc", "</think>")
    0
    """
    for size in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    """Incremental state machine that separates ``<think>`` reasoning from the answer.

    Feed it answer text as it arrives; each call returns ``(thinking, content)`` that
    can be shown now. Call `finish` once at the end to flush what was held back.

    ``thinking_model=True`` says the model reasons first and its template may have
    pre-filled the opening tag: text at the start of the answer that is not ``<think>``
    is then taken as reasoning up to ``</think>``. Set it only when reasoning is
    expected *inline* (a server that does not separate it); a model that answers
    without any tag would otherwise have its whole answer classified as reasoning,
    and streamed text cannot be taken back. With ``thinking_model=False`` (default)
    only an explicit ``<think>`` at the start opens a block and a lone ``</think>``
    is ordinary text.

    Held-back text is bounded so streaming stays live: at most a partial tag (fewer
    characters than the tag) plus the whitespace that may precede or follow a tag.
    Non-whitespace text is never delayed by more than ``len("</think>") - 1``
    characters. Chunk boundaries never change the result: feeding a text in any
    pieces gives the same concatenated output as feeding it whole.
    """

    __slots__ = ("_block", "_buf", "_passthrough", "_state", "_thinking_model")

    def __init__(self, *, thinking_model: bool = False) -> None:
        self._thinking_model = thinking_model
        self._state = _State.START
        self._buf = ""
        self._passthrough = False
        self._block = False

    @property
    def pending(self) -> str:
        """Text received but not yet returned (a partial tag and/or whitespace)."""
        return self._buf

    @property
    def in_thinking(self) -> bool:
        """True while inside the reasoning block (text fed now would be reasoning)."""
        return self._state in (_State.THINK_LEAD, _State.THINK)

    @property
    def saw_block(self) -> bool:
        """True once a reasoning block was opened (explicitly or implicitly)."""
        return self._block

    def passthrough(self) -> tuple[str, str]:
        """Stop splitting: the server is separating reasoning itself.

        Called by the local codec when a chunk carries Ollama's own ``thinking`` field,
        so that an answer following separated reasoning is never mistaken for an
        inline block. Returns what was held back, classified as it stood; calling it
        again returns nothing.
        """
        if self._passthrough:
            return "", ""
        flushed = self.finish()
        self._passthrough = True
        self._state = _State.ANSWER
        return flushed

    def feed(self, text: str) -> tuple[str, str]:
        """Add answer text; return the ``(thinking, content)`` that is settled now."""
        if self._passthrough or (self._state is _State.ANSWER and not self._buf):
            return "", text  # past the block (or none): the text is the answer's, as it is
        self._buf += text
        thinking: list[str] = []
        content: list[str] = []
        while self._step(thinking, content):
            pass
        return "".join(thinking), "".join(content)

    def finish(self) -> tuple[str, str]:
        """End of the answer: return whatever was still held back, classified."""
        held, self._buf = self._buf, ""
        state = self._state
        if state is _State.START:
            if not held:
                return "", ""
            if self._thinking_model:
                if not held.strip():
                    return "", ""
                self._state = _State.THINK
                self._block = True
                return held.strip(), ""
            # Not a block after all: the text is the answer's own, whitespace included.
            self._state = _State.ANSWER
            return "", held
        if state is _State.THINK:
            # The block never closed (truncated answer, or a model that only reasons);
            # the held text is a partial tag or trailing whitespace: keep the text part.
            return held.rstrip(), ""
        if state is _State.ANSWER:
            return "", held
        # THINK_LEAD and ANSWER_LEAD hold only whitespace, which they drop.
        return "", ""

    # -- internals -------------------------------------------------------------------

    def _step(self, thinking: list[str], content: list[str]) -> bool:
        """Advance once over the buffer; False when it must wait for more text."""
        buf = self._buf
        state = self._state
        if state is _State.START:
            stripped = buf.lstrip()
            if not stripped:
                return False  # whitespace only: the block may still open
            if stripped.startswith(OPEN_TAG):
                self._buf = stripped[len(OPEN_TAG) :]
                self._state = _State.THINK_LEAD
                self._block = True
                return True
            if OPEN_TAG.startswith(stripped):
                return False  # a partial opening tag
            if self._thinking_model:
                # Template pre-filled "<think>": reasoning runs up to "</think>".
                self._buf = stripped
                self._state = _State.THINK_LEAD
                self._block = True
            else:
                # Text before any tag: no block; leading whitespace is the answer's own.
                self._state = _State.ANSWER
            return True
        if state is _State.THINK_LEAD or state is _State.ANSWER_LEAD:
            stripped = buf.lstrip()
            self._buf = stripped
            if not stripped:
                return False
            self._state = _State.THINK if state is _State.THINK_LEAD else _State.ANSWER
            return True
        if state is _State.THINK:
            end = buf.find(CLOSE_TAG)
            if end >= 0:
                thinking.append(buf[:end].rstrip())
                self._buf = buf[end + len(CLOSE_TAG) :]
                self._state = _State.ANSWER_LEAD
                return True
            # Hold a possible partial closing tag and the whitespace before it: both
            # are dropped if the tag completes.
            head = buf[: len(buf) - _partial_suffix(buf, CLOSE_TAG)]
            cut = len(head.rstrip())
            if cut:
                thinking.append(buf[:cut])
                self._buf = buf[cut:]
            return False
        # ANSWER
        if buf:
            content.append(buf)
            self._buf = ""
        return False
