"""The async provisioner against a mocked daemon (pytest-httpx, strict).

Every response registered here must be requested, and any request not registered fails
the test: that is how "downloaded nothing, created nothing" is proven. Streams are NDJSON
built line by line as the daemon writes them (reference §3.7, §3.9, §9).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from pytest_httpx import HTTPXMock

from dsollama._exceptions import (
    BackendTimeoutError,
    BusyError,
    CreateError,
    DaemonTooOldError,
    DaemonUnreachableError,
    DsollamaError,
    ModelNotFoundError,
    PullError,
    ServerError,
    UnknownModelError,
)
from dsollama._hardware import GIB, GPU, build_hardware
from dsollama._provision import (
    QUICK_READ_TIMEOUT,
    STALL_TIMEOUT,
    AsyncProvisioner,
    ProgressEvent,
)

pytestmark = pytest.mark.anyio

HOST = "http://127.0.0.1:11434"
# 8 GiB of VRAM: deepseek-r1:8b is the recommendation.
GPU_MACHINE = build_hardware(
    system="Linux", machine="x86_64", ram_bytes=32 * GIB, gpus=[GPU("Fake GPU", 8 * GIB)]
)
WEIGHTS = "96c415656d377afbff962f6cdb2394ab092ccbcbaab4b82525bc4ca800fe8a49"
TEMPLATE = "f4d24e9138dd4603380add165d2b0d970bef471fac194b436ebd50e6147c6588"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"

REASONER = f"""FROM deepseek-r1:8b
PARAMETER num_ctx 16384
PARAMETER temperature 0.6
PARAMETER stop {USER}
PARAMETER stop {ASSISTANT}
"""
ZH = '''FROM deepseek-r1:8b
SYSTEM """请用简体中文回答。"""
'''


# -- building what the daemon sends ----------------------------------------------------------


def ndjson(lines: Iterable[dict[str, Any]]) -> bytes:
    # Compact, one object per line, no blank lines: what Go's json.Encoder writes.
    return b"".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        for line in lines
    )


def layer(hexdigest: str, total: int, *completed: int) -> list[dict[str, Any]]:
    status = f"pulling {hexdigest[:12]}"
    first = {"status": status, "digest": f"sha256:{hexdigest}", "total": total}
    return [first] + [{**first, "completed": c} for c in completed]


def pull_lines(*layers: list[dict[str, Any]], success: bool = True) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
    for one in layers:
        lines += one
    lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
    if success:
        lines.append({"status": "success"})
    return lines


R1_PULL = pull_lines(
    layer(WEIGHTS, 4_683_073_184, 1_048_576, 2_000_000_000, 4_683_073_184),
    layer(TEMPLATE, 387, 387),
)

CREATE_FROM_MODEL = [
    {"status": "using existing layer sha256:" + WEIGHTS},
    {"status": "creating new layer sha256:" + "1" * 64},
    {"status": "writing manifest"},
    {"status": "success"},
]

NDJSON = {"Content-Type": "application/x-ndjson"}


def go_line(key: str, value: str) -> str:
    return f"{key:<30} {value}"


def daemon_up(httpx_mock: HTTPXMock, version: str = "0.12.3") -> None:
    httpx_mock.add_response(method="GET", url=f"{HOST}/", text="Ollama is running")
    httpx_mock.add_response(method="GET", url=f"{HOST}/api/version", json={"version": version})


def tags(httpx_mock: HTTPXMock, *names: str, parent: str = "") -> None:
    models = [
        {
            "name": n,
            "model": n,
            "modified_at": "2026-05-30T08:06:48.63-07:00",
            "size": 5225376047,
            "digest": "6995872bfe4c521a67b32da386cd21d5c6e819b6e0d62f79f64ec83be99f5763",
            "details": {"parent_model": parent if ":latest" in n else "", "format": "gguf"},
        }
        for n in names
    ]
    httpx_mock.add_response(method="GET", url=f"{HOST}/api/tags", json={"models": models})


def shows(httpx_mock: HTTPXMock, bodies: dict[str, dict[str, Any]]) -> None:
    for name, body in bodies.items():
        httpx_mock.add_response(
            method="POST",
            url=f"{HOST}/api/show",
            match_json={"model": name},
            json={"model_info": {}, **body},
        )


def stream(httpx_mock: HTTPXMock, path: str, lines: list[dict[str, Any]], **kw: Any) -> None:
    httpx_mock.add_response(
        method="POST", url=f"{HOST}{path}", content=ndjson(lines), headers=NDJSON, **kw
    )


class BrokenStream(httpx.AsyncByteStream):
    """Sends some lines, then the connection dies."""

    def __init__(self, body: bytes, error: Exception) -> None:
        self.body, self.error = body, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body
        raise self.error


def provisioner(**kw: Any) -> AsyncProvisioner:
    return AsyncProvisioner(HOST, hardware=GPU_MACHINE, **kw)


async def collect(events: AsyncIterator[ProgressEvent]) -> list[ProgressEvent]:
    return [e async for e in events]


def bodies(httpx_mock: HTTPXMock, path: str) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in httpx_mock.get_requests(url=f"{HOST}{path}")]


@pytest.fixture
def modelfiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "Modelfiles"
    folder.mkdir()
    (folder / "deepseek-r1-reasoner.Modelfile").write_text(REASONER, encoding="utf-8")
    (folder / "deepseek-r1-zh.Modelfile").write_text(ZH, encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # ./Modelfiles is the default folder
    return folder


# -- the daemon itself ---------------------------------------------------------------------


async def test_check_reports_the_version(httpx_mock: HTTPXMock) -> None:
    daemon_up(httpx_mock, "0.33.0-rc2")
    async with provisioner() as prov:
        info = await prov.check()
    assert (info.host, info.version, info.warnings) == (HOST, "0.33.0-rc2", ())


async def test_daemon_older_than_0_5_5_is_refused(httpx_mock: HTTPXMock) -> None:
    daemon_up(httpx_mock, "0.5.4")
    async with provisioner() as prov:
        with pytest.raises(DaemonTooOldError) as info:
            await prov.check()
    assert "0.5.4" in str(info.value)
    assert "0.5.5" in str(info.value)
    assert "upgrade Ollama" in (info.value.hint or "")


async def test_source_builds_are_accepted_with_a_warning(httpx_mock: HTTPXMock) -> None:
    daemon_up(httpx_mock, "0.0.0")
    async with provisioner() as prov:
        info = await prov.check()
    assert "assuming a current build" in info.warnings[0]


async def test_daemon_down_names_the_host_and_how_to_start_it(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("All connection attempts failed"), url=f"{HOST}/")
    async with provisioner() as prov:
        with pytest.raises(DaemonUnreachableError) as info:
            await prov.check()
    assert info.value.host == HOST
    assert HOST in str(info.value)
    assert "ollama serve" in (info.value.hint or "")


async def test_something_else_on_the_port_is_not_ollama(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{HOST}/", status_code=404, text="404 page not found")
    async with provisioner() as prov:
        with pytest.raises(DaemonUnreachableError, match="not Ollama"):
            await prov.check()


async def test_every_call_has_an_explicit_timeout() -> None:
    async with provisioner() as prov:
        # ollama.AsyncClient would wait forever by default.
        assert prov.daemon.admin._client.timeout.read == QUICK_READ_TIMEOUT
        assert prov.daemon.long._client.timeout.read == STALL_TIMEOUT
        assert prov.daemon.long._client.timeout.connect == prov.settings.connect_timeout
        assert prov.daemon.http.timeout.read == QUICK_READ_TIMEOUT


# -- one-shot calls -----------------------------------------------------------------------


async def test_list_show_ps_return_the_official_types(httpx_mock: HTTPXMock) -> None:
    tags(httpx_mock, "deepseek-r1:8b")
    shows(httpx_mock, {"deepseek-r1:8b": {"parameters": go_line("stop", f'"{USER}"')}})
    httpx_mock.add_response(
        url=f"{HOST}/api/ps",
        json={
            "models": [
                {
                    "name": "deepseek-r1:8b",
                    "model": "deepseek-r1:8b",
                    "size": 6_000_000_000,
                    "size_vram": 6_000_000_000,
                    "expires_at": "2026-11-25T15:00:00Z",
                    "context_length": 4096,
                }
            ]
        },
    )
    async with provisioner() as prov:
        listed = await prov.list()
        shown = await prov.show("deepseek-r1:8b")
        loaded = await prov.ps()
    assert isinstance(listed, ollama.ListResponse)
    assert listed.models[0].model == "deepseek-r1:8b"
    assert isinstance(shown, ollama.ShowResponse)
    assert shown.parameters == go_line("stop", f'"{USER}"')
    assert isinstance(loaded, ollama.ProcessResponse)
    assert loaded.models[0].size_vram == 6_000_000_000


async def test_show_and_delete_of_a_missing_model(httpx_mock: HTTPXMock) -> None:
    missing = {"error": "model 'nope:latest' not found"}
    httpx_mock.add_response(url=f"{HOST}/api/show", status_code=404, json=missing)
    httpx_mock.add_response(
        method="DELETE", url=f"{HOST}/api/delete", status_code=404, json=missing
    )
    async with provisioner() as prov:
        with pytest.raises(ModelNotFoundError) as shown:
            await prov.show("nope")
        with pytest.raises(ModelNotFoundError) as deleted:
            await prov.delete("nope")
    assert "dsollama pull nope" in (shown.value.hint or "")
    assert "dsollama list" in (deleted.value.hint or "")


async def test_delete_and_copy_succeed_with_empty_bodies(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="DELETE", url=f"{HOST}/api/delete", content=b"")
    httpx_mock.add_response(method="POST", url=f"{HOST}/api/copy", content=b"")
    async with provisioner() as prov:
        assert (await prov.delete("deepseek-r1:8b")).status == "success"
        assert (await prov.copy("deepseek-r1:8b", "backup")).status == "success"
    assert bodies(httpx_mock, "/api/copy") == [
        {"source": "deepseek-r1:8b", "destination": "backup"}
    ]


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ConnectError("Connection refused"), DaemonUnreachableError),
        (httpx.ConnectTimeout("timed out"), DaemonUnreachableError),
        (httpx.ReadTimeout("timed out"), BackendTimeoutError),
        (httpx.RemoteProtocolError("peer closed connection"), ServerError),
        ({"status_code": 500, "json": {"error": "boom"}}, ServerError),
        ({"status_code": 503, "json": {"error": "server busy"}}, BusyError),
        ({"status_code": 200, "text": "not json"}, ServerError),
        ({"status_code": 200, "json": {"unexpected": True}}, ServerError),
    ],
)
async def test_no_ollama_or_httpx_error_escapes(
    httpx_mock: HTTPXMock, failure: Any, expected: type[DsollamaError]
) -> None:
    if isinstance(failure, Exception):
        httpx_mock.add_exception(failure, url=f"{HOST}/api/tags")
    else:
        httpx_mock.add_response(url=f"{HOST}/api/tags", **failure)
    async with provisioner() as prov:
        with pytest.raises(expected) as info:
            await prov.list()
    assert info.value.__cause__ is not None


# -- pull ----------------------------------------------------------------------------------


async def test_pull_reports_each_layer_and_ends_done(httpx_mock: HTTPXMock) -> None:
    stream(httpx_mock, "/api/pull", R1_PULL)
    async with provisioner() as prov:
        events = await collect(prov.pull("deepseek-r1:8b"))
    assert bodies(httpx_mock, "/api/pull") == [
        {"model": "deepseek-r1:8b", "stream": True, "insecure": False}
    ]
    assert [e.kind for e in events] == [
        "pull-manifest",
        *["layer"] * 4,
        *["layer"] * 2,
        "verify",
        "write",
        "done",
    ]
    weights = [e for e in events if e.digest == f"sha256:{WEIGHTS}"]
    assert [e.completed for e in weights] == [None, 1_048_576, 2_000_000_000, 4_683_073_184]
    assert {e.total for e in weights} == {4_683_073_184}
    assert weights[1].fraction == pytest.approx(1_048_576 / 4_683_073_184)
    assert weights[0].message == f"pulling {WEIGHTS[:12]}"
    assert events[-1].message == "pulled deepseek-r1:8b"


async def test_error_line_mid_pull_is_a_pull_error_that_says_rerun(httpx_mock: HTTPXMock) -> None:
    lines = [*R1_PULL[:3], {"error": "digest mismatch, file must be downloaded again"}]
    stream(httpx_mock, "/api/pull", lines)
    seen: list[ProgressEvent] = []
    async with provisioner() as prov:
        with pytest.raises(PullError) as info:
            async for event in prov.pull("deepseek-r1:8b"):
                seen.append(event)
    assert len(seen) == 3  # the progress before the failure was delivered
    assert "digest mismatch" in str(info.value)
    assert "resumes" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, ollama.ResponseError)
    assert info.value.__cause__.status_code == -1


async def test_tag_the_registry_lacks_says_so_and_lists_known_tags(httpx_mock: HTTPXMock) -> None:
    lines = [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    stream(httpx_mock, "/api/pull", lines)
    async with provisioner() as prov:
        with pytest.raises(PullError) as info:
            await collect(prov.pull("deepseek-r1:8b-qwen3-nonexistent"))
    assert "the Ollama registry has no such model or tag" in str(info.value)
    assert "file does not exist" in str(info.value)
    assert "deepseek-r1:8b" in (info.value.hint or "")
    assert "deepseek-r1:70b" in (info.value.hint or "")


async def test_unknown_deepseek_tag_is_refused_before_any_request(httpx_mock: HTTPXMock) -> None:
    async with provisioner() as prov:
        with pytest.raises(UnknownModelError) as info:
            await collect(prov.pull("deepseek-r1:9b"))
    assert "deepseek-r1:8b" in info.value.suggestions
    assert httpx_mock.get_requests() == []


async def test_a_consumer_may_stop_early(httpx_mock: HTTPXMock) -> None:
    stream(httpx_mock, "/api/pull", R1_PULL)
    async with provisioner() as prov:
        events = prov.pull("deepseek-r1:8b")
        assert isinstance(events, AsyncGenerator)
        first = await events.__anext__()
        await events.aclose()  # closes the HTTP response too; nothing raises
    assert first.kind == "pull-manifest"


async def test_connection_reset_mid_pull(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/pull",
        headers=NDJSON,
        stream=BrokenStream(ndjson(R1_PULL[:2]), httpx.ReadError("Connection reset by peer")),
    )
    async with provisioner() as prov:
        with pytest.raises(PullError) as info:
            await collect(prov.pull("deepseek-r1:8b"))
    assert "connection to the daemon broke" in str(info.value)
    assert "resumes" in (info.value.hint or "")


async def test_stream_ending_without_success_is_a_failure(httpx_mock: HTTPXMock) -> None:
    stream(httpx_mock, "/api/pull", pull_lines(layer(WEIGHTS, 10, 10), success=False))
    async with provisioner() as prov:
        with pytest.raises(PullError, match="ended the stream before reporting success"):
            await collect(prov.pull("deepseek-r1:8b"))


async def test_pull_with_no_progress_for_too_long(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), url=f"{HOST}/api/pull")
    async with provisioner() as prov:
        with pytest.raises(PullError, match="no progress") as info:
            await collect(prov.pull("deepseek-r1:8b"))
    assert "resumes" in (info.value.hint or "")


async def test_pull_refused_before_streaming(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/pull", status_code=400, json={"error": "invalid model name"}
    )
    async with provisioner() as prov:
        with pytest.raises(PullError, match="invalid model name"):
            await collect(prov.pull("bad::name"))


async def test_pull_against_a_dead_daemon(httpx_mock: HTTPXMock) -> None:
    # Streams let the raw httpx.ConnectError through (reference §6.3).
    httpx_mock.add_exception(httpx.ConnectError("Connection refused"), url=f"{HOST}/api/pull")
    async with provisioner() as prov:
        with pytest.raises(DaemonUnreachableError):
            await collect(prov.pull("deepseek-r1:8b"))


async def test_blank_line_in_the_stream_is_reported_not_leaked(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"{HOST}/api/pull", content=b'{"status":"pulling manifest"}\n\n', headers=NDJSON
    )
    async with provisioner() as prov:
        with pytest.raises(PullError, match="cannot read"):
            await collect(prov.pull("deepseek-r1:8b"))


# -- create --------------------------------------------------------------------------------


def gguf(tmp_path: Path, size: int = 64) -> tuple[Path, str]:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * (size // 256) + b"\x00" * (size % 256))
    (tmp_path / "Modelfile").write_text("FROM ./tiny.gguf\nPARAMETER num_ctx 4096\n")
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


async def test_blob_already_on_the_daemon_is_not_uploaded(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    _, digest = gguf(tmp_path)
    daemon_up(httpx_mock)
    httpx_mock.add_response(method="HEAD", url=f"{HOST}/api/blobs/{digest}", status_code=200)
    stream(httpx_mock, "/api/create", [{"status": "parsing GGUF"}, *CREATE_FROM_MODEL])
    async with provisioner() as prov:
        events = await collect(prov.create("tiny", tmp_path / "Modelfile"))
    assert bodies(httpx_mock, "/api/create") == [
        {
            "model": "tiny",
            "stream": True,
            "files": {"tiny.gguf": digest},
            "parameters": {"num_ctx": 4096},
        }
    ]
    assert events[0].kind == "upload-blob"
    assert "already on the daemon" in events[0].message
    assert [e.kind for e in events[1:]] == ["create"] * 4 + ["write", "done"]
    assert events[-1].message == "created tiny"


async def test_missing_blob_is_uploaded_before_create(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    path, digest = gguf(tmp_path, size=3 * 1024 * 1024 + 100)
    daemon_up(httpx_mock)
    blob_url = f"{HOST}/api/blobs/{digest}"
    httpx_mock.add_response(method="HEAD", url=blob_url, status_code=404)
    httpx_mock.add_response(method="POST", url=blob_url, status_code=201)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    async with provisioner() as prov:
        events = await collect(prov.create("tiny", tmp_path / "Modelfile"))
    requests = httpx_mock.get_requests()
    assert [(r.method, r.url.path) for r in requests] == [
        ("GET", "/"),
        ("GET", "/api/version"),
        ("HEAD", f"/api/blobs/{digest}"),
        ("POST", f"/api/blobs/{digest}"),
        ("POST", "/api/create"),
    ]
    assert requests[3].content == path.read_bytes()  # streamed byte for byte
    uploads = [e for e in events if e.kind == "upload-blob"]
    size = path.stat().st_size
    assert uploads[0].message == "uploading tiny.gguf"
    assert [e.completed for e in uploads] == [0, 1 << 20, 2 << 20, 3 << 20, size]
    assert uploads[-1].message == "uploaded tiny.gguf"


async def test_upload_rejected_by_the_daemon(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    _, digest = gguf(tmp_path)
    daemon_up(httpx_mock)
    blob_url = f"{HOST}/api/blobs/{digest}"
    httpx_mock.add_response(method="HEAD", url=blob_url, status_code=404)
    httpx_mock.add_response(
        method="POST",
        url=blob_url,
        status_code=400,
        json={"error": f'digest mismatch, expected "{digest}", got "sha256:{"0" * 64}"'},
    )
    async with provisioner() as prov:
        with pytest.raises(CreateError, match="digest mismatch") as info:
            await collect(prov.create("tiny", tmp_path / "Modelfile"))
    assert "run the command again" in (info.value.hint or "")


async def test_error_line_mid_create(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(REASONER, encoding="utf-8")
    daemon_up(httpx_mock)
    stream(
        httpx_mock,
        "/api/create",
        [CREATE_FROM_MODEL[0], {"error": "template error: unexpected EOF"}],
    )
    async with provisioner() as prov:
        with pytest.raises(CreateError, match="template error") as info:
            await collect(prov.create("r", tmp_path / "Modelfile"))
    assert "refused the Modelfile" in str(info.value)
    assert "fix the Modelfile" in (info.value.hint or "")


async def test_create_stream_without_success_is_a_failure(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    (tmp_path / "Modelfile").write_text(REASONER, encoding="utf-8")
    daemon_up(httpx_mock)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL[:-1])
    async with provisioner() as prov:
        with pytest.raises(CreateError, match="before reporting success"):
            await collect(prov.create("r", tmp_path / "Modelfile"))


async def test_create_refused_before_streaming(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(REASONER, encoding="utf-8")
    daemon_up(httpx_mock)
    httpx_mock.add_response(
        url=f"{HOST}/api/create", status_code=400, json={"error": "invalid model name"}
    )
    async with provisioner() as prov:
        with pytest.raises(CreateError, match="refused the Modelfile"):
            await collect(prov.create("r", tmp_path / "Modelfile"))


async def test_create_on_an_old_daemon_sends_nothing(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(REASONER, encoding="utf-8")
    daemon_up(httpx_mock, "0.5.1")
    async with provisioner() as prov:
        with pytest.raises(DaemonTooOldError):
            await collect(prov.create("r", tmp_path / "Modelfile"))


async def test_fields_the_official_client_lacks_are_still_sent(
    httpx_mock: HTTPXMock, tmp_path: Path
) -> None:
    (tmp_path / "Modelfile").write_text(REASONER + "REQUIRES 0.12.0\n", encoding="utf-8")
    daemon_up(httpx_mock)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    async with provisioner() as prov:
        events = await collect(prov.create("r", tmp_path / "Modelfile"))
    (body,) = bodies(httpx_mock, "/api/create")
    assert body["requires"] == "0.12.0"
    assert body["stream"] is True
    assert body["from"] == "deepseek-r1:8b"
    assert events[-1].kind == "done"


async def test_missing_modelfile_is_reported_without_asking_the_daemon() -> None:
    async with provisioner() as prov:
        with pytest.raises(DsollamaError, match="does not exist"):
            await collect(prov.create("r", "no/such/Modelfile"))


# -- provision: plan and apply ---------------------------------------------------------------

REASONER_SHOW = {
    "parameters": "\n".join(
        [
            go_line("stop", f'"{USER}"'),
            go_line("temperature", "0.6"),
            go_line("stop", f'"{ASSISTANT}"'),
            go_line("num_ctx", "16384"),
        ]
    ),
    "template": "{{ .Prompt }}",
    "details": {"parent_model": "deepseek-r1:8b"},
}
ZH_SHOW = {
    "parameters": "\n".join(go_line("stop", f'"{t}"') for t in (USER, ASSISTANT)),
    "template": "{{ .Prompt }}",
    "system": "请用简体中文回答。",
    "details": {"parent_model": "deepseek-r1:8b"},
}
BASE_SHOW = {
    "parameters": "\n".join(go_line("stop", f'"{t}"') for t in (USER, ASSISTANT)),
    "template": "{{ .Prompt }}",
}


def provisioned(httpx_mock: HTTPXMock, reasoner_show: dict[str, Any] = REASONER_SHOW) -> None:
    tags(
        httpx_mock,
        "deepseek-r1-zh:latest",
        "deepseek-r1-reasoner:latest",
        "deepseek-r1:8b",
        parent="deepseek-r1:8b",
    )
    shows(
        httpx_mock,
        {
            "deepseek-r1-reasoner:latest": reasoner_show,
            "deepseek-r1:8b": BASE_SHOW,
            "deepseek-r1-zh:latest": ZH_SHOW,
        },
    )


async def test_first_run_pulls_the_recommended_model_and_creates_modelfiles(
    httpx_mock: HTTPXMock, modelfiles: Path
) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    stream(httpx_mock, "/api/pull", R1_PULL)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    async with provisioner() as prov:
        events = await collect(prov.provision())
    assert [e.message for e in events if e.kind == "plan"] == [
        "recommended deepseek-r1:8b: largest deepseek-r1 tag that answers at a usable speed "
        "(8 tok/s or more); it fits on the GPU (needs about 6.5 GB of 7.7 GB); ~23 tok/s "
        "estimated on Fake GPU; deepseek-r1:14b would give ~6.1 tok/s",
        "pull deepseek-r1:8b: not on the daemon (5.2 GB download)",
        "create deepseek-r1-reasoner:latest: not on the daemon",
        "create deepseek-r1-zh:latest: not on the daemon",
    ]
    assert [e.message for e in events if e.kind == "done"] == [
        "pulled deepseek-r1:8b",
        "created deepseek-r1-reasoner",
        "created deepseek-r1-zh",
    ]
    assert events[0].kind == "check"
    assert events[-1].kind == "summary"
    assert events[-1].message == "1 pulled, 2 created"
    created = bodies(httpx_mock, "/api/create")
    assert created[0] == {
        "model": "deepseek-r1-reasoner",
        "stream": True,
        "from": "deepseek-r1:8b",
        "parameters": {"num_ctx": 16384, "temperature": 0.6, "stop": [USER, ASSISTANT]},
    }
    assert created[1]["system"] == "请用简体中文回答。"


async def test_second_run_downloads_nothing_and_says_up_to_date(
    httpx_mock: HTTPXMock, modelfiles: Path
) -> None:
    daemon_up(httpx_mock)
    provisioned(httpx_mock)
    async with provisioner() as prov:
        events = await collect(prov.provision())
    assert [e.kind for e in events if e.kind not in {"check", "plan"}] == [
        "up-to-date",
        "up-to-date",
        "up-to-date",
        "summary",
    ]
    assert events[-1].message == "everything is up to date: nothing to download, nothing to create"
    paths = {r.url.path for r in httpx_mock.get_requests()}
    assert "/api/pull" not in paths
    assert "/api/create" not in paths


async def test_changed_modelfile_recreates_only_that_model(
    httpx_mock: HTTPXMock, modelfiles: Path
) -> None:
    path = modelfiles / "deepseek-r1-reasoner.Modelfile"
    path.write_text(REASONER.replace("16384", "32768"), encoding="utf-8")
    daemon_up(httpx_mock)
    provisioned(httpx_mock)
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    async with provisioner() as prov:
        events = await collect(prov.provision())
    (body,) = bodies(httpx_mock, "/api/create")
    assert body["model"] == "deepseek-r1-reasoner"
    assert body["parameters"]["num_ctx"] == 32768
    plan_lines = [e.message for e in events if e.kind == "plan"]
    assert (
        "create deepseek-r1-reasoner:latest: Modelfile changed: parameter num_ctx: 16384 -> 32768"
        in plan_lines
    )
    assert events[-1].message == "1 created, 2 already up to date"


async def test_named_models_only(httpx_mock: HTTPXMock, modelfiles: Path) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock, "deepseek-r1:8b")
    shows(httpx_mock, {"deepseek-r1:8b": BASE_SHOW})
    stream(httpx_mock, "/api/create", CREATE_FROM_MODEL)
    async with provisioner() as prov:
        plan = await prov.plan(["deepseek-r1-zh"])
        assert [(s.action, s.model) for s in plan.steps] == [
            ("up-to-date", "deepseek-r1:8b"),
            ("create", "deepseek-r1-zh:latest"),
        ]
        events = await collect(prov.apply(plan))
    assert events[-1].message == "1 created, 1 already up to date"
    assert bodies(httpx_mock, "/api/create")[0]["model"] == "deepseek-r1-zh"


async def test_dry_run_plan_sends_no_pull_or_create(
    httpx_mock: HTTPXMock, modelfiles: Path
) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    async with provisioner() as prov:
        plan = await prov.plan()
    assert plan.describe()[0] == f"plan on {HOST} (Ollama 0.12.3):"
    assert plan.describe()[-1] == "1 to pull, 2 to create"


async def test_explicit_modelfile_folder_must_exist(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    async with provisioner() as prov:  # reported before any request
        with pytest.raises(DsollamaError, match="does not exist"):
            await prov.plan(modelfiles_dir=tmp_path / "missing")


async def test_a_failed_step_stops_the_run(httpx_mock: HTTPXMock, modelfiles: Path) -> None:
    daemon_up(httpx_mock)
    tags(httpx_mock)
    stream(httpx_mock, "/api/pull", [{"status": "pulling manifest"}, {"error": "unauthorized"}])
    async with provisioner() as prov:
        with pytest.raises(PullError):
            await collect(prov.provision())
    assert "/api/create" not in {r.url.path for r in httpx_mock.get_requests()}


def test_progress_event_is_public() -> None:
    import dsollama

    assert dsollama.ProgressEvent is ProgressEvent
