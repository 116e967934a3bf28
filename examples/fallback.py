"""What happens when things go wrong: a dead daemon, a busy one, a broken stream.

python examples/fallback.py      # simulated servers only (it injects the faults)
"""

from __future__ import annotations

from _servers import client_settings, servers

import dsollama
from dsollama.testing import Fault

QUESTION = [{"role": "user", "content": "Summarise why fallback matters."}]

with servers() as env:
    ollama = env["_ollama"]
    client = dsollama.Client(**client_settings(env), breaker_cooldown=60)

    print("1. The daemon is down: the call goes hosted at once, and the breaker remembers.")
    ollama.refuse_connections()
    for _ in range(2):
        r = client.chat("deepseek-r1:8b", QUESTION, think=False)
        print("  ", [a.describe() for a in r.attempts or []])
    ollama.accept_connections()

    print("2. The daemon answers 503 once: one retry with backoff, still local.")
    client.close()
    client = dsollama.Client(**client_settings(env))
    ollama.add_fault(Fault("status", status=503, path="/api/chat"))
    r = client.chat("deepseek-r1:8b", QUESTION, think=False)
    print("  ", [a.describe() for a in r.attempts or []])

    print("3. A stream breaks after some text: an error that carries the partial answer...")
    ollama.add_fault(Fault("error_line", after_chunks=4, path="/api/chat"))
    try:
        for _ in client.chat("deepseek-r1:8b", QUESTION, stream=True, think=False):
            pass
    except dsollama.StreamInterruptedError as error:
        print(f"   StreamInterruptedError, partial text {error.partial_text!r}")

    print("   ...or, when allowed, the hosted API continues it from where it stopped.")
    ollama.add_fault(Fault("error_line", after_chunks=4, path="/api/chat"))
    parts = list(
        client.chat("deepseek-r1:8b", QUESTION, stream=True, think=False, continue_stream=True)
    )
    print("   seams:", parts[-1].seams)
    client.close()
