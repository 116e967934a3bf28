"""`dsollama routes` and `dsollama status` over configured [[routes]]."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dsollama.cli import cli
from dsollama.testing import FakeDeepSeek, FakeOllama, FakeVLLM

SERVED = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"


@pytest.fixture
def servers() -> Iterator[tuple[FakeOllama, FakeVLLM, FakeDeepSeek]]:
    with (
        FakeOllama(models=["deepseek-r1:8b"]) as ollama,
        FakeVLLM(served_model_names=[SERVED]) as vllm,
        FakeDeepSeek() as deepseek,
    ):
        yield ollama, vllm, deepseek


def write_routes(
    servers: tuple[FakeOllama, FakeVLLM, FakeDeepSeek], *, vllm_model: str = SERVED
) -> dict[str, str]:
    ollama, vllm, deepseek = servers
    config = Path(os.environ["DSOLLAMA_CONFIG"])
    config.write_text(
        f"""
log = false

[[routes]]
name = "home"
preset = "ollama"
base_url = "{ollama.url}"

[[routes]]
name = "gpu"
preset = "vllm"
base_url = "{vllm.url}/v1"
private = true
capacity = 4
model_map = {{ "deepseek-r1:7b" = "{vllm_model}" }}

[[routes]]
name = "deepseek"
preset = "deepseek"
base_url = "{deepseek.url}"
key_env = "TEST_DEEPSEEK_KEY"
private = false  # a stand-in for the third party: on loopback it would count as ours

[[routes]]
name = "openrouter"
preset = "openrouter"
"""
    )
    return {"TEST_DEEPSEEK_KEY": deepseek.api_key}


def run(*args: str, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def test_routes_lists_every_route_with_its_state(
    servers: tuple[FakeOllama, FakeVLLM, FakeDeepSeek],
) -> None:
    env = write_routes(servers)
    result = run("routes", env=env)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for name in ("home", "gpu", "deepseek", "openrouter"):
        assert name in out
    gpu = next(line for line in out.splitlines() if line.startswith("gpu"))
    assert "yes" in gpu  # private
    assert "7B: 0+0" in gpu  # the server's own queue, read from /metrics
    openrouter = next(line for line in out.splitlines() if line.startswith("openrouter"))
    assert "no key: set OPENROUTER_API_KEY" in openrouter
    assert "unverified" in out
    assert servers[2].api_key not in out + result.stderr


def test_routes_json_is_machine_readable_and_keeps_the_key_out(
    servers: tuple[FakeOllama, FakeVLLM, FakeDeepSeek],
) -> None:
    env = write_routes(servers)
    result = run("routes", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    routes = {r["name"]: r for r in json.loads(result.stdout)["routes"]}
    assert routes["gpu"]["private"] is True
    assert routes["gpu"]["capacity"] == 4
    assert routes["gpu"]["server_load"] == {SERVED: {"running": 0, "waiting": 0}}
    assert routes["deepseek"]["private"] is False
    assert routes["deepseek"]["breaker"]["state"] == "closed"
    assert routes["openrouter"]["usable"] is False
    assert servers[2].api_key not in result.stdout


def test_presets_are_listed_with_what_is_unverified() -> None:
    result = CliRunner().invoke(cli, ["routes", "--presets"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("vllm") and "vllm metrics" in line for line in lines)
    assert any("unverified" in line for line in lines)


def test_status_checks_every_route_with_the_next_step(
    servers: tuple[FakeOllama, FakeVLLM, FakeDeepSeek],
) -> None:
    env = write_routes(servers)
    result = run("status", env=env)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("[ok] home: Ollama") for line in lines)
    assert any(line.startswith("[ok] gpu: answers at") for line in lines)
    assert any(line.startswith("[ok] deepseek: hosted key accepted") for line in lines)
    assert "[--] openrouter: no key -> set OPENROUTER_API_KEY to use it" in lines


def test_status_names_a_model_the_server_does_not_serve(
    servers: tuple[FakeOllama, FakeVLLM, FakeDeepSeek],
) -> None:
    env = write_routes(servers, vllm_model="deepseek-ai/typo")
    result = run("status", env=env)
    gpu = next(line for line in result.stdout.splitlines() if " gpu:" in line)
    assert gpu.startswith("[!!] gpu: answers, but does not serve deepseek-ai/typo")
    assert SERVED in gpu  # what it does serve, to fix the table with
