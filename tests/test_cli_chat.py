"""`dsollama chat` / `dsollama generate` through click's runner, against the doubles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from dsollama.cli import cli
from dsollama.testing import FakeDeepSeek, FakeOllama


@pytest.fixture
def doubles() -> Iterator[tuple[FakeOllama, FakeDeepSeek]]:
    with FakeOllama(models=["deepseek-r1:8b"]) as ollama, FakeDeepSeek() as deepseek:
        yield ollama, deepseek
        ollama.release()
        deepseek.release()


def env_for(
    ollama: FakeOllama, deepseek: FakeDeepSeek | None = None, **extra: str
) -> dict[str, Any]:
    env: dict[str, Any] = {
        "OLLAMA_HOST": ollama.url,
        "DSOLLAMA_FIRST_TOKEN_TIMEOUT": "1.0",
        "DSOLLAMA_CONNECT_TIMEOUT": "1.0",
    }
    if deepseek is not None:
        env.update({"DEEPSEEK_BASE_URL": deepseek.url, "DEEPSEEK_API_KEY": deepseek.api_key})
    env.update(extra)
    return env


def test_chat_prints_the_answer_and_a_status_line(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, _ = doubles
    result = CliRunner().invoke(cli, ["chat", "deepseek-r1:8b", "Why local?"], env=env_for(ollama))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()  # the answer, and only the answer, on stdout
    assert "served by local deepseek-r1:8b" in result.stderr
    assert "first token" in result.stderr
    assert "[thinking]" in result.stderr  # reasoning shown (on stderr)


def test_hide_thinking(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, _ = doubles
    result = CliRunner().invoke(
        cli, ["chat", "deepseek-r1:8b", "hi", "--hide-thinking"], env=env_for(ollama)
    )
    assert result.exit_code == 0
    assert "[thinking]" not in result.stderr  # the reasoning's header (and so its text)


def test_the_status_line_says_why_it_fell_back(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, deepseek = doubles
    ollama.refuse_connections()
    result = CliRunner().invoke(
        cli, ["chat", "deepseek-r1:8b", "hi"], env=env_for(ollama, deepseek)
    )
    assert result.exit_code == 0, result.output
    assert "served by hosted deepseek-flash" in result.stderr
    assert "fallback: local daemon unreachable" in result.stderr
    assert deepseek.api_key not in result.output


def test_no_route_is_one_line_with_the_fix_and_exit_1(
    doubles: tuple[FakeOllama, FakeDeepSeek],
) -> None:
    ollama, _ = doubles
    ollama.refuse_connections()
    result = CliRunner().invoke(cli, ["chat", "deepseek-r1:8b", "hi"], env=env_for(ollama))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1
    assert "cannot reach the Ollama daemon" in error_lines[0]
    assert "ollama serve" in error_lines[0]


def test_contradicting_flags_are_a_usage_error(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, _ = doubles
    result = CliRunner().invoke(
        cli, ["chat", "deepseek-r1:8b", "hi", "--local-only", "--hosted-first"], env=env_for(ollama)
    )
    assert result.exit_code == 2
    assert "contradict" in result.stderr


def test_local_only_flag_keeps_the_call_on_this_machine(
    doubles: tuple[FakeOllama, FakeDeepSeek],
) -> None:
    ollama, deepseek = doubles
    ollama.refuse_connections()
    result = CliRunner().invoke(
        cli, ["chat", "deepseek-r1:8b", "hi", "--local-only"], env=env_for(ollama, deepseek)
    )
    assert result.exit_code == 1
    assert deepseek.requests == []


def test_interactive_chat_keeps_the_conversation(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, _ = doubles
    result = CliRunner().invoke(
        cli,
        ["chat", "deepseek-r1:8b", "-i"],
        input="first question\nsecond question\n/bye\n",
        env=env_for(ollama),
    )
    assert result.exit_code == 0, result.output
    chats = ollama.recorded("/api/chat")
    assert len(chats) == 2
    second = chats[1].json["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[0]["content"] == "first question"


def test_generate_reads_the_prompt_from_stdin(doubles: tuple[FakeOllama, FakeDeepSeek]) -> None:
    ollama, _ = doubles
    result = CliRunner().invoke(
        cli, ["generate", "deepseek-r1:8b", "-"], input="complete me", env=env_for(ollama)
    )
    assert result.exit_code == 0, result.output
    assert ollama.recorded("/api/generate")[0].json["prompt"] == "complete me"
    assert "served by local" in result.stderr


def test_a_cli_call_is_in_the_request_log(
    doubles: tuple[FakeOllama, FakeDeepSeek], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from dsollama._calllog import open_call_log
    from dsollama._config import load_settings

    ollama, deepseek = doubles
    ollama.refuse_connections()
    for name, value in env_for(ollama, deepseek).items():
        monkeypatch.setenv(name, str(value))
    chatted = CliRunner().invoke(cli, ["chat", "deepseek-r1:8b", "What is logged?"])
    assert chatted.exit_code == 0, chatted.output
    call_log = open_call_log(load_settings())  # the same writer the command used
    assert call_log is not None
    assert call_log.log.flush()
    logged = CliRunner().invoke(cli, ["logs", "--json"])
    assert logged.exit_code == 0, logged.output
    entries = json.loads(logged.stdout)
    entries = entries if isinstance(entries, list) else entries.get("calls", [])
    newest = json.dumps(entries[0])
    assert '"cli"' in newest  # made by the command line
    assert "What is logged?" in newest
    assert "deepseek-flash" in newest  # served hosted, after the local daemon refused
    assert deepseek.api_key not in logged.stdout
