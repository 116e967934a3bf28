"""Run a double as a process: ``python -m dsollama.testing ollama|deepseek|vllm|llamacpp [options]``.

The first line on stdout is the double's base URL (benchmarks and other processes parse
it); the process serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._double import Double

USAGE = "usage: python -m dsollama.testing {ollama,deepseek,vllm,llamacpp} [options]"


def ollama_main(argv: Sequence[str]) -> int:
    from .ollama import FakeOllama

    parser = argparse.ArgumentParser(
        prog="python -m dsollama.testing ollama", description="Serve the Ollama double."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 lets the OS choose")
    parser.add_argument("--model", action="append", default=[], help="install a model (repeatable)")
    parser.add_argument("--server-version", default="0.33.0", help="what /api/version says")
    parser.add_argument("--slots", type=int, default=1, help="parallel requests per model")
    parser.add_argument("--max-loaded", type=int, default=3)
    parser.add_argument("--max-queue", type=int, default=512)
    parser.add_argument("--load-seconds", type=float, default=0.0)
    parser.add_argument("--keep-alive-seconds", type=float, default=300.0)
    parser.add_argument("--prompt-seconds", type=float, default=0.0)
    parser.add_argument(
        "--tokens-per-second", type=float, default=1000.0, help="0 = as fast as possible"
    )
    parser.add_argument("--answer-tokens", type=int, default=12)
    parser.add_argument("--thinking-tokens", type=int, default=8)
    parser.add_argument("--think-inline", action="store_true", help="old-server <think> mode")
    parser.add_argument("--pull-bytes-per-second", type=float, default=50_000_000)
    parser.add_argument("--embed-dims", type=int, default=8)
    args = parser.parse_args(list(argv))

    fake = FakeOllama(
        host=args.host,
        port=args.port,
        models=args.model,
        version=args.server_version,
        slots=args.slots,
        max_loaded=args.max_loaded,
        max_queue=args.max_queue,
        load_seconds=args.load_seconds,
        keep_alive_seconds=args.keep_alive_seconds,
        prompt_seconds=args.prompt_seconds,
        tokens_per_second=args.tokens_per_second,
        answer_tokens=args.answer_tokens,
        thinking_tokens=args.thinking_tokens,
        think_inline=args.think_inline,
        pull_bytes_per_second=args.pull_bytes_per_second,
        embed_dims=args.embed_dims,
    )
    with fake:
        print(fake.url, flush=True)
        _wait_for_signal()
    return 0


def _add_pacing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt-seconds", type=float, default=0.0, help="from taking a slot to the first token"
    )
    parser.add_argument(
        "--token-seconds", type=float, default=0.001, help="per token after the first (0: unpaced)"
    )
    parser.add_argument("--answer-tokens", type=int, default=12)
    parser.add_argument("--thinking-tokens", type=int, default=8)


def vllm_main(argv: Sequence[str]) -> int:
    from .vllm import DEFAULT_MODEL, FakeVLLM

    parser = argparse.ArgumentParser(
        prog="python -m dsollama.testing vllm",
        description="Serve the vLLM double (OpenAI-compatible server, continuous batching).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 lets the OS choose")
    parser.add_argument("--served-model-name", nargs="+", default=[DEFAULT_MODEL])
    parser.add_argument("--api-key", default=None, help="required on /v1/* when given")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="requests run at once")
    parser.add_argument("--max-model-len", type=int, default=16384)
    parser.add_argument("--kv-cache-tokens", type=int, default=None)
    parser.add_argument(
        "--reasoning-parser", default=None, help="e.g. deepseek_r1: reasoning out of the content"
    )
    parser.add_argument(
        "--reasoning-field", default="reasoning_content", choices=["reasoning_content", "reasoning"]
    )
    parser.add_argument(
        "--error-wrapped", action="store_true", help='errors as {"error": {...}} (newer versions)'
    )
    parser.add_argument("--server-version", default="0.11.0", help="what /version says")
    _add_pacing(parser)
    args = parser.parse_args(list(argv))
    return _serve(
        "vLLM",
        lambda: FakeVLLM(
            host=args.host,
            port=args.port,
            served_model_names=args.served_model_name,
            api_key=args.api_key,
            max_num_seqs=args.max_num_seqs,
            max_model_len=args.max_model_len,
            kv_cache_tokens=args.kv_cache_tokens,
            reasoning_parser=args.reasoning_parser is not None,
            reasoning_field=args.reasoning_field,
            error_wrapped=args.error_wrapped,
            version=args.server_version,
            prompt_seconds=args.prompt_seconds,
            token_seconds=args.token_seconds,
            answer_tokens=args.answer_tokens,
            thinking_tokens=args.thinking_tokens,
        ),
    )


def llamacpp_main(argv: Sequence[str]) -> int:
    from .llamacpp import DEFAULT_ALIAS, FakeLlamaServer

    parser = argparse.ArgumentParser(
        prog="python -m dsollama.testing llamacpp",
        description="Serve the llama-server double (fixed slots, deferred requests).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 lets the OS choose")
    parser.add_argument("-a", "--alias", default=DEFAULT_ALIAS, help="model alias")
    parser.add_argument("-m", "--model", default=f"models/{DEFAULT_ALIAS}.gguf", help="model path")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("-np", "--parallel", type=int, default=1, help="number of slots")
    parser.add_argument("-c", "--ctx-size", type=int, default=4096, help="shared by the slots")
    parser.add_argument("--kv-unified", action="store_true", help="every slot sees all of -c")
    parser.add_argument("--metrics", action="store_true", help="serve /metrics")
    parser.add_argument("--no-slots", action="store_true", help="/slots answers 501")
    parser.add_argument(
        "--reasoning-format", default="deepseek", choices=["deepseek", "auto", "none"]
    )
    parser.add_argument("--load-seconds", type=float, default=0.0, help="503 'Loading model' first")
    _add_pacing(parser)
    args = parser.parse_args(list(argv))
    return _serve(
        "llama-server",
        lambda: FakeLlamaServer(
            host=args.host,
            port=args.port,
            model_alias=args.alias,
            model_path=args.model,
            api_key=args.api_key,
            parallel=args.parallel,
            ctx_size=args.ctx_size,
            kv_unified=args.kv_unified,
            metrics=args.metrics,
            slots_endpoint=not args.no_slots,
            reasoning_format=args.reasoning_format,
            load_seconds=args.load_seconds,
            prompt_seconds=args.prompt_seconds,
            token_seconds=args.token_seconds,
            answer_tokens=args.answer_tokens,
            thinking_tokens=args.thinking_tokens,
        ),
    )


def _serve(name: str, make: Callable[[], Double]) -> int:
    """Start the double, print its URL, serve until SIGINT/SIGTERM; 1 if it cannot start."""
    try:
        fake = make().start()
    except (OSError, ValueError) as exc:
        print(f"cannot start the {name} double: {exc}", file=sys.stderr)
        return 1
    try:
        print(fake.url, flush=True)
        _wait_for_signal()
    finally:
        fake.stop()
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    # wait() with a timeout keeps the main thread responsive to signals on every platform.
    while not stop.wait(0.5):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    which, rest = args[0], args[1:]
    if which == "ollama":
        return ollama_main(rest)
    if which == "deepseek":
        from .deepseek import main as deepseek_main

        return deepseek_main(rest)
    if which == "vllm":
        return vllm_main(rest)
    if which == "llamacpp":
        return llamacpp_main(rest)
    print(f"unknown double {which!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
