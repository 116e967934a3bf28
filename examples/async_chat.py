"""Many concurrent chats with AsyncClient: the local daemon has one slot, so dsollama sends
the calls that could not get a first token in time to the hosted API — at once, instead
of letting them queue silently.

    python examples/async_chat.py [--real]
"""

from __future__ import annotations

import asyncio

from _servers import client_settings, servers

import dsollama


async def main() -> None:
    with servers(slots=1, tokens_per_second=40) as env:
        async with dsollama.AsyncClient(**client_settings(env), first_token_timeout=1.0) as client:
            questions = [f"Question {i}: what is {i} + {i}?" for i in range(6)]
            answers = await asyncio.gather(
                *(
                    client.chat("deepseek-r1:8b", [{"role": "user", "content": q}], think=False)
                    for q in questions
                )
            )
            for question, answer in zip(questions, answers, strict=True):
                reason = f" ({answer.fallback_reason})" if answer.fallback_reason else ""
                print(f"{question} → {answer.served_by.kind}{reason}")


asyncio.run(main())
