"""Doubles of the Ollama daemon, the DeepSeek API, vLLM and llama-server, for tests,
benchmarks and demos.

`FakeOllama`, `FakeDeepSeek`, `FakeVLLM` and `FakeLlamaServer` are real HTTP servers on
loopback that behave like the servers they stand in for: status codes, error texts,
stream framing, queueing, metrics, faults.
They share one fault vocabulary (`Fault`, `FaultPlan`). `RedisServer` is no double: a
real ``redis-server`` on a free loopback port, for tests of shared routing state. Names load lazily, so importing
this package costs nothing until a double is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._faults import Fault, FaultPlan
    from ._server import RecordedRequest
    from .deepseek import FakeDeepSeek
    from .llamacpp import FakeLlamaServer
    from .ollama import FakeModel, FakeOllama
    from .redis_server import RedisServer, RedisServerMissing
    from .vllm import FakeVLLM

__all__ = [
    "FakeDeepSeek",
    "FakeLlamaServer",
    "FakeModel",
    "FakeOllama",
    "FakeVLLM",
    "Fault",
    "FaultPlan",
    "RecordedRequest",
    "RedisServer",
    "RedisServerMissing",
]

_EXPORTS = {
    "FakeOllama": ".ollama",
    "FakeModel": ".ollama",
    "FakeDeepSeek": ".deepseek",
    "FakeVLLM": ".vllm",
    "FakeLlamaServer": ".llamacpp",
    "Fault": "._faults",
    "FaultPlan": "._faults",
    "RecordedRequest": "._server",
    "RedisServer": ".redis_server",
    "RedisServerMissing": ".redis_server",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
