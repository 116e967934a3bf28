"""The DeepSeek double's answers: deterministic plans and their wire shapes.

Pure (no I/O). A `Plan` is an answer as token-sized `Piece`s (reasoning, content, tool-call
fragments) with its finish_reason; a `Renderer` turns it into one JSON body or into the SSE
events of a stream, sharing id/created/fingerprint across chunks. Answers come from
`_text`, shared with the Ollama double, so both give the same canonical answer and a prefix
completion continues it exactly.

Section numbers (§n) refer to the project's DeepSeek reference.
"""

from __future__ import annotations

import json
import math
import random
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ._deepseek_request import ChatRequest, FimRequest, ToolSpec, text_of
from ._text import answer_tokens, continue_after, conversation_key, thinking_tokens

__all__ = [
    "Piece",
    "Plan",
    "Renderer",
    "ToolCall",
    "plan_chat",
    "plan_fim",
    "prompt_tokens",
    "usage",
]

# -- plans --------------------------------------------------------------------------------

PieceKind = Literal["reasoning", "content", "tool_start", "tool_args", "echo"]


@dataclass(frozen=True)
class Piece:
    """One token-sized step of an answer: one SSE event when streamed."""

    kind: PieceKind
    text: str
    tool: int = -1
    "Index into `Plan.tool_calls` for tool pieces."


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Plan:
    pieces: tuple[Piece, ...]
    finish_reason: str
    prompt_tokens: int
    thinking: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    top_logprobs: int | None = None
    leading_events: int = 1
    "Events before the first piece (chat: the role chunk; FIM: none)."

    @property
    def completion_tokens(self) -> int:
        return sum(1 for p in self.pieces if p.kind != "echo")

    @property
    def reasoning_tokens(self) -> int:
        return sum(1 for p in self.pieces if p.kind == "reasoning")

    def text(self, kind: PieceKind) -> str:
        return "".join(p.text for p in self.pieces if p.kind == kind)

    def interrupted(self, after_events: int, finish_reason: str) -> Plan:
        """The answer cut after ``after_events`` stream events, ending with ``finish_reason``
        (the ``finish_reason`` fault: e.g. insufficient_system_resource with partial text)."""
        keep = max(after_events - self.leading_events, 0)
        pieces = self.pieces[:keep]
        started = {p.tool for p in pieces if p.kind == "tool_start"}
        return replace(
            self,
            pieces=pieces,
            finish_reason=finish_reason,
            tool_calls=tuple(c for i, c in enumerate(self.tool_calls) if i in started),
        )


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def prompt_tokens(messages: Sequence[Mapping[str, Any]], tools: Sequence[ToolSpec] = ()) -> int:
    """A deterministic stand-in for the tokenizer: 4 characters a token, 4 per message."""
    total = 0
    for message in messages:
        total += 4 + _estimate_tokens(text_of(message.get("content")))
        if message.get("tool_calls"):
            total += _estimate_tokens(json.dumps(message["tool_calls"]))
    for tool in tools:
        total += 8 + _estimate_tokens(tool.name + json.dumps(dict(tool.parameters)))
    return max(total, 1)


def _continue(tokens: list[str], prefix: str) -> list[str] | None:
    """The tokens after ``prefix`` when it is a prefix of their concatenation."""
    if not "".join(tokens).startswith(prefix):
        return None
    position = 0
    for index, token in enumerate(tokens):
        if position + len(token) > len(prefix):
            return [token[len(prefix) - position :], *tokens[index + 1 :]]
        position += len(token)
    return []


def _apply_stop(pieces: list[Piece], stop: Sequence[str]) -> tuple[list[Piece], bool]:
    """Cut the content where the first stop string starts (the stop string is not sent)."""
    content = "".join(p.text for p in pieces if p.kind == "content")
    hits = [i for i in (content.find(s) for s in stop if s) if i >= 0]
    if not hits:
        return pieces, False
    limit = min(hits)
    kept: list[Piece] = []
    seen = 0
    for piece in pieces:
        if piece.kind != "content":
            kept.append(piece)
            continue
        if seen >= limit:
            break
        room = limit - seen
        if len(piece.text) > room:
            kept.append(replace(piece, text=piece.text[:room]))
            break
        kept.append(piece)
        seen += len(piece.text)
    return kept, True


def _finish(
    pieces: list[Piece], stop: Sequence[str], max_tokens: int | None, natural: str
) -> tuple[list[Piece], str]:
    pieces, stopped = _apply_stop(pieces, stop)
    counted = [p for p in pieces if p.kind != "echo"]
    if max_tokens is not None and len(counted) > max_tokens:
        # §2.4 / §7.2: max_tokens covers the chain of thought too, so a small budget can end
        # inside reasoning_content with no answer at all.
        cut: list[Piece] = []
        used = 0
        for piece in pieces:
            if piece.kind != "echo":
                if used == max_tokens:
                    break
                used += 1
            cut.append(piece)
        return cut, "length"
    return pieces, "stop" if stopped else natural


def _value_for(name: str, schema: Mapping[str, Any], key: str) -> Any:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer":
        return 1 + len(key) % 9
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return answer_tokens(f"{key}\x00{name}", 1)[0].rstrip(".")


def _arguments(tool: ToolSpec, key: str) -> str:
    properties = tool.parameters.get("properties")
    if not isinstance(properties, dict):
        return "{}"
    required = tool.parameters.get("required")
    names = required if isinstance(required, list) and required else list(properties)
    args = {n: _value_for(n, properties.get(n) or {}, key) for n in names if isinstance(n, str)}
    # A JSON *string*, spaced the way DeepSeek's model writes it (§2.3).
    return json.dumps(args, ensure_ascii=False)


_ID_ALPHABET = string.ascii_letters + string.digits


def _tool_calls(req: ChatRequest, key: str) -> list[ToolCall]:
    if req.tool_choice.startswith("="):
        wanted = req.tool_choice[1:]
        chosen = [t for t in req.tools if t.name == wanted] or [ToolSpec(wanted, {})]
    else:
        asked = key.lower()
        chosen = [t for t in req.tools if t.name.lower() in asked] or [req.tools[0]]
    return [
        ToolCall(
            f"call_{index:02d}_{''.join(random.choices(_ID_ALPHABET, k=24))}",
            tool.name,
            _arguments(tool, key),
        )
        for index, tool in enumerate(chosen)
    ]


def _wants_tool_call(req: ChatRequest) -> bool:
    if not req.tools or req.tool_choice == "none" or req.prefix is not None:
        return False
    if req.tool_choice != "auto":
        return True
    # "auto": call when the user just spoke; answer in text once tool results came back, so
    # a tool loop ends.
    return req.messages[-1].get("role") == "user"


def _json_pieces(
    req: ChatRequest, key: str, answer_n: int, empty: bool
) -> tuple[list[Piece], str | None]:
    if empty:
        return [], None  # §5.3: "the API may occasionally return empty content"
    prompt = " ".join(
        text_of(m.get("content")) for m in req.messages if m.get("role") in ("system", "user")
    )
    if "json" not in prompt.lower():
        # §5.3: without a JSON instruction the model may emit whitespace until max_tokens.
        count = req.max_tokens if req.max_tokens is not None else answer_n
        return [Piece("content", "\n") for _ in range(count)], "length"
    words = answer_tokens(key, answer_n)
    texts = ['{"answer": "', *words, '"}']
    return [Piece("content", t) for t in texts], None


def plan_chat(
    req: ChatRequest, *, answer_n: int, thinking_n: int, json_empty: bool = False
) -> Plan:
    """The deterministic answer to a chat request (see `_text`)."""
    key = conversation_key(req.messages)
    pieces: list[Piece] = []
    natural = "stop"
    calls: list[ToolCall] = []
    if req.prefix is not None:
        # §5.1 prefix completion: continue the canonical answer, so a continued answer
        # equals the uninterrupted one. Text already in the prefix means thinking is over.
        if req.thinking and not req.prefix:
            thoughts = thinking_tokens(key, thinking_n)
            rest = _continue(thoughts, req.prefix_reasoning or "")
            if rest is None:
                rest = thinking_tokens(key + "\x00continued", thinking_n)
            pieces += [Piece("reasoning", t) for t in rest if t]
        pieces += [Piece("content", t) for t in continue_after(key, req.prefix, answer_n) if t]
    else:
        if req.thinking:
            pieces += [Piece("reasoning", t) for t in thinking_tokens(key, thinking_n)]
        if _wants_tool_call(req):
            calls = _tool_calls(req, key)
            for index, call in enumerate(calls):
                pieces.append(Piece("tool_start", call.name, index))
                args = call.arguments
                pieces += [
                    Piece("tool_args", args[i : i + 8], index) for i in range(0, len(args), 8)
                ]
            natural = "tool_calls"
        elif req.json_mode:
            content, forced = _json_pieces(req, key, answer_n, json_empty)
            pieces += content
            natural = forced or natural
        else:
            pieces += [Piece("content", t) for t in answer_tokens(key, answer_n)]
    final, finish_reason = _finish(pieces, req.stop, req.max_tokens, natural)
    started = {p.tool for p in final if p.kind == "tool_start"}
    return Plan(
        pieces=tuple(final),
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens(req.messages, req.tools),
        thinking=req.thinking,
        tool_calls=tuple(c for i, c in enumerate(calls) if i in started),
        top_logprobs=req.top_logprobs,
    )


def plan_fim(req: FimRequest, *, answer_n: int) -> Plan:
    key = conversation_key(prompt=req.prompt + req.suffix)
    pieces = [Piece("echo", req.prompt)] if req.echo and req.prompt else []
    pieces += [Piece("content", t) for t in answer_tokens(key, answer_n)]
    final, finish_reason = _finish(pieces, req.stop, req.max_tokens, "stop")
    return Plan(
        pieces=tuple(final),
        finish_reason=finish_reason,
        prompt_tokens=max(_estimate_tokens(req.prompt + req.suffix), 1),
        top_logprobs=req.logprobs,
        leading_events=0,
    )


# -- rendering ----------------------------------------------------------------------------


def usage(plan: Plan, cache_hit: int) -> dict[str, Any]:
    """§2.3 usage, with the cache counts both where captures put them and as cached_tokens.

    Invariants: prompt = hit + miss, total = prompt + completion, reasoning <= completion.
    """
    prompt = plan.prompt_tokens
    hit = min(max(cache_hit, 0), prompt)
    completion = plan.completion_tokens
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": hit},
        "prompt_cache_hit_tokens": hit,
        "prompt_cache_miss_tokens": prompt - hit,
    }
    if plan.thinking:
        # Assumption: non-thinking answers carry no completion_tokens_details, as in the
        # pre-reasoner captures; consumers must cope with it missing.
        out["completion_tokens_details"] = {"reasoning_tokens": plan.reasoning_tokens}
    return out


def _logprob(token: str, rank: int = 0) -> float:
    return -round(0.01 * (1 + len(token) % 7) + 1.5 * rank, 4)


def _token_logprob(token: str, top: int) -> dict[str, Any]:
    alternatives = [token, *answer_tokens(token, max(top - 1, 0))]
    return {
        "token": token,
        "logprob": _logprob(token),
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": t, "logprob": _logprob(t, rank), "bytes": list(t.encode())}
            for rank, t in enumerate(alternatives[:top])
        ],
    }


def _fim_logprobs(pieces: Sequence[Piece], top: int, offset: int = 0) -> dict[str, Any]:
    tokens = [p.text for p in pieces if p.kind == "content"]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [_logprob(t) for t in tokens],
        "top_logprobs": [{t: _logprob(t)} for t in tokens] if top else None,
        "text_offset": offsets,
    }


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class Renderer:
    """Renders one plan: the metadata (id, created, …) is shared by all its chunks (§2.5)."""

    model: str
    fingerprint: str
    cache_hit: int = 0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: int = field(default_factory=lambda: int(time.time()))

    # -- chat ---------------------------------------------------------------------------

    def chat_message(self, plan: Plan) -> dict[str, Any]:
        content = plan.text("content")
        has_output = any(p.kind in ("content", "tool_start") for p in plan.pieces)
        message: dict[str, Any] = {"role": "assistant"}
        if plan.thinking and not has_output and plan.finish_reason not in ("stop", "tool_calls"):
            # §7.2: all of max_tokens spent on thought → content null.
            message["content"] = None
        else:
            message["content"] = content
        if plan.thinking:
            message["reasoning_content"] = plan.text("reasoning")
        if plan.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": "".join(
                            p.text for p in plan.pieces if p.kind == "tool_args" and p.tool == i
                        ),
                    },
                }
                for i, call in enumerate(plan.tool_calls)
            ]
        return message

    def _chat_logprobs(self, plan: Plan) -> dict[str, Any] | None:
        if plan.top_logprobs is None:
            return None
        return {
            "content": [
                _token_logprob(p.text, plan.top_logprobs)
                for p in plan.pieces
                if p.kind == "content"
            ]
        }

    def chat_body(self, plan: Plan) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": self.chat_message(plan),
                    "logprobs": self._chat_logprobs(plan),
                    "finish_reason": plan.finish_reason,
                }
            ],
            "usage": usage(plan, self.cache_hit),
            "system_fingerprint": self.fingerprint,
        }

    def _chunk(
        self,
        obj: str,
        choices: list[dict[str, Any]],
        usage_value: dict[str, Any] | None,
        with_usage: bool,
    ) -> bytes:
        payload: dict[str, Any] = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        }
        if with_usage:
            payload["usage"] = usage_value
        return b"data: " + _dumps(payload) + b"\n\n"

    def chat_events(
        self, plan: Plan, *, include_usage: bool, separate_usage: bool
    ) -> list[tuple[bool, bytes]]:
        """SSE events (without ``[DONE]``), each with "is a token" for pacing.

        Usage placement (§2.5): by default as captured on the wire — ``"usage": null`` on
        every chunk and the full usage on the chunk with the finish_reason. With
        ``separate_usage`` the documented variant: when include_usage is set, all chunks
        carry ``usage: null`` and one extra ``choices: []`` chunk carries the usage;
        without include_usage no chunk has a usage field.
        """
        with_usage = include_usage or not separate_usage
        events: list[tuple[bool, bytes]] = []

        def chunk(delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> bytes:
            use = usage(plan, self.cache_hit) if finish and not separate_usage else None
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return self._chunk("chat.completion.chunk", [choice], use, with_usage)

        # First chunk: role + empty text (§2.5); in thinking mode content is null and
        # reasoning_content "" as in the captured thinking stream.
        first: dict[str, Any] = {"role": "assistant"}
        if plan.thinking:
            first.update(content=None, reasoning_content="")
        else:
            first["content"] = ""
        events.append((False, chunk(first)))
        for piece in plan.pieces:
            if piece.kind == "reasoning":
                events.append((True, chunk({"content": None, "reasoning_content": piece.text})))
            elif piece.kind == "content":
                lp = None
                if plan.top_logprobs is not None:
                    lp = {"content": [_token_logprob(piece.text, plan.top_logprobs)]}
                events.append((True, chunk({"content": piece.text}, lp)))
            elif piece.kind == "tool_start":
                call = plan.tool_calls[piece.tool]
                fragment = {
                    "index": piece.tool,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                events.append((True, chunk({"tool_calls": [fragment]})))
            elif piece.kind == "tool_args":
                fragment = {"index": piece.tool, "function": {"arguments": piece.text}}
                events.append((True, chunk({"tool_calls": [fragment]})))
        events.append((False, chunk({"content": ""}, None, plan.finish_reason)))
        if separate_usage and include_usage:
            events.append(
                (False, self._chunk("chat.completion.chunk", [], usage(plan, self.cache_hit), True))
            )
        return events

    # -- FIM ----------------------------------------------------------------------------

    def fim_body(self, plan: Plan) -> dict[str, Any]:
        text = "".join(p.text for p in plan.pieces)
        logprobs = None
        if plan.top_logprobs is not None:
            logprobs = _fim_logprobs(plan.pieces, plan.top_logprobs, len(plan.text("echo")))
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "text": text,
                    "index": 0,
                    "logprobs": logprobs,
                    "finish_reason": plan.finish_reason,
                }
            ],
            "usage": usage(plan, self.cache_hit),
            "system_fingerprint": self.fingerprint,
        }

    def fim_events(
        self, plan: Plan, *, include_usage: bool, separate_usage: bool
    ) -> list[tuple[bool, bytes]]:
        with_usage = include_usage or not separate_usage
        events: list[tuple[bool, bytes]] = []

        def chunk(text: str, logprobs: Any = None, finish: str | None = None) -> bytes:
            use = usage(plan, self.cache_hit) if finish and not separate_usage else None
            choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
            return self._chunk("text_completion", [choice], use, with_usage)

        offset = 0
        for piece in plan.pieces:
            lp = None
            if plan.top_logprobs is not None and piece.kind == "content":
                lp = _fim_logprobs([piece], plan.top_logprobs, offset)
            offset += len(piece.text)
            events.append((piece.kind != "echo", chunk(piece.text, lp)))
        events.append((False, chunk("", None, plan.finish_reason)))
        if separate_usage and include_usage:
            events.append(
                (False, self._chunk("text_completion", [], usage(plan, self.cache_hit), True))
            )
        return events
