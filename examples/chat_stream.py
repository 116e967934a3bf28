"""Stream an answer: reasoning first, then the answer, each chunk saying which route served it.

python examples/chat_stream.py [--real]
"""

from __future__ import annotations

import sys

from _servers import client_settings, servers

import dsollama

with servers() as env, dsollama.Client(**client_settings(env)) as client:
    last = None
    for part in client.chat(
        "deepseek-r1:8b",
        messages=[{"role": "user", "content": "Explain local-first fallback in one paragraph."}],
        stream=True,
    ):
        if part.message.thinking:
            sys.stdout.write(f"\033[2m{part.message.thinking}\033[0m")
        sys.stdout.write(part.message.content or "")
        sys.stdout.flush()
        last = part
    assert last is not None
    print(f"\n\n— {last.served_by} in {last.total_duration / 1e9:.2f}s")
