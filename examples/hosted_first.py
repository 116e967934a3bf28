"""Hosted first, for people whose problem is the hosted API saying "server busy": when it
holds the request with keep-alive filler or answers 429/503, the local model answers.

    python examples/hosted_first.py   # simulated servers (it injects the busy episode)
"""

from __future__ import annotations

from _servers import client_settings, servers

import dsollama
from dsollama.testing import Fault

with servers() as env:
    with dsollama.Client(
        **client_settings(env), policy="hosted-first", first_token_timeout=1.0
    ) as client:
        question = [{"role": "user", "content": "Hello!"}]
        r = client.chat("deepseek-flash", question)
        print("normally:", r.served_by, f"(~${r.cost_usd:.6f})")
        env["_deepseek"].add_fault(Fault("keepalive", seconds=30, interval=0.1))
        r = client.chat("deepseek-flash", question)
        print("while the hosted API only sends keep-alives:", r.served_by)
        print("   because:", r.fallback_reason)
