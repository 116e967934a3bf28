"""LiteLLM's Router sending one burst: run by the interpreter of a throwaway virtualenv.

LiteLLM is never a dependency of dsollama and never goes into the project's environment
(its PyPI releases were compromised twice; see BENCHMARKS.md). `bench_busy_burst` runs
this file with the Python of a separate virtualenv, so it imports nothing but the
standard library and litellm. It prints the same JSON shape as `_burst_clients`.

Variants: ``litellm-router`` (``ollama_chat/`` then ``deepseek/`` deployment, ``fallbacks``,
``stream_timeout`` = the first-token budget) and ``litellm-parallel1`` (the same, with
``max_parallel_requests=1`` on the local deployment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any

# No network at import (the model cost map), no telemetry, quiet logs.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

MESSAGES = [{"role": "user", "content": "Why run DeepSeek locally?"}]


def _router(args: argparse.Namespace) -> Any:
    from litellm import Router

    local: dict[str, Any] = {
        "model": f"ollama_chat/{args.model}",
        "api_base": args.ollama,
        "stream_timeout": args.budget,
        "timeout": args.timeout,
    }
    if args.variant == "litellm-parallel1":
        local["max_parallel_requests"] = args.slots
    hosted = {
        "model": f"deepseek/{args.hosted_model}",
        "api_base": args.hosted,
        "api_key": args.key,
        "timeout": args.deadline,
    }
    return Router(
        model_list=[
            {"model_name": "local", "litellm_params": local},
            {"model_name": "hosted", "litellm_params": hosted},
        ],
        fallbacks=[{"local": ["hosted"]}],
        num_retries=0,
    )


def _route(chunk: Any, response: Any) -> str:
    hidden = getattr(response, "_hidden_params", None) or {}
    base = str(hidden.get("api_base") or "")
    model = str(getattr(chunk, "model", "") or "")
    if "deepseek-flash" in model or (base and base.rstrip("/").endswith(_HOSTED_PORT)):
        return "hosted"
    return "local"


_HOSTED_PORT = ""


async def _one(
    router: Any, args: argparse.Namespace, started: float, group: str = "local"
) -> dict[str, Any]:
    record: dict[str, Any] = {"ok": False, "route": None, "ttft": None, "latency": 0.0}

    async def call() -> None:
        response = await router.acompletion(model=group, messages=MESSAGES, stream=True)
        async for chunk in response:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text and record["ttft"] is None:
                record["ttft"] = time.perf_counter() - started
                record["route"] = _route(chunk, response)

    try:
        await asyncio.wait_for(call(), args.deadline)
        record["ok"] = True
    except (TimeoutError, asyncio.TimeoutError):
        record["error"] = "deadline"
    except Exception as exc:
        record["error"] = type(exc).__name__
    record["latency"] = time.perf_counter() - started
    if not record["ok"]:
        record["ttft"] = None
    return record


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    global _HOSTED_PORT
    _HOSTED_PORT = ":" + args.hosted.rsplit(":", 1)[-1].rstrip("/")
    router = _router(args)
    # One call to each route first, as every other client does.
    warm = [
        await _one(router, args, time.perf_counter()),
        await _one(router, args, time.perf_counter(), "hosted"),
    ]
    started = time.perf_counter()
    records = await asyncio.gather(*(_one(router, args, started) for _ in range(args.n)))
    return {"warmup": warm, "requests": list(records)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one burst through LiteLLM's Router")
    parser.add_argument("--variant", choices=("litellm-router", "litellm-parallel1"))
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--ollama", required=True)
    parser.add_argument("--hosted", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--hosted-model", required=True)
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--slots", type=int, required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--deadline", type=float, required=True)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    result = asyncio.run(main_async(args))
    import litellm

    result["litellm_version"] = getattr(litellm, "version", None) or _version()
    print(json.dumps(result))
    return 0


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
