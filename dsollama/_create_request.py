"""Turn a parsed Modelfile into Ollama's structured ``POST /api/create`` body.

Since Ollama 0.5.5 neither the daemon nor the Python client accepts Modelfile text, so
the client does what ``ollama create`` does (cmd/cmd.go, parser.CreateRequest): local
``FROM``/``ADAPTER``/``DRAFT`` files are hashed and listed as blobs to upload, names
become paths relative to their folder, and parameters go out as typed JSON. Nothing here
talks to a daemon; the only I/O is reading local files to hash them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ._exceptions import ModelfileError
from ._modelfile import Modelfile, _checked_parameter, _ParameterError

__all__ = ["BlobUpload", "CreatePlan", "plan_create"]

_CHUNK_SIZE = 1 << 20  # model files are gigabytes: hash them a megabyte at a time
_GGUF_MAGIC = b"GGUF"
_LFS_POINTER = b"version https://git-lfs.github.com/spec/"

# The weights of a model folder: the first group that matches wins (parser.filesForModel).
_WEIGHT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("model*.safetensors", "*/model*.safetensors"),
    ("consolidated*.safetensors",),
    ("pytorch_model*.bin",),
    ("consolidated*.pth",),
    ("*.gguf",),
    ("*.bin",),
)
# LoRA trainers name their output adapters.safetensors (MLX) or adapter_model.safetensors
# (PEFT); older Ollama releases looked for both, and an ADAPTER folder has nothing else.
_ADAPTER_GROUPS: tuple[tuple[str, ...], ...] = (
    _WEIGHT_GROUPS[0],
    ("adapters.safetensors",),
    ("adapter_model.safetensors",),
    *_WEIGHT_GROUPS[1:],
)
# Added to whichever weights matched. Go's filepath.Glob has no recursive "**", so
# Ollama's "**/*.json" means one folder down.
_EXTRA_PATTERNS = ("*.json", "*/*.json", "chat_template.jinja")
_TOKENIZER_PATTERNS = ("tokenizer.model", "*/tokenizer.model")  # the first that exists

# [host/][namespace/]model[:tag][@digest], each part starting with a letter, digit or _.
_MODEL_NAME = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9_.\-:]*/){0,2}[A-Za-z0-9_][A-Za-z0-9_.\-]*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.\-]*)?(?:@sha256:[0-9a-f]{64})?"
)
_PATH_LIKE = re.compile(r"(?:\.{0,2}[/\\]|~|[A-Za-z]:[/\\])|.*\.(?:gguf|safetensors|bin|pth)$")


@dataclass(frozen=True)
class BlobUpload:
    """A local file the daemon must hold as a blob before the create request."""

    digest: str  # "sha256:<64 hex>"
    path: Path  # the real file (symlinks resolved) whose bytes to upload
    size: int


@dataclass(frozen=True)
class CreatePlan:
    """What creating one model takes: the request body and the blobs it refers to."""

    model: str
    request: dict[str, Any]  # JSON body for POST /api/create, without "stream"
    blobs: tuple[BlobUpload, ...]  # HEAD /api/blobs/<digest>; upload only if missing


def plan_create(
    modelfile: Modelfile,
    model: str,
    *,
    base_dir: Path | None = None,
    quantize: str | None = None,
) -> CreatePlan:
    """Build the ``/api/create`` body for ``modelfile`` under the name ``model``.

    Relative paths resolve against ``base_dir``, else the Modelfile's own folder, else
    the working directory; ``~`` expands. A FROM that is not an existing path is a model
    name for the daemon to use (and pull if needed).
    """
    if not modelfile.from_:
        raise ModelfileError("FROM is empty", path=modelfile.path, hint="name a model or a file")
    base = _base_dir(modelfile, base_dir)
    blobs = _Blobs(modelfile.path)
    request: dict[str, Any] = {"model": model}
    source = _existing_path(modelfile.from_, base)
    if source is None:
        request["from"] = _checked_model_name(modelfile)
    else:
        request["files"] = blobs.add(source, "FROM", _WEIGHT_GROUPS)
    if modelfile.adapters:
        request["adapters"] = _adapter_files(modelfile, base, blobs)
    if modelfile.draft is not None:
        request["draft_files"] = _draft_files(modelfile, base, blobs, source)
    request.update(_text_fields(modelfile))
    if quantize:
        request["quantize"] = quantize
    return CreatePlan(model=model, request=request, blobs=blobs.uploads())


def _base_dir(modelfile: Modelfile, base_dir: Path | None) -> Path:
    if base_dir is not None:
        return Path(base_dir)
    if modelfile.path is not None:
        return Path(modelfile.path).parent
    return Path.cwd()


def _expand(value: str, base: Path) -> Path:
    """A FROM/ADAPTER/DRAFT argument as an absolute path (``~`` and ``~user`` expand)."""
    path = Path(os.path.expanduser(value))
    return Path(os.path.abspath(path if path.is_absolute() else base / path))


def _existing_path(value: str, base: Path) -> Path | None:
    path = _expand(value, base)
    return path if path.exists() else None


def _checked_model_name(modelfile: Modelfile) -> str:
    name = modelfile.from_
    if _PATH_LIKE.match(name):
        raise ModelfileError(
            f"FROM {name}: no such file or folder",
            path=modelfile.path,
            hint="relative paths are read from the Modelfile's folder; check the spelling",
        )
    if not _MODEL_NAME.fullmatch(name):
        raise ModelfileError(
            f"FROM {name!r} is neither an existing file nor a valid model name",
            path=modelfile.path,
            hint="model names look like deepseek-r1:8b; a # after a value is not a comment",
        )
    return name


def _adapter_files(modelfile: Modelfile, base: Path, blobs: _Blobs) -> dict[str, str]:
    if len(modelfile.adapters) > 1:
        raise ModelfileError(
            f"{len(modelfile.adapters)} ADAPTER lines, but Ollama supports one adapter",
            path=modelfile.path,
            hint="keep one ADAPTER line (merge the LoRAs first if you need several)",
        )
    adapter = _required_path(modelfile, "ADAPTER", modelfile.adapters[0], base)
    return blobs.add(adapter, "ADAPTER", _ADAPTER_GROUPS)


def _draft_files(
    modelfile: Modelfile, base: Path, blobs: _Blobs, source: Path | None
) -> dict[str, str]:
    assert modelfile.draft is not None
    draft = _required_path(modelfile, "DRAFT", modelfile.draft, base)
    if source is not None and draft.resolve() == source.resolve():
        raise ModelfileError(
            f"DRAFT {modelfile.draft} is the same as FROM",
            path=modelfile.path,
            hint="a draft model is a smaller model that proposes tokens; name its own files",
        )
    return blobs.add(draft, "DRAFT", _WEIGHT_GROUPS)


def _required_path(modelfile: Modelfile, keyword: str, value: str, base: Path) -> Path:
    path = _existing_path(value, base)
    if path is None:
        raise ModelfileError(
            f"{keyword} {value}: no such file or folder ({_expand(value, base)})",
            path=modelfile.path,
            hint=f"{keyword} must name a local GGUF file or safetensors folder; "
            "relative paths are read from the Modelfile's folder",
        )
    return path


def _text_fields(modelfile: Modelfile) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("template", "system"):
        value = getattr(modelfile, key)
        if value is not None:  # "" is meaningful: it clears the base model's value
            fields[key] = value
    if modelfile.parameters:
        fields["parameters"] = _typed_parameters(modelfile)
    if modelfile.messages:
        fields["messages"] = [{"role": m.role, "content": m.content} for m in modelfile.messages]
    if modelfile.licenses:
        fields["license"] = list(modelfile.licenses)
    for key in ("requires", "renderer", "parser"):
        value = getattr(modelfile, key)
        if value is not None:
            fields[key] = value
    return fields


def _typed_parameters(modelfile: Modelfile) -> dict[str, Any]:
    """Parameters as JSON values of the right type: the create endpoint does not check
    them, and a wrong type stored in a model fails every later request to it."""
    out: dict[str, Any] = {}
    for name, value in modelfile.parameters.items():
        try:
            checked = _checked_parameter(name, value)
        except _ParameterError as exc:
            raise ModelfileError(
                f"PARAMETER {name}: {exc.problem}", path=modelfile.path, hint=exc.hint
            ) from None
        out[name] = list(checked) if isinstance(checked, tuple) else checked
    return out


class _Blobs:
    """Hashes local files once each and remembers which blobs the request needs."""

    def __init__(self, modelfile_path: str | None) -> None:
        self.modelfile_path = modelfile_path
        self.by_digest: dict[str, BlobUpload] = {}

    def uploads(self) -> tuple[BlobUpload, ...]:
        return tuple(self.by_digest.values())

    def add(self, path: Path, keyword: str, groups: tuple[tuple[str, ...], ...]) -> dict[str, str]:
        """``{name: digest}`` for a file or a model folder, names relative to the folder."""
        # A single file is known by its base name, a folder's files by their relative path.
        is_dir = path.is_dir()
        named = self.folder_files(path, keyword, groups) if is_dir else [(path.name, path)]
        files: dict[str, str] = {}
        for name, file in named:
            self.check_content(file, keyword)
            files[name] = self.hash(file)
        return files

    def folder_files(
        self, folder: Path, keyword: str, groups: tuple[tuple[str, ...], ...]
    ) -> list[tuple[str, Path]]:
        root = folder.resolve()
        weights = next((found for found in (_glob(root, g) for g in groups) if found), [])
        if not weights:
            raise self.error(
                f"{keyword} {folder}: no model files found in the folder",
                "expected *.safetensors (model*, consolidated*), pytorch_model*.bin, "
                "consolidated*.pth, *.gguf or *.bin files",
            )
        extras = _glob(root, _EXTRA_PATTERNS)
        tokenizer = next((found for p in _TOKENIZER_PATTERNS if (found := _glob(root, (p,)))), [])
        named = []
        for name in _unique([*weights, *extras, *tokenizer]):
            self.check_inside(root, name, keyword)
            named.append((name, root / name))
        return named

    def check_inside(self, root: Path, name: str, keyword: str) -> None:
        # Symlinks are followed to hash the real bytes, but a folder must hold its files:
        # a Hugging Face cache snapshot links every file out to a shared blobs folder.
        real = (root / name).resolve()
        if root not in real.parents:
            raise self.error(
                f"{keyword}: {name} in {root} links to {real}, outside the folder",
                "copy the files into the folder (for Hugging Face downloads use "
                "`hf download --local-dir <folder>` rather than the cache)",
            )

    def check_content(self, file: Path, keyword: str) -> None:
        with open(file, "rb") as fh:
            head = fh.read(len(_LFS_POINTER))
        if head.startswith(_LFS_POINTER):
            raise self.error(
                f"{keyword}: {file} is a Git LFS pointer, not the file itself",
                "run `git lfs pull` in that folder to fetch the real file",
            )
        if file.suffix.lower() == ".gguf" and not head.startswith(_GGUF_MAGIC):
            raise self.error(
                f"{keyword}: {file} is not a GGUF file (it does not start with 'GGUF')",
                "check that the download finished and that the file is really GGUF",
            )

    def hash(self, file: Path) -> str:
        real = file.resolve()
        digest = hashlib.sha256()
        size = 0
        with open(real, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK_SIZE), b""):
                digest.update(chunk)
                size += len(chunk)
        name = f"sha256:{digest.hexdigest()}"
        self.by_digest.setdefault(name, BlobUpload(digest=name, path=real, size=size))
        return name

    def error(self, problem: str, hint: str) -> ModelfileError:
        return ModelfileError(problem, path=self.modelfile_path, hint=hint)


def _glob(root: Path, patterns: Iterable[str]) -> list[str]:
    """Files under ``root`` matching any pattern (one ``*/`` level at most), as POSIX
    names relative to ``root``, sorted per pattern. Case-sensitive, like Go's Glob."""
    found: list[str] = []
    for pattern in patterns:
        folder, _, leaf = pattern.rpartition("/")
        found += sorted(
            f"{sub}/{entry}" if sub else entry
            for sub, path in _folders(root, folder)
            for entry in os.listdir(path)
            if fnmatchcase(entry, leaf) and (path / entry).is_file()
        )
    return found


def _folders(root: Path, pattern: str) -> Iterator[tuple[str, Path]]:
    if not pattern:
        yield "", root
        return
    for entry in sorted(os.listdir(root)):
        if fnmatchcase(entry, pattern) and (root / entry).is_dir():
            yield entry, root / entry


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
