"""The async executor: `AsyncProvisioner` and the I/O it does against one daemon.

It works through the daemon's one owner, `OllamaDaemon` (the official client for pull,
create, list, show, ps, delete, copy; plain HTTP for liveness, version, blob upload and
the full ``/api/show``; one error mapping), reads the daemon's state for the pure plan,
applies plans and reports everything as `ProgressEvent`s. What a failed pull or create
means is read by `errors.progress_events`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._backends.daemon import STALL_TIMEOUT, OllamaDaemon
from .._catalogue import Catalogue, normalise_model_name
from .._exceptions import (
    ConfigError,
    CreateError,
    DaemonTooOldError,
    DaemonUnreachableError,
    ModelNotFoundError,
    PullError,
    redact,
)
from .errors import progress_events
from .events import EventKind, ProgressEvent
from .plan import (
    DaemonState,
    ProvisionPlan,
    check_library_name,
    describe_step,
    discover_modelfiles,
    make_plan,
    parse_version,
    summarise_plan,
)

if TYPE_CHECKING:
    import httpx
    import ollama

    from .._config import Settings
    from .._create_request import BlobUpload, CreatePlan
    from .._exceptions import ProvisionError
    from .._hardware import Hardware, Recommendation
    from .._modelfile import Modelfile

__all__ = ["MIN_DAEMON_VERSION", "UPLOAD_CHUNK", "AsyncProvisioner", "DaemonInfo"]

MIN_DAEMON_VERSION = (0, 5, 5)
"Structured /api/create (the only create API dsollama speaks) arrived in Ollama 0.5.5."

UPLOAD_CHUNK = 1024 * 1024


def _load(modelfile_or_path: Modelfile | str | PathLike[str]) -> Modelfile:
    from .._modelfile import Modelfile, load_modelfile

    if isinstance(modelfile_or_path, Modelfile):
        return modelfile_or_path
    path = Path(modelfile_or_path)
    if not path.is_file():
        raise ConfigError(
            f"Modelfile {path} does not exist", hint="pass the path of a Modelfile (-f FILE)"
        )
    return load_modelfile(path)


# -- the executor ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonInfo:
    """The daemon answered: where, and which version."""

    host: str
    version: str
    warnings: tuple[str, ...] = ()


_CREATE_CLIENT_KEYS = {
    "model",
    "quantize",
    "from",
    "files",
    "adapters",
    "template",
    "license",
    "system",
    "parameters",
    "messages",
}


class AsyncProvisioner:
    """Pull, create and inspect models on one Ollama daemon.

    ``async with AsyncProvisioner(host) as p: async for event in p.provision(): ...``

    Methods that stream (`pull`, `create`, `apply`, `provision`) are async iterators of
    `ProgressEvent`; the others return the official ``ollama`` response types. Every
    failure is a `DsollamaError`. Given a ``daemon`` (a client's), it works through it and
    leaves it open; otherwise it opens its own for ``host``.
    """

    def __init__(
        self,
        host: str | None = None,
        *,
        settings: Settings | None = None,
        catalogue: Catalogue | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        hardware: Hardware | None = None,
        stall_timeout: float = STALL_TIMEOUT,
        daemon: OllamaDaemon | None = None,
    ) -> None:
        from .._catalogue import load_catalogue
        from .._config import load_settings
        from .._hosts import display_host, parse_ollama_host
        from .._routes import load_presets, route_from_table

        self.settings = settings or load_settings()
        self.catalogue = catalogue or load_catalogue(self.settings.catalogue_path)
        self._hardware = hardware
        self._stall = stall_timeout
        self._owns_daemon = daemon is None
        if daemon is None:
            url = parse_ollama_host(host) if host else self.settings.ollama_hosts[0]
            presets = load_presets(self.settings.catalogue_path)
            config = route_from_table(
                {"preset": "ollama", "base_url": url, "name": f"local:{display_host(url)}"},
                presets,
            )
            options = {"transport": transport} if transport is not None else {}
            daemon = OllamaDaemon(
                config,
                self.settings,
                self.catalogue,
                httpx_options=options,
                stall_timeout=stall_timeout,
            )
        self.daemon = daemon
        self.host = daemon.host
        self._info: DaemonInfo | None = None

    # -- lifecycle --

    async def close(self) -> None:
        if self._owns_daemon:
            await self.daemon.aclose()

    async def __aenter__(self) -> AsyncProvisioner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- daemon checks --

    async def check(self) -> DaemonInfo:
        """Is the daemon there, and new enough (≥ 0.5.5) for structured create?"""
        http = self.daemon.http
        with self.daemon.translate():
            root = await http.get("/")
            if root.status_code != 200 or "Ollama" not in root.text:
                raise DaemonUnreachableError(
                    self.host,
                    route=self.daemon.route,
                    detail=f"something answers there but it is not Ollama (HTTP {root.status_code})",
                )
            resp = await http.get("/api/version")
            resp.raise_for_status()
            version = str(resp.json().get("version", ""))
        parsed = parse_version(version)
        warnings: list[str] = []
        if parsed is None or parsed == (0, 0, 0):
            # Source builds report 0.0.0; assume they are current rather than refuse them.
            warnings.append(f"the daemon reports version {version!r}; assuming a current build")
        elif parsed < MIN_DAEMON_VERSION:
            raise DaemonTooOldError(version, self.host)
        self._info = DaemonInfo(self.host, version, tuple(warnings))
        return self._info

    async def _ensure_checked(self) -> DaemonInfo:
        return self._info or await self.check()

    # -- one-shot calls (official response types) --

    async def list(self) -> ollama.ListResponse:
        """``/api/tags``: the models on the daemon."""
        return await self.daemon.list()

    async def show(self, model: str) -> ollama.ShowResponse:
        """``/api/show`` for one model (ModelNotFoundError when absent)."""
        return await self.daemon.show(model)

    async def ps(self) -> ollama.ProcessResponse:
        """``/api/ps``: the models loaded in memory."""
        return await self.daemon.ps()

    async def delete(self, model: str) -> ollama.StatusResponse:
        """Remove a model from the daemon."""
        try:
            return await self.daemon.delete(model)
        except ModelNotFoundError as exc:
            exc.hint = "`dsollama list` shows the models on the daemon"
            raise

    async def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        """Copy (alias) a model under another name."""
        return await self.daemon.copy(source, destination)

    async def show_raw(self, model: str) -> dict[str, Any] | None:
        """The full ``/api/show`` JSON, or None when the daemon does not have the model.

        The official ``ShowResponse`` drops ``system`` and ``messages``, which the plan
        must compare, so this reads the JSON directly.
        """
        with self.daemon.translate(model):
            resp = await self.daemon.http.post("/api/show", json={"model": model})
            if resp.status_code == 404:
                return None
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data

    async def _tags_raw(self) -> dict[str, Any]:
        with self.daemon.translate():
            resp = await self.daemon.http.get("/api/tags")
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data

    def _progress(
        self,
        parts: AsyncIterator[ollama.ProgressResponse],
        model: str,
        error: type[ProvisionError],
        verb: str,
        default: EventKind,
    ) -> AsyncIterator[ProgressEvent]:
        return progress_events(
            parts,
            model=model,
            error=error,
            verb=verb,
            default=default,
            stall_s=self._stall,
            catalogue=self.catalogue,
            daemon_version=self._info.version if self._info else None,
            host=self.host,
        )

    # -- pull --

    async def pull(self, model: str) -> AsyncIterator[ProgressEvent]:
        """Pull one library model, yielding progress; PullError unless it ends in success."""
        check_library_name(model, self.catalogue)
        stream = self.daemon.progress("pull", model)
        async for event in self._progress(stream, model, PullError, "pull", "status"):
            yield event
        yield ProgressEvent("done", model, f"pulled {model}")

    # -- create --

    async def create(
        self,
        name: str,
        modelfile_or_path: Modelfile | str | PathLike[str],
        *,
        quantize: str | None = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Create ``name`` from a Modelfile (object or path): upload missing blobs, then create.

        Always creates (like ``ollama create``); `provision` is the idempotent way.
        """
        modelfile = _load(modelfile_or_path)  # a local mistake needs no daemon to report
        await self._ensure_checked()
        for warning in modelfile.warnings:
            yield ProgressEvent("warning", name, warning)
        plan = await self._plan_create(name, modelfile, quantize=quantize)
        async for event in self._run_create(plan):
            yield event

    async def _plan_create(
        self, name: str, modelfile: Modelfile, *, quantize: str | None = None
    ) -> CreatePlan:
        from .._create_request import plan_create

        base_dir = Path(modelfile.path).parent if modelfile.path else None

        def build() -> CreatePlan:
            return plan_create(modelfile, name, base_dir=base_dir, quantize=quantize)

        # Hashing local weights can take a while: keep the event loop free.
        return await asyncio.to_thread(build)

    async def _run_create(self, plan: CreatePlan) -> AsyncIterator[ProgressEvent]:
        model = plan.model
        for blob in plan.blobs:
            async for event in self._ensure_blob(model, blob):
                yield event
        body = {k: v for k, v in plan.request.items() if k != "stream"}
        body["model"] = model
        yield ProgressEvent("create", model, "creating")
        async for event in self._progress(
            self._open_create(body), model, CreateError, "create", "create"
        ):
            yield event
        yield ProgressEvent("done", model, f"created {model}")

    def _open_create(self, body: dict[str, Any]) -> AsyncIterator[ollama.ProgressResponse]:
        model = body["model"]
        if not set(body) - _CREATE_CLIENT_KEYS:
            return self.daemon.progress(
                "create",
                model,
                quantize=body.get("quantize"),
                from_=body.get("from"),
                files=body.get("files"),
                adapters=body.get("adapters"),
                template=body.get("template"),
                license=body.get("license"),
                system=body.get("system"),
                parameters=body.get("parameters"),
                messages=body.get("messages"),
            )
        # renderer/parser/requires/draft_* are not in the official client's create():
        # send the same body ourselves, read the same way.
        return self.daemon.progress("create", model, body={**body, "stream": True})

    async def _ensure_blob(self, model: str, blob: BlobUpload) -> AsyncIterator[ProgressEvent]:
        """HEAD first; upload only what the daemon does not have, streaming the file."""
        from .._hardware import format_bytes

        name = Path(blob.path).name
        with self.daemon.translate():
            head = await self.daemon.http.head(f"/api/blobs/{blob.digest}")
        if head.status_code == 200:
            # No byte counts: nothing is transferred, so no progress bar either.
            yield ProgressEvent(
                "upload-blob",
                model,
                f"{name} ({format_bytes(blob.size)}) is already on the daemon",
                digest=blob.digest,
            )
            return
        if head.status_code != 404:
            raise CreateError(
                f"create {model}: the daemon answered HTTP {head.status_code} when asked for blob {blob.digest}",
                model=model,
                hint="`dsollama status` checks the daemon",
            )
        yield ProgressEvent(
            "upload-blob",
            model,
            f"uploading {name}",
            digest=blob.digest,
            completed=0,
            total=blob.size,
        )
        async for event in self._upload(model, blob, name):
            yield event

    async def _upload(
        self, model: str, blob: BlobUpload, name: str
    ) -> AsyncIterator[ProgressEvent]:
        progress: asyncio.Queue[int | None] = asyncio.Queue()
        step = max(blob.size // 100, UPLOAD_CHUNK)

        async def body() -> AsyncIterator[bytes]:
            sent = reported = 0
            # Reads happen in a thread: a disk read of a large GGUF must not stall the loop.
            fh = await asyncio.to_thread(open, blob.path, "rb")
            try:
                while chunk := await asyncio.to_thread(fh.read, UPLOAD_CHUNK):
                    yield chunk
                    sent += len(chunk)
                    if sent - reported >= step:
                        reported = sent
                        progress.put_nowait(sent)
            finally:
                fh.close()

        async def post() -> httpx.Response:
            try:
                with self.daemon.translate():
                    return await self.daemon.http.post(
                        f"/api/blobs/{blob.digest}",
                        content=body(),
                        timeout=self.daemon.long_timeout,
                    )
            except OSError as exc:  # reading the local file failed (network errors are httpx's)
                raise CreateError(
                    f"create {model}: cannot read {blob.path}: {exc.strerror or exc}",
                    model=model,
                    hint="check that the file still exists and is readable",
                ) from exc

        task = asyncio.ensure_future(post())
        # The sentinel comes from the task itself, so a failed request cannot leave us waiting.
        task.add_done_callback(lambda _: progress.put_nowait(None))
        try:
            while (sent := await progress.get()) is not None:
                yield ProgressEvent(
                    "upload-blob",
                    model,
                    f"uploading {name}",
                    digest=blob.digest,
                    completed=sent,
                    total=blob.size,
                )
            resp = await task
        finally:
            if not task.done():
                task.cancel()
        if resp.status_code not in (200, 201):
            try:
                text = str(resp.json().get("error", resp.text))
            except ValueError:
                text = resp.text
            raise CreateError(
                f"create {model}: uploading {name} failed: {redact(text)} (HTTP {resp.status_code})",
                model=model,
                hint="the file may have changed while uploading: run the command again",
            )
        yield ProgressEvent(
            "upload-blob",
            model,
            f"uploaded {name}",
            digest=blob.digest,
            completed=blob.size,
            total=blob.size,
        )

    # -- planning --

    async def recommendation(self) -> Recommendation:
        """The model `provision` pulls when none is named: the largest that fits this
        machine and answers at the ``min_speed`` setting (estimated)."""
        from .._hardware import detect_hardware, recommend_for

        if self._hardware is None:
            # nvidia-smi may take a few seconds: probe off the event loop.
            self._hardware = await asyncio.to_thread(detect_hardware)
        return recommend_for(self.catalogue, self._hardware, self.settings)

    def _modelfiles_dir(self, explicit: str | PathLike[str] | None) -> Path | None:
        if explicit is not None:
            path = Path(explicit)
            if not path.is_dir():
                raise ConfigError(
                    f"Modelfile folder {path} does not exist",
                    hint="pass an existing folder of <name>.Modelfile files",
                )
            return path
        if self.settings.modelfiles_dir:
            path = Path(self.settings.modelfiles_dir).expanduser()
            if not path.is_dir():
                raise ConfigError(
                    f"Modelfile folder {path} (modelfiles_dir setting) does not exist",
                    hint="fix DSOLLAMA_MODELFILES_DIR or modelfiles_dir in the config file",
                )
            return path
        default = Path("Modelfiles")
        return default if default.is_dir() else None

    async def plan(
        self,
        models: Sequence[str] | None = None,
        modelfiles_dir: str | PathLike[str] | None = None,
    ) -> ProvisionPlan:
        """Plan a provisioning run against the daemon's current state.

        ``models`` names library tags and/or Modelfile models (``<name>.Modelfile`` in the
        Modelfile folder); without it, the recommended model and every Modelfile.
        """
        # Local work first: a misspelt name or a broken Modelfile needs no daemon to report.
        warnings: list[str] = []
        folder = self._modelfiles_dir(modelfiles_dir)
        available = discover_modelfiles(folder) if folder else {}
        pulls: list[str] = []
        recommended: tuple[str, str] | None = None
        chosen: dict[str, Path] = {}
        if models:
            for name in models:
                norm = normalise_model_name(name)
                if norm in available:
                    chosen[norm] = available[norm]
                else:
                    check_library_name(name, self.catalogue)
                    pulls.append(name)
        else:
            rec = await self.recommendation()
            if rec.model is not None:
                pulls.append(rec.model.tag)
                recommended = (rec.model.tag, rec.reason)
            else:
                warnings.append(rec.reason)
            chosen = dict(available)
        creates: list[CreatePlan] = []
        sources: dict[str, str] = {}
        for norm, path in chosen.items():
            modelfile = _load(path)
            warnings.extend(modelfile.warnings)
            plan = await self._plan_create(path.name.removesuffix(".Modelfile"), modelfile)
            creates.append(plan)
            sources[norm] = str(path)
            base = plan.request.get("from")
            if base and normalise_model_name(str(base)) not in available:
                check_library_name(str(base), self.catalogue)
        info = await self._ensure_checked()
        warnings[:0] = info.warnings
        state = await self._state(pulls, creates)
        return make_plan(
            pulls,
            creates,
            state,
            catalogue=self.catalogue,
            sources=sources,
            host=self.host,
            warnings=warnings,
            recommended=recommended,
        )

    async def _state(self, pulls: Sequence[str], creates: Sequence[CreatePlan]) -> DaemonState:
        """``/api/tags``, plus ``/api/show`` for each wanted created model and its base."""
        tags = await self._tags_raw()
        present = {
            normalise_model_name(str(m.get("model") or m.get("name") or ""))
            for m in tags.get("models") or ()
        }
        to_show: list[str] = []
        for plan in creates:
            for name in (plan.model, plan.request.get("from")):
                if name and normalise_model_name(str(name)) in present:
                    to_show.append(normalise_model_name(str(name)))
        shows: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(to_show):
            data = await self.show_raw(name)
            if data is not None:
                shows[name] = data
        return DaemonState.from_api(tags, shows, version=self._info.version if self._info else "")

    async def apply(self, plan: ProvisionPlan) -> AsyncIterator[ProgressEvent]:
        """Carry out a plan; stops at the first failure (a rerun picks up where it stopped)."""
        for step in plan.steps:
            if step.action == "up-to-date":
                yield ProgressEvent("up-to-date", step.model, f"{step.model} is up to date")
            elif step.action == "pull":
                async for event in self.pull(step.model):
                    yield event
            elif step.create is not None:
                await self._ensure_checked()
                async for event in self._run_create(step.create):
                    yield event
        yield ProgressEvent("summary", "", summarise_plan(plan, done=True))

    async def provision(
        self,
        models: Sequence[str] | None = None,
        modelfiles_dir: str | PathLike[str] | None = None,
    ) -> AsyncIterator[ProgressEvent]:
        """Check the daemon, plan, and apply: the whole of ``dsollama pull``."""
        self._info = None  # a fresh check for every run
        plan = await self.plan(models, modelfiles_dir)
        info = await self._ensure_checked()
        yield ProgressEvent("check", "", f"Ollama {info.version} at {info.host}")
        for warning in plan.warnings:
            yield ProgressEvent("warning", "", warning)
        if plan.recommended is not None:
            yield ProgressEvent("plan", plan.recommended[0], plan.describe_recommendation())
        for step in plan.steps:
            yield ProgressEvent("plan", step.model, describe_step(step))
        async for event in self.apply(replace(plan, warnings=())):
            yield event
