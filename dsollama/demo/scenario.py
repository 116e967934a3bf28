"""What the demo simulates, and the settings the demo's client gets.

Both servers are doubles from `dsollama.testing`, started in this process on loopback.
The client is configured explicitly with their URLs and the double's key: the user's
``DEEPSEEK_API_KEY``, ``OLLAMA_HOST``, config file and request log are never read or
written, so a demo can neither spend real money nor pollute a real log.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsollama._config import Settings
    from dsollama._provision import ProgressEvent
    from dsollama.testing import FakeDeepSeek, FakeOllama

__all__ = ["MODELFILE_NAME", "Scenario", "SimulatedServers", "find_modelfiles"]

MODELFILE_NAME = "deepseek-r1-reasoner"
"The Modelfile model the demo provisions and then chats with."

# Used when no Modelfiles/ folder with the demo's Modelfile is at hand (an installed wheel
# carries no Modelfiles/): the essentials of Modelfiles/deepseek-r1-reasoner.Modelfile.
_BUILTIN_MODELFILE = """\
# deepseek-r1-reasoner (the demo's built-in copy): step-by-step reasoning with a longer
# context and the sampling DeepSeek recommends for R1.
FROM deepseek-r1:8b
PARAMETER num_ctx 16384
PARAMETER temperature 0.6
PARAMETER top_p 0.95
"""


@dataclass(frozen=True)
class Scenario:
    """The simulated world: one busy local slot, a hosted API with busy episodes."""

    requests: int = 10
    "Concurrent chats in the burst (sent twice: dsollama, then the plain client)."
    spread_seconds: float = 2.0
    "The burst's requests leave evenly over this window (0: all at once)."
    slots: int = 1
    "Parallel requests the local daemon serves per model (Ollama's default is 1)."
    load_seconds: float = 1.5
    "Cold load of the model into memory."
    prompt_seconds: float = 0.05
    tokens_per_second: float = 30.0
    "A mid-range GPU running an 8B model."
    answer_tokens: int = 24
    thinking_tokens: int = 6
    pull_bytes_per_second: float = 40_000.0
    "The double's weights are 100,000 times smaller than real ones (deepseek-r1:8b: 52 kB)."
    hosted_first_token_seconds: float = 0.3
    hosted_tokens_per_second: float = 60.0
    keepalive_seconds: float = 1.0
    "How long the hosted API holds the first request it gets with keep-alive filler."
    first_token_budget: float = 2.0
    "dsollama's first-token budget for the local route."
    plain_timeout: float = 8.0
    "The explicit timeout given to the official client (its default is none at all)."

    @classmethod
    def quick_mode(cls) -> Scenario:
        """Everything shorter, for CI and impatient people: a few seconds in all."""
        return cls(
            requests=6,
            spread_seconds=0.8,
            load_seconds=0.6,
            tokens_per_second=40.0,
            answer_tokens=14,
            thinking_tokens=4,
            pull_bytes_per_second=200_000.0,
            hosted_first_token_seconds=0.15,
            hosted_tokens_per_second=120.0,
            keepalive_seconds=0.4,
            first_token_budget=1.0,
            plain_timeout=2.0,
        )

    def with_requests(self, requests: int | None) -> Scenario:
        return self if requests is None else dataclasses.replace(self, requests=requests)

    @property
    def local_answer_seconds(self) -> float:
        """How long one warm local answer takes, first token to last."""
        return (self.answer_tokens + self.thinking_tokens) / self.tokens_per_second

    def describe(self) -> list[str]:
        """What is simulated, in a few lines for the top of the screen."""
        return [
            "Both servers are SIMULATED on this machine by dsollama.testing: "
            "no Ollama, no API key, no network.",
            f"  local 'Ollama' : {self.slots} slot (extra requests wait silently), "
            f"{self.tokens_per_second:g} tokens/s, ~{self.local_answer_seconds:.1f}s per answer, "
            f"{self.load_seconds:g}s cold load",
            f"  hosted 'DeepSeek': first token after {self.hosted_first_token_seconds:g}s, "
            f"busy episodes: one 503, keep-alive filler for {self.keepalive_seconds:g}s, one 429",
            f"  dsollama: local first, first-token budget {self.first_token_budget:g}s, up to 3 "
            "tries per route; your DEEPSEEK_API_KEY, config file and request log are not used.",
        ]


def find_modelfiles(explicit: str | Path | None) -> tuple[Path, bool]:
    """The folder to provision from, and whether it is a temporary built-in copy.

    ``explicit`` wins; else ./Modelfiles when it has the demo's Modelfile; else a
    temporary folder holding the built-in copy (the caller removes it).
    """
    if explicit is not None:
        return Path(explicit), False
    here = Path("Modelfiles")
    if (here / f"{MODELFILE_NAME}.Modelfile").is_file():
        return here, False
    folder = Path(tempfile.mkdtemp(prefix="dsollama-demo-"))
    (folder / f"{MODELFILE_NAME}.Modelfile").write_text(_BUILTIN_MODELFILE, encoding="utf-8")
    return folder, True


class SimulatedServers:
    """The two doubles, started on loopback for the length of a ``with`` block."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._ollama: FakeOllama | None = None
        self._deepseek: FakeDeepSeek | None = None

    def __enter__(self) -> SimulatedServers:
        from dsollama.testing import FakeDeepSeek, FakeOllama

        s = self.scenario
        self._ollama = FakeOllama(
            slots=s.slots,
            load_seconds=s.load_seconds,
            prompt_seconds=s.prompt_seconds,
            tokens_per_second=s.tokens_per_second,
            answer_tokens=s.answer_tokens,
            thinking_tokens=s.thinking_tokens,
            pull_bytes_per_second=s.pull_bytes_per_second,
        ).start()
        try:
            self._deepseek = FakeDeepSeek(
                first_token_seconds=s.hosted_first_token_seconds,
                tokens_per_second=s.hosted_tokens_per_second,
                answer_tokens=s.answer_tokens,
                thinking_tokens=s.thinking_tokens,
            ).start()
        except BaseException:
            self._ollama.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for fake in (self._ollama, self._deepseek):
            if fake is not None:
                fake.release()  # nothing held may keep a client (or the shutdown) waiting
                fake.stop()

    @property
    def ollama(self) -> FakeOllama:
        assert self._ollama is not None, "use SimulatedServers in a with block"
        return self._ollama

    @property
    def deepseek(self) -> FakeDeepSeek:
        assert self._deepseek is not None, "use SimulatedServers in a with block"
        return self._deepseek

    def settings(self) -> Settings:
        """dsollama settings pointing at the doubles, built without reading env or files."""
        from pydantic import SecretStr

        from dsollama._config import Settings

        s = self.scenario
        return Settings(
            ollama_hosts=(self.ollama.url,),
            hosted_base_url=self.deepseek.url,
            hosted_api_key=SecretStr(self.deepseek.api_key),
            local_slots=s.slots,
            first_token_timeout=s.first_token_budget,
            # A request can meet both hosted errors in a row (the 503, then the 429 on its
            # retry): a third try lets it through. With the default two, such a call would
            # fail, as the local route was skipped and is not tried again.
            max_attempts=3,
            # Deadlines scaled to the scenario: nothing in it should take longer.
            total_timeout=max(30.0, 4 * s.plain_timeout),
            log=False,
        )

    def arm_hosted_busy_episodes(self) -> None:
        """The hosted API's busy shapes, taken by the first hosted requests in turn.

        The filler sits between the two errors: a request that retries after one of them
        then waits through filler and is answered, instead of meeting the other error too.
        """
        from dsollama.testing import Fault

        self.deepseek.add_fault(
            Fault("status", status=503),
            Fault("keepalive", seconds=self.scenario.keepalive_seconds),
            Fault("status", status=429, message="Rate limit reached, please slow down"),
        )

    async def provision(self, modelfiles: Path) -> AsyncIterator[ProgressEvent]:
        """Pull the base model and create the demo's Modelfile model, with the real code."""
        from dsollama._provision import AsyncProvisioner

        settings = self.settings()
        async with AsyncProvisioner(self.ollama.url, settings=settings) as prov:
            async for event in prov.provision([MODELFILE_NAME], modelfiles):
                yield event

    async def unload(self) -> None:
        """Make the local model cold again, so the second burst starts as the first did."""
        import ollama

        async with ollama.AsyncClient(host=self.ollama.url, timeout=10.0) as client:
            await client.generate(MODELFILE_NAME, keep_alive=0)
