"""Run a double as a process: ``python -m dsollama.testing ollama|deepseek [options]``.

The first line on stdout is the double's base URL (benchmarks and other processes parse
it); the process serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

USAGE = "usage: python -m dsollama.testing {ollama,deepseek} [options]"


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
    print(f"unknown double {which!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
