"""What the Ollama double's "model" says: deterministic tokens, tool calls, JSON answers.

The words come from `_text`, so the Ollama and DeepSeek doubles give the same canonical
answer to the same conversation. This module only decides *what* is said; pacing,
scheduling and framing live in the handlers.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._text import answer_tokens, continue_after, thinking_tokens

__all__ = ["Plan", "embedding", "make_plan", "prompt_tokens", "tool_call_id"]

_JSON_PIECES = re.compile(r'\s*(?:"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+)')
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class Plan:
    """The tokens of one answer, in emission order: thinking, tool calls, content."""

    thinking: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    done_reason: str = "stop"

    @property
    def eval_count(self) -> int:
        # A tool call is several tokens of the model's output; count a handful each.
        return len(self.thinking) + len(self.content) + 5 * len(self.tool_calls)


def tool_call_id() -> str:
    """``call_`` + 8 lowercase alphanumerics, random like the daemon's."""
    return "call_" + "".join(random.choices(_ID_ALPHABET, k=8))


def make_plan(
    key: str,
    *,
    answer_n: int,
    thinking_n: int,
    think: bool,
    inline_think: bool,
    format: Any = None,
    tools: Sequence[Mapping[str, Any]] = (),
    messages: Sequence[Mapping[str, Any]] = (),
    num_predict: int | None = None,
    stop: Sequence[str] = (),
    prefix: str | None = None,
) -> Plan:
    """Decide the answer for ``key`` (the prompt, or the last user message).

    ``prefix``: the conversation ends with an assistant message, which the model continues
    (the template leaves the last assistant turn open): the rest of the canonical answer.

    ``think`` puts reasoning in ``thinking``; ``inline_think`` (an old server and a
    DeepSeek-R1 model) puts it inline in the content between ``<think>`` tags instead.
    With ``tools``, the model calls one unless the conversation ends with a tool result.
    ``format`` (``"json"`` or a schema) makes the answer a JSON document.
    """
    plan = Plan()
    if prefix:
        plan.content = continue_after(key, prefix, answer_n)
        return plan
    reasoning = thinking_tokens(key, thinking_n) if (think or inline_think) else []
    if tools and not (messages and messages[-1].get("role") == "tool"):
        plan.tool_calls = [_tool_call(tools, messages)]
        answer: list[str] = []
    elif format is not None:
        document = _json_answer(key, format, answer_n)
        answer = [piece for piece in _JSON_PIECES.findall(document) if piece]
    else:
        answer = answer_tokens(key, answer_n)
    if inline_think and reasoning:
        plan.content = ["<think>\n", *reasoning, "\n</think>\n\n", *answer]
    else:
        plan.thinking = reasoning
        plan.content = answer
    if stop:
        _apply_stop(plan, stop)
    if num_predict is not None and num_predict >= 0 and plan.eval_count > num_predict:
        _apply_limit(plan, num_predict)
    return plan


def _apply_stop(plan: Plan, stop: Sequence[str]) -> None:
    text = "".join(plan.content)
    cuts = [text.find(s) for s in stop if s and s in text]
    if not cuts:
        return
    keep = text[: min(cuts)]
    tokens: list[str] = []
    used = 0
    for token in plan.content:
        if used + len(token) <= len(keep):
            tokens.append(token)
            used += len(token)
        else:
            if used < len(keep):
                tokens.append(keep[used:])
            break
    plan.content = tokens
    plan.done_reason = "stop"


def _apply_limit(plan: Plan, limit: int) -> None:
    plan.done_reason = "length"
    plan.thinking = plan.thinking[:limit]
    limit -= len(plan.thinking)
    if plan.tool_calls and limit < 5 * len(plan.tool_calls):
        plan.tool_calls = []  # cut off mid-call: no parsable call comes out
        limit = 0
    limit -= 5 * len(plan.tool_calls)
    plan.content = plan.content[: max(limit, 0)]


# -- tools ------------------------------------------------------------------------------


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""


def _tool_call(
    tools: Sequence[Mapping[str, Any]], messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    text = _last_user_text(messages)
    lowered = text.lower()
    functions = [t.get("function") or {} for t in tools]
    chosen = functions[0]
    for function in functions:
        words = str(function.get("name", "")).lower().replace("-", "_").split("_")
        if any(len(w) > 2 and w in lowered for w in words):
            chosen = function
            break
    parameters = chosen.get("parameters") or {}
    properties = parameters.get("properties") or {}
    required = parameters.get("required") or list(properties)
    words = re.findall(r"[A-Za-z][\w'-]*", text)
    argument = words[-1] if words else "example"
    arguments = {name: _argument(properties.get(name) or {}, argument) for name in required}
    return {
        "id": tool_call_id(),
        "function": {"index": 0, "name": str(chosen.get("name", "")), "arguments": arguments},
    }


def _argument(schema: Mapping[str, Any], word: str) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}.get(
        str(kind), word
    )


# -- JSON answers -----------------------------------------------------------------------


def _json_answer(key: str, format: Any, answer_n: int) -> str:
    words = [t.strip(" .") for t in answer_tokens(key, max(answer_n, 3))]
    if isinstance(format, Mapping):
        value = _sample(format, format, words, 0)
    else:
        value = {"answer": " ".join(words)}
    return json.dumps(value, ensure_ascii=False)


def _sample(
    schema: Mapping[str, Any], root: Mapping[str, Any], words: list[str], depth: int
) -> Any:
    if depth > 8:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return _sample(target, root, words, depth + 1)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return _sample(usable[0] if usable else options[0], root, words, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    seed = int(hashlib.blake2b(" ".join(words).encode(), digest_size=4).hexdigest(), 16)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            name: _sample(sub, root, words[i % len(words) :] + words, depth + 1)
            for i, (name, sub) in enumerate(properties.items())
            if isinstance(sub, Mapping)
        }
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        count = max(int(schema.get("minItems", 1) or 1), 1)
        return [_sample(items or {}, root, words, depth + 1) for _ in range(count)]
    if kind == "integer":
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", low + 100))
        return low + seed % max(high - low + 1, 1)
    if kind == "number":
        floor = float(schema.get("minimum", 0.0))
        return round(floor + (seed % 1000) / 10, 1)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return " ".join(words[:3])


# -- counters and embeddings ------------------------------------------------------------


def prompt_tokens(
    *, prompt: str | None = None, messages: Sequence[Mapping[str, Any]] = (), system: str = ""
) -> int:
    """A stable stand-in for the tokenizer: words plus a few template tokens per turn."""
    count = len(system.split()) + (4 if system else 0)
    if prompt is not None:
        count += len(prompt.split()) + 4
    for message in messages:
        count += len(str(message.get("content") or "").split()) + 4
    return max(count, 1)


def embedding(text: str, dims: int, *, normalise: bool = True) -> list[float]:
    """A deterministic vector for ``text``; L2-normalised like ``/api/embed``'s."""
    seed = hashlib.blake2b(text.encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    vector = [rng.uniform(-1.0, 1.0) for _ in range(max(dims, 1))]
    if normalise:
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        vector = [v / norm for v in vector]
    # float32 on the wire: about seven significant digits.
    return [float(f"{v:.7g}") for v in vector]
