"""`dsollama models | pull | create | list | show | ps | rm | status` through click's CliRunner.

The daemon (and the hosted balance endpoint) are mocked with pytest-httpx, strictly:
a request nobody registered fails the test. stdout and stderr are asserted separately.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from pytest_httpx import HTTPXMock

from dsollama import _hardware
from dsollama._hardware import GIB, GPU, build_hardware
from dsollama._provision import ProgressEvent
from dsollama.cli import cli
from dsollama.cli._render import PlainRenderer, RichRenderer

HOST = "http://127.0.0.1:11434"
WEIGHTS = "96c415656d377afbff962f6cdb2394ab092ccbcbaab4b82525bc4ca800fe8a49"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
NDJSON = {"Content-Type": "application/x-ndjson"}
KEY = "sk-test-0123456789abcdef"

REASONER = f"""FROM deepseek-r1:8b
PARAMETER temperature 0.6
PARAMETER stop {USER}
PARAMETER stop {ASSISTANT}
"""

PULL = [
    {"status": "pulling manifest"},
    {"status": f"pulling {WEIGHTS[:12]}", "digest": f"sha256:{WEIGHTS}", "total": 4_683_073_184},
    {
        "status": f"pulling {WEIGHTS[:12]}",
        "digest": f"sha256:{WEIGHTS}",
        "total": 4_683_073_184,
        "completed": 2_000_000_000,
    },
    {
        "status": f"pulling {WEIGHTS[:12]}",
        "digest": f"sha256:{WEIGHTS}",
        "total": 4_683_073_184,
        "completed": 4_683_073_184,
    },
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]
CREATE = [
    {"status": "using existing layer sha256:" + WEIGHTS},
    {"status": "writing manifest"},
    {"status": "success"},
]


def ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(x, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for x in lines
    )


def go_line(key: str, value: str) -> str:
    return f"{key:<30} {value}"


# 8 GiB of an unknown (so assumed entry-level) GPU: deepseek-r1:8b answers at ~23 tok/s.
RECOMMENDED_8B = (
    "largest deepseek-r1 tag that answers at a usable speed (8 tok/s or more); it fits on the "
    "GPU (needs about 6.5 GB of 7.7 GB); ~23 tok/s estimated on Fake GPU; deepseek-r1:14b "
    "would give ~6.1 tok/s"
)
# The machine of the issue: 2 cores, no GPU, 24 GiB of RAM.
TWO_CORES = build_hardware(system="Linux", machine="x86_64", ram_bytes=24 * GIB, cpu_cores=2)


@pytest.fixture(autouse=True)
def machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """8 GiB of VRAM (deepseek-r1:8b recommended), and a working folder of our own."""
    fake = build_hardware(
        system="Linux", machine="x86_64", ram_bytes=32 * GIB, gpus=[GPU("Fake GPU", 8 * GIB)]
    )
    monkeypatch.setattr(_hardware, "detect_hardware", lambda: fake)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hardware, "detect_hardware", lambda: TWO_CORES)


@pytest.fixture
def modelfiles(tmp_path: Path) -> Path:
    folder = tmp_path / "Modelfiles"
    folder.mkdir()
    (folder / "deepseek-r1-reasoner.Modelfile").write_text(REASONER, encoding="utf-8")
    return folder


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def daemon_up(httpx_mock: HTTPXMock, version: str = "0.12.3") -> None:
    httpx_mock.add_response(method="GET", url=f"{HOST}/", text="Ollama is running")
    httpx_mock.add_response(method="GET", url=f"{HOST}/api/version", json={"version": version})


def daemon_down(httpx_mock: HTTPXMock, path: str = "/") -> None:
    httpx_mock.add_exception(httpx.ConnectError("All connection attempts failed"), url=HOST + path)


def tags(httpx_mock: HTTPXMock, *names: str) -> None:
    models = [
        {
            "name": n,
            "model": n,
            "modified_at": "2026-05-30T08:06:48.63-07:00",
            "size": 5225376047,
            "digest": "6995872bfe4c521a67b32da386cd21d5c6e819b6e0d62f79f64ec83be99f5763",
            "details": {
                "parent_model": "deepseek-r1:8b" if n.endswith(":latest") else "",
                "format": "gguf",
                "parameter_size": "8.2B",
                "quantization_level": "Q4_K_M",
            },
        }
        for n in names
    ]
    httpx_mock.add_response(method="GET", url=f"{HOST}/api/tags", json={"models": models})


def stream(httpx_mock: HTTPXMock, path: str, lines: list[dict[str, Any]]) -> None:
    httpx_mock.add_response(method="POST", url=HOST + path, content=ndjson(lines), headers=NDJSON)


def no_models_loaded(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="GET", url=f"{HOST}/api/ps", json={"models": []})


STOPS = "\n".join(go_line("stop", f'"{t}"') for t in (USER, ASSISTANT))


# -- pull ----------------------------------------------------------------------------------


def test_dry_run_prints_the_plan(httpx_mock: HTTPXMock, modelfiles: Path) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    result = run("pull", "--dry-run")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"plan on {HOST} (Ollama 0.12.3):",
        f"  recommended deepseek-r1:8b: {RECOMMENDED_8B}",
        "  pull   deepseek-r1:8b               not on the daemon (5.2 GB download)",
        "  create deepseek-r1-reasoner:latest  not on the daemon",
        "1 to pull, 1 to create",
    ]


def test_dry_run_on_two_cores_picks_a_model_that_answers_at_a_usable_speed(
    httpx_mock: HTTPXMock, two_cores: None
) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    result = run("pull", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"plan on {HOST} (Ollama 0.12.3):",
        "  recommended deepseek-r1:1.5b: largest deepseek-r1 tag that answers at a usable speed "
        "(8 tok/s or more); it fits in RAM on the CPU (needs about 2 GB of 19.3 GB); ~11 tok/s "
        "estimated on 2 CPU cores; deepseek-r1:7b would give ~2.6 tok/s",
        "  pull   deepseek-r1:1.5b  not on the daemon (1.1 GB download)",
        "1 to pull",
    ]


def test_min_speed_flag_changes_what_pull_recommends(
    httpx_mock: HTTPXMock, two_cores: None
) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    result = run("pull", "--dry-run", "--min-speed", "0")
    assert result.exit_code == 0, result.stderr
    assert "  pull   deepseek-r1:14b  not on the daemon (9.0 GB download)" in result.stdout
    assert "recommended deepseek-r1:14b: largest deepseek-r1 tag that fits in RAM" in (
        result.stdout
    )


def test_min_speed_that_nothing_reaches_says_it_will_be_slow(
    httpx_mock: HTTPXMock, two_cores: None
) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    result = run("pull", "--dry-run", "--min-speed", "50")
    assert result.exit_code == 0, result.stderr
    assert (
        "  recommended deepseek-r1:1.5b: the fastest deepseek-r1 tag that fits, and it will be "
        "slow: ~11 tok/s estimated on 2 CPU cores, below the usable 50 tok/s"
    ) in result.stdout


def test_bad_min_speed_is_refused(httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = run("pull", "--min-speed", "-1")
    assert flag.exit_code == 2
    assert "--min-speed" in flag.stderr
    assert flag.stdout == ""
    monkeypatch.setenv("DSOLLAMA_MIN_SPEED", "fast")
    setting = run("models")
    assert setting.exit_code == 1
    assert setting.stdout == ""
    assert setting.stderr.startswith("Error: setting min_speed (environment (DSOLLAMA_MIN_SPEED))")


def test_pull_shows_plain_progress_and_a_summary(httpx_mock: HTTPXMock, modelfiles: Path) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    stream(httpx_mock, "/api/pull", PULL)
    stream(httpx_mock, "/api/create", CREATE)
    result = run("pull")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == f"Ollama 0.12.3 at {HOST}"
    assert lines[1] == f"plan: recommended deepseek-r1:8b: {RECOMMENDED_8B}"
    assert "plan: pull deepseek-r1:8b: not on the daemon (5.2 GB download)" in lines
    assert "deepseek-r1:8b: pulling manifest" in lines
    assert f"deepseek-r1:8b: pulling {WEIGHTS[:12]}  4.7 GB" in lines
    quarter = [x for x in lines if x.startswith(f"deepseek-r1:8b: pulling {WEIGHTS[:12]}  2.0 GB")]
    assert len(quarter) == 1
    assert "4.7 GB / 4.7 GB  100%" in next(x for x in lines if "100%" in x)
    assert "pulled deepseek-r1:8b" in lines
    assert "created deepseek-r1-reasoner" in lines
    assert lines[-1] == "1 pulled, 1 created"


def test_second_pull_says_up_to_date(httpx_mock: HTTPXMock, modelfiles: Path) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock, "deepseek-r1-reasoner:latest", "deepseek-r1:8b")
    for name, body in {
        "deepseek-r1-reasoner:latest": {
            "parameters": go_line("temperature", "0.6") + "\n" + STOPS,
            "details": {"parent_model": "deepseek-r1:8b"},
        },
        "deepseek-r1:8b": {"parameters": STOPS},
    }.items():
        httpx_mock.add_response(
            url=f"{HOST}/api/show", match_json={"model": name}, json={"model_info": {}, **body}
        )
    result = run("pull")
    assert result.exit_code == 0
    assert "deepseek-r1:8b is up to date" in result.stdout
    assert "deepseek-r1-reasoner:latest is up to date" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "everything is up to date: nothing to download, nothing to create"
    )


def test_pull_with_the_daemon_down(httpx_mock: HTTPXMock) -> None:
    daemon_down(httpx_mock)
    result = run("pull", "deepseek-r1:8b")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"Error: cannot reach the Ollama daemon at {HOST}")
    assert "ollama serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_pull_of_an_unknown_deepseek_tag_needs_no_daemon(httpx_mock: HTTPXMock) -> None:
    result = run("pull", "deepseek-r1:9b")  # strict mock: no request may be sent
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "unknown model 'deepseek-r1:9b'" in result.stderr
    assert "did you mean" in result.stderr
    assert "deepseek-r1:8b" in result.stderr


def test_pull_that_dies_says_rerun_resumes(httpx_mock: HTTPXMock) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    stream(httpx_mock, "/api/pull", [*PULL[:3], {"error": "connection reset by peer"}])
    result = run("pull", "deepseek-r1:8b")
    assert result.exit_code == 1
    assert "deepseek-r1:8b: pulling manifest" in result.stdout
    assert "pull deepseek-r1:8b failed: connection reset by peer" in result.stderr
    assert "resumes" in result.stderr


def test_usage_errors_exit_2() -> None:
    result = run("pull", "--no-such-option")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert run("create").exit_code == 2  # NAME is required


# -- create, list, show, ps, rm --------------------------------------------------------------


def test_create_uploads_what_is_missing(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.gguf"
    weights.write_bytes(b"GGUF" + b"\x01" * 100)
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\n", encoding="utf-8")
    digest = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    daemon_up(httpx_mock)
    httpx_mock.add_response(method="HEAD", url=f"{HOST}/api/blobs/{digest}", status_code=404)
    httpx_mock.add_response(method="POST", url=f"{HOST}/api/blobs/{digest}", status_code=201)
    stream(httpx_mock, "/api/create", [{"status": "parsing GGUF"}, *CREATE])
    result = run("create", "tiny", "-f", "Modelfile")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "tiny: uploading tiny.gguf  104 B" in lines
    assert "tiny: parsing GGUF" in lines
    assert lines[-1] == "created tiny"


def test_create_with_a_missing_modelfile() -> None:
    result = run("create", "tiny", "-f", "nowhere.Modelfile")
    assert result.exit_code == 1
    assert "Modelfile nowhere.Modelfile does not exist" in result.stderr


def test_list(httpx_mock: HTTPXMock) -> None:
    tags(httpx_mock, "deepseek-r1:8b")
    result = run("list")
    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert row.split()[:4] == ["deepseek-r1:8b", "6995872bfe4c", "5.2", "GB"]
    assert row.endswith("ago")


def test_list_json(httpx_mock: HTTPXMock) -> None:
    tags(httpx_mock, "deepseek-r1:8b")
    result = run("list", "--json")
    assert json.loads(result.stdout)["models"][0]["model"] == "deepseek-r1:8b"


def test_show_parameters_and_summary(httpx_mock: HTTPXMock) -> None:
    body = {
        "parameters": STOPS,
        "license": "MIT License\n\nCopyright",
        "details": {"family": "qwen3", "parameter_size": "8.2B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 131072},
        "capabilities": ["completion", "thinking"],
        "modelfile": '# Modelfile generated by "ollama show"\nFROM /blobs/sha256-x\n',
    }
    for _ in range(3):
        httpx_mock.add_response(url=f"{HOST}/api/show", json=body)
    assert run("show", "deepseek-r1:8b", "--parameters").stdout == STOPS + "\n"
    assert run("show", "deepseek-r1:8b", "--modelfile").stdout == body["modelfile"]
    summary = run("show", "deepseek-r1:8b").stdout.splitlines()
    assert summary[0] == "deepseek-r1:8b"
    assert "  architecture    qwen3" in summary
    assert "  context length  131072" in summary
    assert "  capabilities    completion, thinking" in summary
    assert f'    stop "{USER}"' in summary
    assert "  license         MIT License" in summary


def test_show_of_a_missing_model(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/show", status_code=404, json={"error": "model 'nope:latest' not found"}
    )
    result = run("show", "nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "not on the daemon" in result.stderr
    assert "dsollama pull nope" in result.stderr


def test_ps(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/ps",
        json={
            "models": [
                {
                    "name": "deepseek-r1:8b",
                    "model": "deepseek-r1:8b",
                    "size": 6_000_000_000,
                    "size_vram": 3_000_000_000,
                    "digest": "6995872bfe4c521a",
                    "expires_at": "2999-01-01T00:00:00Z",
                    "context_length": 4096,
                }
            ]
        },
    )
    result = run("ps")
    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert "50%/50% CPU/GPU" in row
    assert row.endswith("forever")


def test_rm(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="DELETE", url=f"{HOST}/api/delete", content=b"")
    httpx_mock.add_response(
        method="DELETE",
        url=f"{HOST}/api/delete",
        status_code=404,
        json={"error": "model 'gone' not found"},
    )
    ok = run("rm", "deepseek-r1:8b")
    assert (ok.exit_code, ok.stdout) == (0, "deleted deepseek-r1:8b\n")
    missing = run("rm", "gone")
    assert missing.exit_code == 1
    assert "dsollama list" in missing.stderr


def test_host_option_wins(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url="http://10.0.0.5:11434/api/tags", json={"models": []})
    result = run("list", "--host", "10.0.0.5")
    assert result.exit_code == 0
    assert "no models on the daemon" in result.stdout


# -- status --------------------------------------------------------------------------------


def test_status_daemon_down_exits_1_with_next_steps(httpx_mock: HTTPXMock) -> None:
    daemon_down(httpx_mock)
    result = run("status")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"[!!] cannot reach the Ollama daemon at {HOST} -> start it with `ollama serve` "
        "(or open the Ollama app), or point OLLAMA_HOST at the right address",
        "[--] no hosted API key: fallback to the DeepSeek API is off (local only) "
        "-> set DEEPSEEK_API_KEY to enable it",
    ]


def test_status_all_good_with_an_accepted_key(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    daemon_up(httpx_mock)
    tags(httpx_mock, "deepseek-r1:8b", "llama3.2:3b")
    no_models_loaded(httpx_mock)
    httpx_mock.add_response(
        url="https://api.deepseek.com/user/balance",
        match_headers={"Authorization": f"Bearer {KEY}"},
        json={
            "is_available": True,
            "balance_infos": [{"currency": "USD", "total_balance": "12.30"}],
        },
    )
    result = run("status")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"[ok] Ollama 0.12.3 answers at {HOST}",
        "[ok] 1 DeepSeek model(s) on the daemon: deepseek-r1:8b",
        "[--] no model loaded: the first request waits while one loads "
        "-> `dsollama chat` once to warm it up",
        "[ok] hosted key accepted by api.deepseek.com (balance 12.30 USD)",
    ]
    assert KEY not in result.stdout + result.stderr


def test_status_refused_key_and_no_deepseek_model(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    daemon_up(httpx_mock)
    tags(httpx_mock)
    no_models_loaded(httpx_mock)
    httpx_mock.add_response(
        url="https://api.deepseek.com/user/balance",
        status_code=401,
        json={
            "error": {"message": f"Authentication Fails, Your api key: ****{KEY[-4:]} is invalid"}
        },
    )
    result = run("status")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1] == "[!!] no DeepSeek model on the daemon -> run `dsollama pull deepseek-r1:8b`"
    assert lines[-1].startswith(
        "[!!] hosted key refused by api.deepseek.com (401) -> check DEEPSEEK_API_KEY"
    )
    assert KEY[-4:] not in result.stdout


def test_status_refuses_to_send_the_key_over_plain_http(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", KEY)
    monkeypatch.setenv("DEEPSEEK_BASE_URL", "http://example.com")
    daemon_up(httpx_mock)
    tags(httpx_mock, "deepseek-r1:8b")
    no_models_loaded(httpx_mock)
    result = run("status")  # strict mock: a request to example.com would fail the test
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1].startswith(
        "[!!] refusing to send the API key over plain HTTP to http://example.com"
    )


def test_status_too_old_daemon(httpx_mock: HTTPXMock) -> None:
    daemon_up(httpx_mock, "0.5.1")
    result = run("status")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith(
        f"[!!] the Ollama daemon at {HOST} is version 0.5.1; dsollama needs 0.5.5 or newer"
    )


# -- models --------------------------------------------------------------------------------


def test_models_json_marks_fit_pulled_and_recommended(httpx_mock: HTTPXMock) -> None:
    tags(httpx_mock, "deepseek-r1:8b")
    result = run("models", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["recommended"] == "deepseek-r1:8b"
    assert data["daemon"] == {"host": HOST, "reachable": True, "note": ""}
    rows = {m["tag"]: m for m in data["models"]}
    assert rows["deepseek-r1:8b"]["pulled"] is True
    assert rows["deepseek-r1:8b"]["recommended"] is True
    assert rows["deepseek-r1:8b"]["fits"] == "gpu"
    assert rows["deepseek-r1:32b"]["fits"] == "cpu"
    assert rows["deepseek-r1:671b"]["fits"] is None
    assert rows["deepseek-r1:14b"]["pulled"] is False
    assert rows["deepseek-r1:8b"]["base_model"] == "DeepSeek-R1-0528-Qwen3-8B"
    assert any("VRAM headroom" in a for a in data["assumptions"])
    # The estimates: a number where a model fits, null where it does not.
    assert rows["deepseek-r1:8b"]["tokens_per_second"] == 23.1
    assert rows["deepseek-r1:14b"]["tokens_per_second"] == 6.1
    assert rows["deepseek-r1:671b"]["tokens_per_second"] is None
    assert data["reason"] == RECOMMENDED_8B
    assert data["min_speed"] == 8
    assert data["slow"] is False
    assert data["machine"]["cpu_cores"] is None
    assert any("'Fake GPU' is not in the speed table" in a for a in data["assumptions"])


def test_models_min_speed_flag_and_json(httpx_mock: HTTPXMock, two_cores: None) -> None:
    tags(httpx_mock)
    result = run("models", "--json", "--min-speed", "2")
    assert result.exit_code == 0
    assert result.stderr == ""
    data = json.loads(result.stdout)
    assert data["recommended"] == "deepseek-r1:8b"
    assert data["min_speed"] == 2
    assert data["machine"]["cpu_cores"] == 2


def test_models_table_without_a_daemon(httpx_mock: HTTPXMock) -> None:
    daemon_down(httpx_mock, "/api/tags")
    result = run("models")
    assert result.exit_code == 0
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["TAG", "WHAT", "IT"]
    r8b = next(x for x in lines if " deepseek-r1:8b " in x)
    assert r8b.startswith("*")
    assert r8b.split()[-3:] == ["GPU", "23", "?"]
    assert f"recommended: deepseek-r1:8b - {RECOMMENDED_8B}" in lines
    assert "this machine: 34.4 GB RAM, Fake GPU 8.6 GB" in lines
    assert any(x.startswith("note: no answer from the Ollama daemon") for x in lines)


def test_models_on_two_cores_shows_speeds_and_why(httpx_mock: HTTPXMock, two_cores: None) -> None:
    daemon_down(httpx_mock, "/api/tags")
    result = run("models")
    assert result.exit_code == 0
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split()[-3:] == ["FITS", "~TOK/S", "PULLED"]
    cells = {x.split()[1 if x.startswith("*") else 0]: x for x in lines[1:] if "deepseek" in x}
    assert cells["deepseek-r1:1.5b"].startswith("*")
    assert cells["deepseek-r1:1.5b"].split()[-3:] == ["CPU", "11", "?"]
    assert cells["deepseek-r1:14b"].split()[-3:] == ["CPU", "1.3", "?"]
    assert not cells["deepseek-r1:14b"].startswith("*")
    assert cells["deepseek-r1:32b"].split()[-3:] == ["no", "-", "?"]
    assert (
        "~TOK/S is an estimate of the answer speed (tokens a second at a 4K context), not a "
        "measurement; the recommendation needs 8 or more (--min-speed)"
    ) in lines
    assert "this machine: 25.8 GB RAM, 2 CPU cores, no GPU found" in lines
    assert (
        "recommended: deepseek-r1:1.5b - largest deepseek-r1 tag that answers at a usable speed "
        "(8 tok/s or more); it fits in RAM on the CPU (needs about 2 GB of 19.3 GB); ~11 tok/s "
        "estimated on 2 CPU cores; deepseek-r1:7b would give ~2.6 tok/s"
    ) in lines
    assert any(x.startswith("  assumed: speed estimate on the CPU: 2 cores") for x in lines)


# -- renderers -----------------------------------------------------------------------------


def layer_event(completed: int | None, total: int = 400) -> ProgressEvent:
    return ProgressEvent(
        "layer", "m", f"pulling {WEIGHTS[:12]}", f"sha256:{WEIGHTS}", completed, total
    )


def test_plain_renderer_prints_quarters_with_speed_and_eta() -> None:
    out, err = io.StringIO(), io.StringIO()
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    renderer = PlainRenderer(out, err, clock=lambda: next(clock))
    for done in (None, 50, 100, 150, 399, 400):
        renderer.handle(layer_event(done))
    renderer.handle(ProgressEvent("warning", "", "careful"))
    assert out.getvalue().splitlines() == [
        f"m: pulling {WEIGHTS[:12]}  400 B",
        f"m: pulling {WEIGHTS[:12]}  100 B / 400 B  25%  50 B/s  ETA 6s",
        f"m: pulling {WEIGHTS[:12]}  399 B / 400 B  99%  100 B/s  ETA 0s",
        f"m: pulling {WEIGHTS[:12]}  400 B / 400 B  100%  80 B/s  done",
    ]
    assert err.getvalue() == "warning: careful\n"


def test_plain_renderer_says_when_a_layer_is_already_here() -> None:
    out = io.StringIO()
    renderer = PlainRenderer(out, io.StringIO(), clock=lambda: 0.0)
    renderer.handle(layer_event(400))
    renderer.handle(layer_event(400))
    assert out.getvalue() == f"m: pulling {WEIGHTS[:12]}  400 B  already here\n"


def test_rich_renderer_draws_bars_on_a_terminal() -> None:
    from rich.console import Console

    out, err = io.StringIO(), io.StringIO()
    renderer = RichRenderer(
        Console(file=out, force_terminal=True, width=120),
        Console(file=err, force_terminal=True, width=120),
    )
    renderer.handle(layer_event(None))
    renderer.handle(layer_event(200))
    renderer.handle(ProgressEvent("warning", "", "careful"))
    renderer.handle(ProgressEvent("summary", "", "1 pulled"))
    renderer.close()
    assert f"m pulling {WEIGHTS[:12]}" in out.getvalue()
    assert "1 pulled" in out.getvalue()
    assert "careful" in err.getvalue()
