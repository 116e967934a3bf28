"""Deterministic, prompt-dependent text for the doubles.

Both doubles draw answers from here, so the same conversation gets the same canonical
answer from the "local" and the "hosted" double. That makes continuation testable: an
answer cut after some tokens locally and continued on the hosted double (prefix
completion) must come out exactly equal to the uninterrupted answer.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["answer_tokens", "continue_after", "conversation_key", "thinking_tokens"]

_WORDS = (
    "the local model answers quickly when a slot is free and the hosted route "
    "takes over when it is busy so every request gets an answer with its route "
    "recorded deepseek reasons step by step before it replies code runs fine "
    "latency stays low tokens arrive in order fallback keeps the stream honest"
).split()
_THOUGHTS = (
    "let me think about what is asked first consider the question then check "
    "each step carefully the user wants a short clear answer so keep it brief"
).split()


def conversation_key(
    messages: Sequence[Mapping[str, Any]] | None = None, prompt: str | None = None
) -> str:
    """What the answer depends on: the last user message (chat) or the prompt (generate)."""
    if prompt is not None:
        return prompt
    for message in reversed(messages or ()):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _rng(key: str, salt: str) -> random.Random:
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def answer_tokens(key: str, n: int) -> list[str]:
    """``n`` answer tokens for ``key``; a token is a word with its leading space."""
    rng = _rng(key, "answer")
    tokens = [(" " if i else "") + rng.choice(_WORDS) for i in range(n)]
    if tokens:
        tokens[-1] += "."
    return tokens


def thinking_tokens(key: str, n: int) -> list[str]:
    rng = _rng(key, "thinking")
    return [(" " if i else "") + rng.choice(_THOUGHTS) for i in range(n)]


def continue_after(key: str, prefix: str, n: int) -> list[str]:
    """Tokens that follow ``prefix`` in the canonical answer, when ``prefix`` is a prefix of it.

    Prefix completion on the hosted double uses this, so a continued answer equals the
    uninterrupted one. An unrelated prefix gets a fresh answer.
    """
    tokens = answer_tokens(key, n)
    if not "".join(tokens).startswith(prefix):
        return answer_tokens(key + "\x00continued", n)
    position = 0
    for index, token in enumerate(tokens):
        if position + len(token) > len(prefix):
            # The prefix may end inside a token: finish that token, then carry on.
            return [token[len(prefix) - position :], *tokens[index + 1 :]]
        position += len(token)
    return []
