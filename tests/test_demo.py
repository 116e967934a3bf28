"""`dsollama demo` end to end (quick mode, plain output) and its summary arithmetic."""

from __future__ import annotations

import doctest
import math
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsollama.demo import summary
from dsollama.demo.burst import Outcome
from dsollama.demo.scenario import MODELFILE_NAME, find_modelfiles
from dsollama.demo.summary import percentile, summarise

ROW = re.compile(r"^(dsollama|official ollama client)\s+(\d+)/(\d+)\s+(\d+)\s", re.MULTILINE)


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """One quick demo run for the whole module (it takes seconds), in an environment that
    looks like a user's: the demo must use none of it."""
    from dsollama.cli import cli

    home = tmp_path_factory.mktemp("demo")
    work = home / "work"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("DSOLLAMA_"):
                mp.delenv(name)
        mp.setenv("DSOLLAMA_CONFIG", str(home / "config.toml"))
        mp.setenv("XDG_DATA_HOME", str(home / "data"))
        # A real-looking key and daemon address: the demo must use neither.
        mp.setenv("DEEPSEEK_API_KEY", "sk-user-real-key-do-not-use")
        mp.setenv("OLLAMA_HOST", "127.0.0.1:9")
        mp.chdir(work)  # no ./Modelfiles here: the built-in copy is used
        result = CliRunner().invoke(cli, ["demo", "--quick", "-n", "6"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr, home


def test_the_demo_says_the_servers_are_simulated(demo_output: tuple[str, str, Path]) -> None:
    stdout, stderr, _ = demo_output
    assert "SIMULATED" in stdout
    assert "no API key" in stdout
    assert stderr == ""


def test_dsollama_answers_every_request_and_the_plain_client_does_worse(
    demo_output: tuple[str, str, Path],
) -> None:
    stdout, _, _ = demo_output
    rows = {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in ROW.finditer(stdout)}
    answered, requests, failed = rows["dsollama"]
    assert (answered, requests, failed) == (6, 6, 0)
    _, plain_requests, plain_failed = rows["official ollama client"]
    assert plain_requests == 6
    # One slot, six requests at once: the official client queues them silently, so it either
    # times out on some or answers them one after another.
    if plain_failed == 0:
        ours_p99 = _ttft_p99(stdout, "dsollama")
        assert _ttft_p99(stdout, "official ollama client") > ours_p99


def _ttft_p99(stdout: str, label: str) -> float:
    line = next(line for line in stdout.splitlines() if line.startswith(label + " "))
    cells = re.findall(r"(\d+\.\d+)s|failed", line)
    # latency p50/p95/p99 then first token p50/p95/p99; a failure is infinitely late.
    values = [float(c) if c else math.inf for c in cells]
    return values[5]


def test_the_live_lines_show_routes_and_reasons(demo_output: tuple[str, str, Path]) -> None:
    stdout, _, _ = demo_output
    ours, plain = stdout.split("Step 3/3", 1)
    ours = ours.split("Step 2/3", 1)[1]
    assert re.search(r"answered local .*within the budget", ours)
    # Hosted because local could not answer in time: cold, or its queue predicted too long.
    assert re.search(r"answered hosted .*local (busy: .* in flight|model not loaded)", ours)
    assert "hosted 429 retried" in ours or "hosted 503 retried" in ours
    assert "answered hosted" not in plain  # the official client has nowhere else to go


def test_the_estimates_shown_match_what_the_simulated_daemon_does(
    demo_output: tuple[str, str, Path],
) -> None:
    stdout, _, _ = demo_output
    line = next(line for line in stdout.splitlines() if line.startswith("What dsollama measured"))
    measured = re.search(r"a cold load (\d+\.\d)s \(simulated (\d+(?:\.\d+)?)s\)", line)
    assert measured, line  # a real load was seen, not a guess from the model's size
    assert float(measured[1]) == pytest.approx(float(measured[2]), abs=0.35)
    answer = re.search(r"an answer (\d+\.\d)s .*\(simulated (\d+\.\d)s\)", line)
    assert answer, line
    assert float(answer[1]) == pytest.approx(float(answer[2]), abs=0.35)


def test_the_demo_provisions_with_progress(demo_output: tuple[str, str, Path]) -> None:
    stdout, _, _ = demo_output
    assert "a built-in copy" in stdout
    assert "pulled deepseek-r1:8b" in stdout
    assert f"created {MODELFILE_NAME}" in stdout
    assert re.search(r"pulling [0-9a-f]{12}\s+.*100%.*done", stdout)


def test_the_demo_leaves_no_request_log_and_no_files(demo_output: tuple[str, str, Path]) -> None:
    _, _, home = demo_output
    # XDG_DATA_HOME points at home/data: the request log would live there.
    assert sorted(p.name for p in home.iterdir()) == ["work"]
    assert list((home / "work").iterdir()) == []


def test_find_modelfiles_prefers_the_local_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Modelfiles").mkdir()
    (tmp_path / "Modelfiles" / f"{MODELFILE_NAME}.Modelfile").write_text("FROM deepseek-r1:8b\n")
    assert find_modelfiles(None) == (Path("Modelfiles"), False)
    assert find_modelfiles(tmp_path) == (tmp_path, False)


def test_percentiles_count_failures_as_never_answering() -> None:
    outcomes = [
        Outcome(0, True, "local", 0.1, 1.0, ""),
        Outcome(1, True, "hosted", 0.2, 2.0, "", cost_usd=0.5),
        Outcome(2, False, None, None, 3.0, "timeout"),
    ]
    s = summarise("x", outcomes)
    assert (s.answered, s.failed, s.hosted) == (2, 1, 1)
    assert s.latency[0] == pytest.approx(2.0)
    assert s.latency[2] == math.inf
    assert s.ttft[2] == math.inf
    assert s.cost_usd == pytest.approx(0.5)
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0


def test_summary_docstring_examples() -> None:
    result = doctest.testmod(summary)
    assert result.attempted > 0
    assert result.failed == 0
