"""Chat, as with `ollama.Client` — plus where the answer came from.

python examples/chat.py          # against simulated servers
python examples/chat.py --real   # against your daemon (and DEEPSEEK_API_KEY)
"""

from __future__ import annotations

from _servers import client_settings, servers

import dsollama

with servers() as env, dsollama.Client(**client_settings(env)) as client:
    response = client.chat(
        "deepseek-r1:8b",
        messages=[{"role": "user", "content": "Why would I run DeepSeek on my own machine?"}],
    )
    print("thinking:", response.message.thinking)
    print("answer:  ", response.message.content)
    print("served by:", response.served_by)
    print("attempts:", [a.describe() for a in response.attempts or []])
