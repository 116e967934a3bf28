"""The pytest plugin: its fixtures work in a fresh project, and it is cheap to load."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Hypothesis' plugin spends over a second setting up each session; these inner
    # sessions do not use it.
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest", *args)


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    """Installing dsollama is what registers the plugin (no conftest needed)."""
    entries = importlib.metadata.entry_points(group="pytest11")
    assert any(
        e.name == "dsollama" and e.value == "dsollama.testing.pytest_plugin" for e in entries
    )


def test_fixtures_work_in_a_fresh_project(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A project with no conftest gets started doubles and the environment, and each
    double is stopped when its test ends."""
    urls = tmp_path / "urls.txt"
    pytester.makepyfile(
        f"""
        import os

        import httpx

        URLS = {str(urls)!r}


        def remember(url):
            with open(URLS, "a") as fh:
                fh.write(url + "\\n")


        def test_deepseek(fake_deepseek):
            remember(fake_deepseek.url)
            headers = {{"Authorization": "Bearer " + fake_deepseek.api_key}}
            body = httpx.get(fake_deepseek.url + "/models", headers=headers).json()
            assert body["object"] == "list"


        def test_ollama(fake_ollama):
            remember(fake_ollama.url)
            tags = httpx.get(fake_ollama.url + "/api/tags").json()
            assert [m["name"] for m in tags["models"]] == ["deepseek-r1:8b"]


        def test_env(dsollama_env):
            assert os.environ["OLLAMA_HOST"] == dsollama_env.ollama.url
            assert os.environ["DEEPSEEK_BASE_URL"] == dsollama_env.deepseek.url
            assert os.environ["DEEPSEEK_API_KEY"] == dsollama_env.deepseek.api_key
            ollama, deepseek = dsollama_env
            assert deepseek is dsollama_env.deepseek
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)
    for url in urls.read_text().split():
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/", timeout=2)


def test_openai_server_fixtures(pytester: pytest.Pytester) -> None:
    """fake_vllm and fake_llamacpp are started doubles of vLLM and llama-server."""
    pytester.makepyfile(
        """
        import httpx


        def test_vllm(fake_vllm):
            body = {"messages": [{"role": "user", "content": "hi"}]}
            answer = httpx.post(fake_vllm.base_url + "/chat/completions", json=body).json()
            assert answer["choices"][0]["message"]["reasoning_content"]
            assert "vllm:num_requests_waiting" in httpx.get(fake_vllm.url + "/metrics").text


        def test_llamacpp(fake_llamacpp):
            assert httpx.get(fake_llamacpp.url + "/health").json() == {"status": "ok"}
            assert "llamacpp:requests_deferred" in httpx.get(fake_llamacpp.url + "/metrics").text
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)


def test_fixtures_come_from_the_plugin(pytester: pytest.Pytester) -> None:
    """Without the plugin (``-p no:dsollama``) the fixtures do not exist."""
    pytester.makepyfile("def test_it(fake_deepseek):\n    pass\n")
    result = run(pytester, "-p", "no:dsollama")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fake_deepseek' not found*"])


def _documented(name: str) -> str:
    """The python block of docs/testing.md whose first line is ``# <name>``."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    for block in blocks:
        if block.startswith(f"# {name}\n"):
            return str(block)
    raise AssertionError(f"docs/testing.md has no example starting with '# {name}'")


def test_documented_fallback_example_passes(pytester: pytest.Pytester) -> None:
    """The README-style example in docs/testing.md runs green as written."""
    pytester.makepyfile(my_app=_documented("my_app.py"), test_my_app=_documented("test_my_app.py"))
    result = run(pytester)
    result.assert_outcomes(passed=5)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    """Every pytest run of every project with dsollama loads the plugin: importing it must
    not pull in the doubles (servers, asyncio, HTTP clients)."""
    probe = (
        "import sys\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        "import dsollama.testing.pytest_plugin\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert set(loaded) <= {"dsollama", "dsollama.testing", "dsollama.testing.pytest_plugin"}
