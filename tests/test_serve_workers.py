"""`dsollama serve --state URL` and `--workers N`: shared routing state, several processes
on one port, and a shutdown that stops them all."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import ollama
import pytest
from click.testing import CliRunner

from dsollama.cli import cli
from dsollama.testing import FakeDeepSeek, FakeOllama

from .redis_server import RedisServer
from .serve_harness import MODEL, USER

PASSWORD = "s3cret-redis-password"


def _invoke(monkeypatch: pytest.MonkeyPatch, *args: str, **env: str) -> tuple[Any, list[Any]]:
    """Run the command with the server's run replaced: (the result, the servers it ran)."""
    from dsollama.serve.server import Server

    ran: list[Any] = []
    monkeypatch.setattr(Server, "run", lambda self, sockets=None: ran.append(self))
    result = CliRunner().invoke(cli, ["serve", "--port", "0", *args], env=env)
    return result, ran


def _state_url_of(server: Any) -> str | None:
    url: str | None = server.config.app.state.dsollama.settings.state_url
    return url


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_state_sets_state_url_and_the_banner_shows_it_without_the_password(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:6390/2"
    if how == "flag":
        result, ran = _invoke(monkeypatch, "--state", url)
    else:
        result, ran = _invoke(monkeypatch, DSOLLAMA_STATE_URL=url)
    assert result.exit_code == 0, result.stderr
    assert "state       redis://127.0.0.1:6390/2 (shared" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    assert _state_url_of(ran[0]) == url


def test_without_state_the_banner_says_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    result, ran = _invoke(monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert "state       this process only (--state redis://…" in result.stdout
    assert _state_url_of(ran[0]) is None


def test_a_state_url_that_names_no_store_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, ran = _invoke(monkeypatch, "--state", f"http://user:{PASSWORD}@cache:6379")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "is not a store dsollama knows" in result.stderr
    assert "redis://" in result.stderr  # the hint: the accepted forms
    assert PASSWORD not in result.stderr
    assert ran == []


@pytest.mark.parametrize("state", [None, "memory"])
def test_more_than_one_worker_needs_a_shared_store(
    monkeypatch: pytest.MonkeyPatch, state: str | None
) -> None:
    env = {"DSOLLAMA_STATE_URL": state} if state else {}
    result, ran = _invoke(monkeypatch, "--workers", "2", **env)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "each worker would see only its own requests" in result.stderr
    assert "add --state redis://… (see docs/serve.md)" in result.stderr
    assert ran == []


def test_a_worker_whose_app_cannot_be_built_exits_as_a_startup_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uvicorn.config import STARTUP_FAILURE

    from dsollama._config import load_settings
    from dsollama._exceptions import ConfigError
    from dsollama.serve import run

    def broken(**options: Any) -> Any:
        raise ConfigError("cannot build the app")

    monkeypatch.setattr(run, "create_app", broken)
    # The process's "dsollama" logger stays as the other tests expect it.
    monkeypatch.setattr(run, "setup_logging", lambda level: None)
    config = run.WorkerConfig(run.ServeOptions(settings=load_settings()), workers=2)
    with pytest.raises(SystemExit) as exited:
        config.load()  # what each worker does first
    # uvicorn's supervisor stops on this status rather than start the worker again.
    assert exited.value.code == STARTUP_FAILURE


# -- real worker processes ------------------------------------------------------------------


def _pids_answering(url: str, seen: set[int], timeout: float = 60.0) -> set[int]:
    """Ask /healthz on fresh connections, a few at once, until two processes have answered.

    Which process accepts a connection is the kernel's choice; asked in bursts, both
    answer within a few rounds once both have started.
    """

    def ask() -> int:
        with httpx.Client(timeout=10) as client:
            pid: int = client.get(f"{url}/healthz").json()["pid"]
            return pid

    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.update(pool.map(lambda _: ask(), range(8)))
    return seen


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _refused(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return True
    return False


@pytest.mark.redis
@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_two_workers_share_the_port_and_stop_together(
    redis_server: RedisServer, redis_namespace: str, stop: str
) -> None:
    with FakeOllama(models=[MODEL]) as local, FakeDeepSeek() as hosted:
        env = {
            **os.environ,
            "OLLAMA_HOST": local.url,
            "DEEPSEEK_BASE_URL": hosted.url,
            "DEEPSEEK_API_KEY": hosted.api_key,
            "DSOLLAMA_LOG": "off",
            "DSOLLAMA_STATE_NAMESPACE": redis_namespace,
        }
        command = [sys.executable, "-m", "dsollama", "serve", "--port", "0", "--grace", "5"]
        command += ["--workers", "2", "--state", redis_server.url]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            # Its own process group: Ctrl-C in a terminal signals the whole group.
            start_new_session=True,
        )
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:")
            workers = _pids_answering(url, set())
            assert len(workers) == 2
            assert process.pid not in workers  # the command supervises; workers answer
            with ollama.Client(host=url) as client:
                assert client.chat(MODEL, messages=USER).message.content
            local.configure(tokens_per_second=20.0, answer_tokens=30)  # 1.5 s answers
            body = {"model": MODEL, "messages": USER, "think": False}
            with (
                httpx.Client(timeout=10) as client,
                client.stream("POST", f"{url}/api/chat", json=body) as streamed,
            ):
                lines = streamed.iter_lines()
                assert json.loads(next(lines))["done"] is False
                if stop == "sigterm":
                    process.send_signal(signal.SIGTERM)
                else:
                    os.killpg(process.pid, signal.SIGINT)
                rest = [json.loads(line) for line in lines if line]
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    assert rest[-1]["done"] is True  # the answer in flight finished before its worker stopped
    assert process.returncode == 0, err
    assert "dsollama serve stopped." in err
    assert f"chat {MODEL} -> local" in err  # the workers log their calls too
    assert not any(_alive(pid) for pid in workers)
    assert _refused(url)


@pytest.mark.redis
def test_a_worker_that_cannot_start_stops_the_server_instead_of_restarting(
    redis_server: RedisServer, tmp_path: Any
) -> None:
    env = {
        **os.environ,
        "DSOLLAMA_LOG": "off",
        # Read by each worker's client at startup, not by the command: only workers fail.
        "DSOLLAMA_CATALOGUE_PATH": str(tmp_path / "missing.toml"),
    }
    command = [sys.executable, "-m", "dsollama", "serve", "--port", "0", "--workers", "2"]
    done = subprocess.run(
        [*command, "--state", redis_server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )
    assert done.returncode == 1, done.stderr
    assert "missing.toml does not exist" in done.stderr  # the worker's own error
    assert done.stderr.rstrip().endswith(
        "Error: a worker process failed to start, so the server stopped — its error is in the "
        "log above"
    )
