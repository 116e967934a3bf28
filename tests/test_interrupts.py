"""Ctrl-C always lands: sync calls and streams raise KeyboardInterrupt and cancel the
upstream request, the CLI exits 130 with one line and no traceback, interactive chat goes on.

Each answer here is held by the double until it is released, so only the interrupt can end
it, however slow the machine; each interrupt is sent once the double holds the request.
"""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import dsollama
from dsollama import _loop
from dsollama.cli import cli
from dsollama.testing import FakeOllama, Fault

from .conftest import USER

MODEL = "deepseek-r1:8b"
# Generous: the suite shares 2 cores with other work. Passing tests never wait this long.
DEADLINE = 60.0
# No client deadline may end a held answer before the interrupt does.
PATIENT = {"first_token_timeout": 600.0, "gap_timeout": 600.0, "total_timeout": 600.0}
PATIENT_ENV = {f"DSOLLAMA_{name.upper()}": str(value) for name, value in PATIENT.items()}


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt() -> Iterator[None]:
    # A shell starts background jobs (`pytest ... &`) with SIGINT ignored and Python keeps
    # it so: interrupt_main() and a real SIGINT would then do nothing, here and in the CLI
    # processes started from here. Give this process, and so its children, a terminal's
    # Ctrl-C, whatever the suite inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(models=[MODEL]) as fake:
        yield fake
        fake.release()


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    """Poll a condition the double exposes (it has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def held(ollama: FakeOllama) -> Callable[[], bool]:
    """True while the double holds one request (a stall waiting for release)."""
    return lambda: ollama.faults.stalled() == 1


def waiting_in_the_client() -> bool:
    """True while the main thread waits for an answer inside the sync client."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        if frame.f_code is _loop._in_slices.__code__:
            return True
        frame = frame.f_back
    return False


def ctrl_c_when(condition: Callable[[], bool], ollama: FakeOllama) -> threading.Event:
    """Interrupt the main thread, as Ctrl-C does, once ``condition`` holds and the main
    thread waits in the client: an interrupt sent earlier (while the test itself still
    runs, say starting this thread) would test nothing.

    The returned event says it was sent. If that moment never comes, the held answer is
    released instead, so the call ends and the test fails rather than hangs.
    """
    sent = threading.Event()

    def run() -> None:
        if wait_until(lambda: condition() and waiting_in_the_client()):
            sent.set()
            _thread.interrupt_main()
        else:
            ollama.release()

    threading.Thread(target=run, daemon=True).start()
    return sent


def hold_after(chunks: int) -> Fault:
    return Fault("stall_after", after_chunks=chunks, seconds=0, path="/api/chat")


# -- the sync client ---------------------------------------------------------------------


def test_ctrl_c_during_a_sync_call_raises_and_cancels_the_upstream_request(
    ollama: FakeOllama,
) -> None:
    ollama.add_fault(hold_after(1))
    client = dsollama.Client(ollama.url, log=False, **PATIENT)
    sent = ctrl_c_when(held(ollama), ollama)
    with pytest.raises(KeyboardInterrupt):
        client.chat(MODEL, USER)
    assert sent.is_set(), "the chat never reached the double"
    assert wait_until(lambda: ollama.in_flight(MODEL) == 0), "the upstream request still runs"
    client.close()


def test_ctrl_c_while_a_sync_stream_waits_raises_and_cancels_the_upstream_request(
    ollama: FakeOllama,
) -> None:
    ollama.add_fault(hold_after(2))
    client = dsollama.Client(ollama.url, log=False, **PATIENT)
    parts = client.chat(MODEL, USER, stream=True)
    assert not next(parts).done
    sent = ctrl_c_when(held(ollama), ollama)
    with pytest.raises(KeyboardInterrupt):
        for _ in parts:
            pass
    assert sent.is_set(), "the stream never reached the hold"
    assert wait_until(lambda: ollama.in_flight(MODEL) == 0), "the upstream request still runs"
    assert next(parts, None) is None  # an interrupted stream stays closed
    client.close()


@pytest.mark.parametrize("abandon", ["close", "drop"])
def test_a_stream_abandoned_before_its_first_chunk_cancels_the_upstream_request(
    ollama: FakeOllama, abandon: str
) -> None:
    # The request starts when the stream is made; one never read must not keep the
    # daemon's slot busy until the answer would have ended.
    ollama.add_fault(hold_after(0))
    client = dsollama.Client(ollama.url, log=False, **PATIENT)
    parts = client.chat(MODEL, USER, stream=True)
    assert wait_until(held(ollama)), "the chat never reached the double"
    if abandon == "close":
        parts.close()  # type: ignore[attr-defined]
    else:
        del parts
    assert wait_until(lambda: ollama.in_flight(MODEL) == 0), "the upstream request still runs"
    client.close()


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [0, 2], ids=["before-the-answer", "mid-answer"])
def test_ctrl_c_exits_130_without_a_traceback(ollama: FakeOllama, chunks: int) -> None:
    ollama.add_fault(hold_after(chunks))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsollama", "chat", MODEL, "hi", "--local-only"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **PATIENT_ENV, "OLLAMA_HOST": ollama.url},
    )
    try:
        assert wait_until(held(ollama)), "the chat never reached the double"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.rstrip().endswith("Aborted.")
    assert wait_until(lambda: ollama.in_flight(MODEL) == 0)


def test_ctrl_c_inside_a_string_exec_still_exits_130(tmp_path: Path) -> None:
    # dataclasses builds methods with exec(<string>), so a Ctrl-C during a command's lazy
    # imports often lands in one; under `python -m`, CPython then ended the process with
    # SIGINT (status -2) instead of our 130.
    (tmp_path / "ctrl_c_probe.py").write_text(
        textwrap.dedent(
            """
            import click
            from dsollama import cli

            @click.command()
            def probe() -> None:
                exec("import signal; signal.raise_signal(signal.SIGINT)", {})

            cli._COMMANDS["probe"] = ("__main__", "probe", "")
            cli.main(["probe"])
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "ctrl_c_probe"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.split() == ["Aborted."]


def test_ctrl_c_during_an_interactive_answer_drops_it_and_the_chat_goes_on(
    ollama: FakeOllama,
) -> None:
    ollama.add_fault(hold_after(2))
    sent = ctrl_c_when(held(ollama), ollama)
    result = CliRunner().invoke(
        cli,
        ["chat", MODEL, "-i"],
        input="first question\nsecond question\n/bye\n",
        env={**PATIENT_ENV, "OLLAMA_HOST": ollama.url},
    )
    assert sent.is_set(), "the first question never reached the double"
    assert result.exit_code == 0, result.output
    assert "(answer interrupted)" in result.stderr
    assert "Traceback" not in result.stderr
    chats = ollama.recorded("/api/chat")
    assert len(chats) == 2
    # The interrupted exchange is forgotten: the second question goes alone.
    assert [m["content"] for m in chats[1].json["messages"]] == ["second question"]
    assert wait_until(lambda: ollama.in_flight(MODEL) == 0)


def test_ctrl_c_while_the_cli_itself_imports_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins
    import sys as _sys

    from dsollama.__main__ import run

    real_import = builtins.__import__

    def interrupted(name: str, *args: object, **kwargs: object) -> object:
        if name == "dsollama.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.delitem(_sys.modules, "dsollama.cli", raising=False)
    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as caught:
        run()
    assert caught.value.code == 130
    assert capsys.readouterr().err == "Interrupted.\n"
