"""Provisioning: get the right DeepSeek models and the Modelfile models onto a daemon.

Two halves, as everywhere in dsollama:

* a **pure plan** (`make_plan`): given what is wanted (library tags to pull, `CreatePlan`s
  built from Modelfiles) and what the daemon reports (`DaemonState`, built from
  ``/api/tags`` and ``/api/show``), decide what to pull, what to (re-)create and what is
  already up to date. Running it twice against the result of the first run yields a plan
  with nothing to do — that is the idempotency guarantee;
* an **async executor** (`AsyncProvisioner`) that talks to the daemon through the official
  ``ollama.AsyncClient`` (pull, create, list, show, ps, delete, copy) and a plain
  ``httpx.AsyncClient`` (liveness, version, blob upload, full ``/api/show``), and reports
  everything as `ProgressEvent`s a CLI or a GUI can render.

Every ``httpx``/``ollama`` exception is translated into the dsollama error tree; a pull
or create stream that does not end in ``{"status":"success"}`` is a failure, however it
ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._catalogue import Catalogue, normalise_model_name
from ._exceptions import (
    BackendTimeoutError,
    BadRequestError,
    BusyError,
    ConfigError,
    CreateError,
    DaemonTooOldError,
    DaemonUnreachableError,
    DsollamaError,
    ModelNotFoundError,
    ProvisionError,
    PullError,
    ServerError,
    UnknownModelError,
    redact,
)

if TYPE_CHECKING:
    import httpx
    import ollama

    from ._config import Settings
    from ._create_request import BlobUpload, CreatePlan
    from ._hardware import Hardware, Recommendation
    from ._modelfile import Modelfile

__all__ = [
    "MIN_DAEMON_VERSION",
    "AsyncProvisioner",
    "DaemonInfo",
    "DaemonState",
    "InstalledModel",
    "PlanStep",
    "ProgressEvent",
    "ProvisionPlan",
    "check_library_name",
    "compare_created",
    "describe_step",
    "discover_modelfiles",
    "format_show_parameters",
    "go_format_value",
    "go_quote",
    "go_unquote",
    "known_tags",
    "make_plan",
    "parse_show_parameters",
    "parse_version",
    "summarise_plan",
]

MIN_DAEMON_VERSION = (0, 5, 5)
"Structured /api/create (the only create API dsollama speaks) arrived in Ollama 0.5.5."

QUICK_READ_TIMEOUT = 60.0
"list/show/ps/delete/version answer at once; a minute covers a daemon busy loading a model."
STALL_TIMEOUT = 1800.0
# A pull is silent while the daemon verifies the SHA-256 of a finished layer: minutes
# for the 400 GB models. A create from a large GGUF parses it silently too.
UPLOAD_CHUNK = 1024 * 1024

EventKind = Literal[
    "check",
    "plan",
    "pull-manifest",
    "layer",
    "verify",
    "write",
    "status",
    "upload-blob",
    "create",
    "up-to-date",
    "done",
    "warning",
    "summary",
]

Action = Literal["pull", "create", "up-to-date"]

_RERUN_HINT = "run the same command again: Ollama keeps what was downloaded and resumes"


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened while provisioning, ready to render.

    ``kind`` says what it is: ``check`` (daemon reachable, version), ``plan`` (one planned
    step), ``pull-manifest``, ``layer`` (bytes of one layer: ``digest``, ``completed``,
    ``total``), ``verify``, ``write``, ``status`` (any other daemon status line),
    ``upload-blob`` (a local file going to the daemon), ``create`` (a create status line),
    ``up-to-date``, ``done`` (one model finished), ``warning`` and ``summary`` (the last
    event of a run).
    """

    kind: EventKind
    model: str
    "The model this event is about ('' for run-wide events)."
    message: str
    "One line for people."
    digest: str | None = None
    "The layer or blob digest (``sha256:<hex>``) for layer and upload events."
    completed: int | None = None
    "Bytes done, when the daemon says."
    total: int | None = None
    "Bytes in all, when the daemon says."
    status: str | None = None
    "The daemon's own status text, when the event came from one."

    @property
    def fraction(self) -> float | None:
        """completed / total in [0, 1], when both are known."""
        if self.total and self.completed is not None:
            return max(0.0, min(1.0, self.completed / self.total))
        return None


# -- what the daemon has -------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledModel:
    """A model on the daemon, as ``/api/tags`` and (when asked) ``/api/show`` describe it."""

    name: str
    "Normalised ``model:tag``."
    digest: str = ""
    size: int = 0
    parent: str = ""
    "``details.parent_model``: the model it was created from ('' for pulled models)."
    shown: bool = False
    "True when the fields below come from ``/api/show``."
    parameters: str = ""
    "The show ``parameters`` string (Go ``%#v`` values, one line per stop entry)."
    template: str = ""
    system: str = ""
    license: str = ""
    messages: tuple[tuple[str, str], ...] = ()
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    modelfile: str = ""

    @classmethod
    def from_api(
        cls, name: str, tag: Mapping[str, Any] | None = None, show: Mapping[str, Any] | None = None
    ) -> InstalledModel:
        tag = tag or {}
        details = (show or {}).get("details") or tag.get("details") or {}
        messages = tuple(
            (str(m.get("role", "")), str(m.get("content", "")))
            for m in ((show or {}).get("messages") or ())
            if isinstance(m, Mapping)
        )
        s = show or {}
        return cls(
            name=normalise_model_name(name),
            digest=str(tag.get("digest") or ""),
            size=int(tag.get("size") or 0),
            parent=str(details.get("parent_model") or ""),
            shown=show is not None,
            parameters=str(s.get("parameters") or ""),
            template=str(s.get("template") or ""),
            system=str(s.get("system") or ""),
            license=str(s.get("license") or ""),
            messages=messages,
            renderer=str(s.get("renderer") or ""),
            parser=str(s.get("parser") or ""),
            requires=str(s.get("requires") or ""),
            modelfile=str(s.get("modelfile") or ""),
        )


@dataclass(frozen=True)
class DaemonState:
    """Everything the plan needs to know about one daemon."""

    models: Mapping[str, InstalledModel] = field(default_factory=dict)
    version: str = ""

    def get(self, name: str) -> InstalledModel | None:
        return self.models.get(normalise_model_name(name))

    @classmethod
    def from_api(
        cls,
        tags: Mapping[str, Any],
        shows: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        version: str = "",
    ) -> DaemonState:
        """Build from the JSON of ``/api/tags`` and of ``/api/show`` for some of its models."""
        shown = {normalise_model_name(k): v for k, v in (shows or {}).items()}
        models: dict[str, InstalledModel] = {}
        for entry in tags.get("models") or ():
            name = str(entry.get("model") or entry.get("name") or "")
            if name:
                norm = normalise_model_name(name)
                models[norm] = InstalledModel.from_api(norm, entry, shown.get(norm))
        return cls(models=models, version=version)


# -- Go formatting of /api/show parameters -------------------------------------------------

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34}
_GO_ESCAPE_OUT = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def go_quote(text: str) -> str:
    r"""Go's ``strconv.Quote`` (what ``%#v`` prints for a string).

    >>> print(go_quote('<｜User｜>'))
    "<｜User｜>"
    >>> print(go_quote('a"b\\c\n\x01'))
    "a\"b\\c\n\x01"
    """
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif code in _GO_ESCAPE_OUT:
            out.append(_GO_ESCAPE_OUT[code])
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_unquote(text: str) -> str:
    r"""Reverse of `go_quote` (accepts every escape Go's quoting can produce).

    >>> go_unquote('"a\\"b\\\\c\\n\\x01\\u00e9"') == 'a"b\\c\n\x01é'
    True
    """
    body = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 >= len(body):
            out += ch.encode("utf-8")
            i += 1
            continue
        esc = body[i + 1]
        if esc in _GO_ESCAPES:
            out.append(_GO_ESCAPES[esc])
            i += 2
        elif esc == "x":
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        elif esc in {"u", "U"}:
            width = 4 if esc == "u" else 8
            out += chr(int(body[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        elif esc.isdigit():  # octal \NNN
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        else:
            out += ("\\" + esc).encode("utf-8")
            i += 2
    return out.decode("utf-8", errors="replace")


def go_format_value(value: Any) -> str:
    """What Go's ``%#v`` prints for a JSON-decoded parameter value.

    Numbers arrive in Go as float64, printed like ``%g`` with the shortest digits.

    >>> [go_format_value(v) for v in (0.6, 8192, 1_000_000, 1e-05, True, "x")]
    ['0.6', '8192', '1e+06', '1e-05', 'true', '"x"']
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    return go_quote(str(value))


def _go_float(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    from decimal import Decimal

    sign, digits, exponent = Decimal(repr(x)).as_tuple()
    digs = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    point = len(digits) + exponent  # position of the decimal point in the digits
    exp = point - 1
    neg = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go switches to %e at the shortest-precision threshold of 6
        mantissa = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digs}"
    if point >= len(digs):
        return f"{neg}{digs}{'0' * (point - len(digs))}"
    return f"{neg}{digs[:point]}.{digs[point:]}"


def format_show_parameters(params: Mapping[str, Any]) -> str:
    """The ``parameters`` string ``/api/show`` returns for these model parameters.

    Keys are padded to 30 columns, one line per list entry. Go iterates a map in random
    order; this sorts keys so the result is stable (compare with `parse_show_parameters`).

    >>> print(format_show_parameters({"temperature": 0.6, "stop": ["<a>", "<b>"]}))
    stop                           "<a>"
    stop                           "<b>"
    temperature                    0.6
    """
    lines: list[str] = []
    for key in sorted(params):
        value = params[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        lines.extend(f"{key:<30} {go_format_value(v)}" for v in values)
    return "\n".join(lines)


def _parse_go_value(raw: str) -> Any:
    if raw.startswith('"'):
        return go_unquote(raw)
    if raw in {"true", "false"}:
        return raw == "true"
    try:
        return float(raw.replace("+Inf", "inf").replace("-Inf", "-inf"))
    except ValueError:
        return raw


def parse_show_parameters(text: str) -> dict[str, tuple[Any, ...]]:
    """The show ``parameters`` string as {key: values}; numbers become floats.

    >>> parse_show_parameters('stop                           "<a>"\\nnum_ctx                        8192')
    {'stop': ('<a>',), 'num_ctx': (8192.0,)}
    """
    out: dict[str, list[Any]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _, rest = line.strip().partition(" ")
        out.setdefault(key, []).append(_parse_go_value(rest.strip(" ")))
    return {k: tuple(v) for k, v in out.items()}


def _normalise_params(params: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Wanted parameters in the shape `parse_show_parameters` returns."""
    out: dict[str, tuple[Any, ...]] = {}
    for key, value in params.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        out[key] = tuple(
            v if isinstance(v, bool) else float(v) if isinstance(v, (int, float)) else str(v)
            for v in values
        )
    return out


def _show_value(values: tuple[Any, ...] | None) -> str:
    if values is None:
        return "unset"
    return ", ".join(go_format_value(v) for v in values)


# -- the pure plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanStep:
    """One model and what to do about it."""

    action: Action
    model: str
    reason: str
    create: CreatePlan | None = None
    "The create request for ``create`` steps."
    changes: tuple[str, ...] = ()
    "What differs from the daemon's copy (re-creates only)."
    size_bytes: int | None = None
    "Expected download for pulls, from the catalogue."
    source: str | None = None
    "The Modelfile a create step comes from."


@dataclass(frozen=True)
class ProvisionPlan:
    """What a provisioning run will do, in order: pulls first, then creates."""

    steps: tuple[PlanStep, ...]
    host: str = ""
    version: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def pulls(self) -> tuple[PlanStep, ...]:
        return tuple(s for s in self.steps if s.action == "pull")

    @property
    def creates(self) -> tuple[PlanStep, ...]:
        return tuple(s for s in self.steps if s.action == "create")

    @property
    def up_to_date(self) -> tuple[PlanStep, ...]:
        return tuple(s for s in self.steps if s.action == "up-to-date")

    @property
    def nothing_to_do(self) -> bool:
        return not self.pulls and not self.creates

    def describe(self) -> list[str]:
        """The plan as lines for people (``dsollama pull --dry-run``)."""
        from ._hardware import format_bytes

        where = f" on {self.host}" if self.host else ""
        version = f" (Ollama {self.version})" if self.version else ""
        lines = [f"plan{where}{version}:"]
        if not self.steps:
            lines.append("  nothing wanted")
        width = max((len(s.model) for s in self.steps), default=0)
        for step in self.steps:
            label = {"pull": "pull", "create": "create", "up-to-date": "ok"}[step.action]
            reason = step.reason
            if step.action == "pull" and step.size_bytes:
                reason += f" ({format_bytes(step.size_bytes)} download)"
            lines.append(f"  {label:<7}{step.model:<{width}}  {reason}")
            lines.extend(f"  {'':<7}{'':<{width}}    - {change}" for change in step.changes)
        lines.extend(f"  warning: {w}" for w in self.warnings)
        lines.append(summarise_plan(self))
        return lines


def summarise_plan(plan: ProvisionPlan, *, done: bool = False) -> str:
    """'everything is up to date' or counts of what (will be / was) done."""
    if plan.nothing_to_do:
        return "everything is up to date: nothing to download, nothing to create"
    verbs = ("pulled", "created") if done else ("to pull", "to create")
    parts = []
    if plan.pulls:
        parts.append(f"{len(plan.pulls)} {verbs[0]}")
    if plan.creates:
        parts.append(f"{len(plan.creates)} {verbs[1]}")
    if plan.up_to_date:
        parts.append(f"{len(plan.up_to_date)} already up to date")
    return ", ".join(parts)


def _licenses(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _hexes(mapping: Any) -> list[tuple[str, str]]:
    if not isinstance(mapping, Mapping):
        return []
    return [
        (str(k), str(v).removeprefix("sha256:").removeprefix("sha256-")) for k, v in mapping.items()
    ]


def compare_created(
    want: Mapping[str, Any], have: InstalledModel, base: InstalledModel | None = None
) -> tuple[str, ...]:
    """How the daemon's copy of a created model differs from the wanted create request.

    ``want`` is the ``/api/create`` body; ``base`` the daemon's copy of ``want['from']``
    when it was shown. The daemon builds a model from its base's layers, replacing the
    template, system prompt and messages when the request sets them, merging parameters
    over the base's, and appending licences (server/create.go); with the base known the
    comparison is exact, without it only what the request sets is checked.
    """
    changes: list[str] = []
    base = base if base is not None and base.shown else None

    source = want.get("from")
    if source and normalise_model_name(have.parent or "-") != normalise_model_name(str(source)):
        changes.append(f"base: {have.parent or 'none'} -> {source}")
    files = _hexes(want.get("files"))
    # The generated Modelfile names the weights blob; a single GGUF file keeps its digest
    # (converted safetensors do not, so those cannot be compared).
    single_gguf = len(files) == 1 and files[0][0].endswith(".gguf")
    if single_gguf and have.modelfile and files[0][1] not in have.modelfile:
        changes.append(f"weights: {files[0][0]} changed")
    for name, hexdigest in _hexes(want.get("adapters")):
        if have.modelfile and hexdigest not in have.modelfile:
            changes.append(f"adapter: {name} changed")

    for key in ("template", "system"):
        wanted = want.get(key) or (getattr(base, key) if base else None)
        if wanted is not None and wanted != getattr(have, key):
            changes.append(f"{key} changed")

    for key in ("renderer", "parser", "requires"):
        wanted = want.get(key)
        if wanted and wanted != getattr(have, key):
            changes.append(f"{key}: {getattr(have, key) or 'none'} -> {wanted}")

    want_params = _normalise_params(want.get("parameters") or {})
    have_params = parse_show_parameters(have.parameters)
    if base is not None:
        expected = {**parse_show_parameters(base.parameters), **want_params}
        keys = sorted(set(expected) | set(have_params))
    else:
        expected = want_params
        keys = sorted(want_params)
    for key in keys:
        if expected.get(key) != have_params.get(key):
            changes.append(
                f"parameter {key}: {_show_value(have_params.get(key))} -> "
                f"{_show_value(expected.get(key))}"
            )

    wanted_msgs = tuple(
        (str(m.get("role", "")), str(m.get("content", ""))) for m in want.get("messages") or ()
    )
    if not wanted_msgs and base is not None:
        wanted_msgs = base.messages
    if (wanted_msgs or base is not None) and wanted_msgs != have.messages:
        changes.append("messages changed")

    for text in _licenses(want.get("license")):
        # Licences are appended to the base's, so each wanted one must be in the joined text.
        if text not in have.license:
            changes.append("license changed")
            break
    return tuple(changes)


def check_library_name(name: str, catalogue: Catalogue) -> None:
    """Refuse a name that looks like a DeepSeek library tag but is not one.

    Names of other libraries, namespaced models and variant tags of known sizes
    (``deepseek-r1:8b-0528-qwen3-q4_K_M``) pass: the registry is the judge of those.
    """
    norm = normalise_model_name(name)
    if "/" in norm or catalogue.resolve(norm) is not None:
        return
    library, _, tag = norm.partition(":")
    libraries = {m.library for m in catalogue.local.values()}
    if library not in libraries and not library.startswith("deepseek"):
        return
    sizes = {m.tag.partition(":")[2] for m in catalogue.local.values() if m.library == library}
    if any(tag.startswith(size + "-") for size in sizes):
        return
    raise UnknownModelError(name, catalogue.suggest(name))


def known_tags(name: str, catalogue: Catalogue) -> list[str]:
    library = normalise_model_name(name).partition(":")[0]
    return [m.tag for m in catalogue.local.values() if m.library == library]


def make_plan(
    pulls: Iterable[str],
    creates: Iterable[CreatePlan],
    daemon: DaemonState,
    *,
    catalogue: Catalogue | None = None,
    sources: Mapping[str, str] | None = None,
    host: str = "",
    warnings: Iterable[str] = (),
) -> ProvisionPlan:
    """Decide what to pull, what to (re-)create and what is up to date. Pure.

    A library model is up to date when the daemon has it (no re-pull: ``dsollama pull``
    provisions, it does not upgrade). A created model is up to date when `compare_created`
    finds no difference. A create whose base is missing gets a pull step for the base,
    so progress shows as a pull rather than inside the create stream. Creates are ordered
    so a model built from another Modelfile model comes after it, and a re-created base
    forces its dependants to be re-created too.
    """
    sources = {normalise_model_name(k): v for k, v in (sources or {}).items()}
    steps: list[PlanStep] = []
    planned: set[str] = set()
    create_list = list(creates)
    created_names = {normalise_model_name(c.model) for c in create_list}

    def size_of(name: str) -> int | None:
        model = catalogue.resolve(name) if catalogue else None
        return model.size_bytes if model else None

    def add_pull(name: str, why_missing: str) -> None:
        norm = normalise_model_name(name)
        if norm in planned or norm in created_names:
            return
        planned.add(norm)
        if daemon.get(norm) is not None:
            steps.append(PlanStep("up-to-date", norm, "already on the daemon"))
        else:
            steps.append(PlanStep("pull", norm, why_missing, size_bytes=size_of(norm)))

    for name in pulls:
        add_pull(name, "not on the daemon")
    for plan in create_list:
        source = plan.request.get("from")
        if source and normalise_model_name(str(source)) not in created_names:
            add_pull(str(source), f"not on the daemon; base of {normalise_model_name(plan.model)}")

    recreated: set[str] = set()
    for plan in _order_creates(create_list):
        norm = normalise_model_name(plan.model)
        if norm in planned:
            continue
        planned.add(norm)
        source_file = sources.get(norm)
        have = daemon.get(norm)
        base_name = plan.request.get("from")
        base_norm = normalise_model_name(str(base_name)) if base_name else None
        if have is None:
            step = PlanStep("create", norm, "not on the daemon", create=plan, source=source_file)
        elif base_norm is not None and base_norm in recreated:
            step = PlanStep(
                "create",
                norm,
                f"its base {base_norm} is re-created",
                create=plan,
                source=source_file,
            )
        else:
            base = daemon.get(base_norm) if base_norm else None
            changes = compare_created(plan.request, have, base)
            if changes:
                step = PlanStep(
                    "create",
                    norm,
                    "Modelfile changed",
                    create=plan,
                    changes=changes,
                    source=source_file,
                )
            else:
                step = PlanStep("up-to-date", norm, "matches its Modelfile", source=source_file)
        if step.action == "create":
            recreated.add(norm)
        steps.append(step)
    ordered = [s for s in steps if s.action == "pull"] + [s for s in steps if s.action != "pull"]
    return ProvisionPlan(
        steps=tuple(ordered), host=host, version=daemon.version, warnings=tuple(warnings)
    )


def _order_creates(plans: Sequence[CreatePlan]) -> list[CreatePlan]:
    """Creates in dependency order (a model after the Modelfile model it is built from)."""
    by_name = {normalise_model_name(p.model): p for p in plans}
    ordered: list[CreatePlan] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen or name in stack:
            return
        plan = by_name[name]
        base = plan.request.get("from")
        if base and normalise_model_name(str(base)) in by_name:
            visit(normalise_model_name(str(base)), (*stack, name))
        seen.add(name)
        ordered.append(plan)

    for name in by_name:
        visit(name, ())
    return ordered


def discover_modelfiles(directory: str | PathLike[str]) -> dict[str, Path]:
    """``<name>.Modelfile`` files in a folder -> {normalised model name: path}."""
    folder = Path(directory)
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.Modelfile")):
        if path.is_file():
            found[normalise_model_name(path.name.removesuffix(".Modelfile"))] = path
    return found


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``'0.33.0-rc2'`` -> ``(0, 33, 0)``; None when it is not a version.

    >>> parse_version("0.5.4"), parse_version("v0.33.0-rc2"), parse_version("dev")
    ((0, 5, 4), (0, 33, 0), None)
    """
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if not match:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


# -- status lines -> events -------------------------------------------------------------------


def _event_for(model: str, part: ollama.ProgressResponse, default: EventKind) -> ProgressEvent:
    status = part.status or ""
    digest = part.digest or None
    kind: EventKind = default
    if status == "pulling manifest":
        kind = "pull-manifest"
    elif status.startswith("pulling ") and (digest or status == "pulling model"):
        kind = "layer"
    elif status.startswith("verifying"):
        kind = "verify"
    elif status == "writing manifest":
        kind = "write"
    if digest and set(digest.removeprefix("sha256:")) == {"0"}:
        digest = None  # quantize progress carries a dummy digest of zeros
    return ProgressEvent(
        kind=kind,
        model=model,
        message=status,
        digest=digest,
        completed=part.completed,
        total=part.total,
        status=status,
    )


def describe_step(step: PlanStep) -> str:
    """One plan step as a line: 'pull deepseek-r1:8b: not on the daemon (5.2 GB download)'."""
    from ._hardware import format_bytes

    reason = step.reason
    if step.action == "pull" and step.size_bytes:
        reason += f" ({format_bytes(step.size_bytes)} download)"
    if step.changes:
        reason += ": " + "; ".join(step.changes)
    return f"{step.action} {step.model}: {reason}"


def _load(modelfile_or_path: Modelfile | str | PathLike[str]) -> Modelfile:
    from ._modelfile import Modelfile, load_modelfile

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
    failure is a `DsollamaError`.
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
    ) -> None:
        import httpx
        import ollama

        from ._catalogue import load_catalogue
        from ._config import load_settings
        from ._hosts import parse_ollama_host

        self.settings = settings or load_settings()
        self.host = parse_ollama_host(host) if host else self.settings.ollama_hosts[0]
        self.catalogue = catalogue or load_catalogue(self.settings.catalogue_path)
        self._hardware = hardware
        self._stall = stall_timeout
        connect = self.settings.connect_timeout
        self._quick_timeout = httpx.Timeout(QUICK_READ_TIMEOUT, connect=connect)
        self._long_timeout = httpx.Timeout(stall_timeout, connect=connect)
        # One transport (one connection pool, one TLS context) for the three clients:
        # building a TLS context per client costs tens of milliseconds each.
        extra: dict[str, Any] = {"transport": transport or httpx.AsyncHTTPTransport()}
        # The official client's default timeout is None (wait forever): always pass one.
        self._quick = ollama.AsyncClient(self.host, timeout=self._quick_timeout, **extra)
        self._long = ollama.AsyncClient(self.host, timeout=self._long_timeout, **extra)
        self._http = httpx.AsyncClient(base_url=self.host, timeout=self._quick_timeout, **extra)
        self._info: DaemonInfo | None = None

    # -- lifecycle --

    async def close(self) -> None:
        # ollama's close() is untyped; hold it as typed callables to keep mypy strict.
        closers: list[Callable[[], Awaitable[None]]] = [self._quick.close, self._long.close]
        for close in closers:
            await close()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncProvisioner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- error translation --

    def _unreachable(self, exc: BaseException) -> DaemonUnreachableError:
        import httpx

        detail = "connection timed out" if isinstance(exc, httpx.TimeoutException) else ""
        return DaemonUnreachableError(self.host, route=f"local:{self.host}", detail=detail)

    @contextlib.contextmanager
    def _translate(self, op: str, model: str | None = None) -> Iterator[None]:
        """Turn ollama/httpx/pydantic errors from a one-shot call into dsollama errors."""
        import httpx
        import ollama
        import pydantic

        route = f"local:{self.host}"
        try:
            yield
        except DsollamaError:
            raise
        except ollama.ResponseError as exc:
            text = redact(str(exc.error))
            if exc.status_code == 404 and model is not None:
                raise ModelNotFoundError(
                    model,
                    route=route,
                    message=f"model {model!r} is not on the daemon at {self.host}",
                ) from exc
            if exc.status_code in (400, 422):
                raise BadRequestError(
                    f"{op}: the daemon refused the request: {text}",
                    route=route,
                    status_code=exc.status_code,
                ) from exc
            if exc.status_code in (429, 503):
                raise BusyError(
                    f"{op}: the daemon is busy: {text}", route=route, status_code=exc.status_code
                ) from exc
            raise ServerError(
                f"{op}: the daemon failed: {text}", route=route, status_code=exc.status_code
            ) from exc
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # ollama turns httpx.ConnectError into the builtin ConnectionError for plain
            # calls but lets the raw httpx error through for streams (reference §6.3).
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise BackendTimeoutError(
                f"{op}: the daemon at {self.host} did not answer in {QUICK_READ_TIMEOUT:g} s",
                phase="total",
                route=route,
                seconds=QUICK_READ_TIMEOUT,
            ) from exc
        except httpx.HTTPError as exc:
            raise ServerError(
                f"{op}: the connection to {self.host} failed: {type(exc).__name__}: {exc}",
                route=route,
            ) from exc
        except (pydantic.ValidationError, json.JSONDecodeError) as exc:
            raise ServerError(
                f"{op}: the daemon at {self.host} sent an answer dsollama cannot read",
                route=route,
                hint="is this an Ollama daemon? `dsollama status` checks",
            ) from exc

    # -- daemon checks --

    async def check(self) -> DaemonInfo:
        """Is the daemon there, and new enough (≥ 0.5.5) for structured create?"""
        with self._translate("check"):
            root = await self._http.get("/")
            if root.status_code != 200 or "Ollama" not in root.text:
                raise DaemonUnreachableError(
                    self.host,
                    route=f"local:{self.host}",
                    detail=f"something answers there but it is not Ollama (HTTP {root.status_code})",
                )
            resp = await self._http.get("/api/version")
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
        with self._translate("list"):
            return await self._quick.list()

    async def show(self, model: str) -> ollama.ShowResponse:
        """``/api/show`` for one model (ModelNotFoundError when absent)."""
        with self._translate("show", model):
            return await self._quick.show(model)

    async def ps(self) -> ollama.ProcessResponse:
        """``/api/ps``: the models loaded in memory."""
        with self._translate("ps"):
            return await self._quick.ps()

    async def delete(self, model: str) -> ollama.StatusResponse:
        """Remove a model from the daemon."""
        try:
            with self._translate("delete", model):
                return await self._quick.delete(model)
        except ModelNotFoundError as exc:
            exc.hint = "`dsollama list` shows the models on the daemon"
            raise

    async def copy(self, source: str, destination: str) -> ollama.StatusResponse:
        """Copy (alias) a model under another name."""
        with self._translate("copy", source):
            return await self._quick.copy(source, destination)

    async def show_raw(self, model: str) -> dict[str, Any] | None:
        """The full ``/api/show`` JSON, or None when the daemon does not have the model.

        The official ``ShowResponse`` drops ``system`` and ``messages``, which the plan
        must compare, so this reads the JSON directly.
        """
        with self._translate("show", model):
            resp = await self._http.post("/api/show", json={"model": model})
            if resp.status_code == 404:
                return None
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data

    async def _tags_raw(self) -> dict[str, Any]:
        with self._translate("list"):
            resp = await self._http.get("/api/tags")
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data

    # -- pull --

    async def pull(self, model: str) -> AsyncIterator[ProgressEvent]:
        """Pull one library model, yielding progress; PullError unless it ends in success."""
        check_library_name(model, self.catalogue)
        stream = self._long.pull(model, stream=True)
        async for event in self._progress(model, stream, PullError, "pull", "status"):
            yield event
        yield ProgressEvent("done", model, f"pulled {model}")

    async def _progress(
        self,
        model: str,
        opener: Any,
        error: type[ProvisionError],
        verb: str,
        default: EventKind,
    ) -> AsyncIterator[ProgressEvent]:
        """Drive one NDJSON progress stream; it must end in ``success``."""
        import httpx
        import ollama
        import pydantic

        success = False
        stream: Any = None
        try:
            stream = await opener
            async for part in stream:
                if part.status == "success":
                    success = True
                    continue
                yield _event_for(model, part, default)
        except ollama.ResponseError as exc:
            raise self._stream_error(model, verb, error, str(exc.error), exc.status_code) from exc
        except (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise error(
                f"{verb} {model}: the daemon sent no progress for {self._stall:g} s",
                model=model,
                hint=_RERUN_HINT if verb == "pull" else "check the daemon's log, then retry",
            ) from exc
        except httpx.HTTPError as exc:
            raise error(
                f"{verb} {model}: the connection to the daemon broke ({type(exc).__name__})",
                model=model,
                hint=_RERUN_HINT
                if verb == "pull"
                else "retry; `dsollama status` checks the daemon",
            ) from exc
        except (json.JSONDecodeError, pydantic.ValidationError) as exc:
            raise error(
                f"{verb} {model}: the daemon sent a progress line dsollama cannot read",
                model=model,
                hint="is this an Ollama daemon? `dsollama status` checks",
            ) from exc
        finally:
            # A consumer that stops early must not leave the HTTP response open.
            if stream is not None:
                await stream.aclose()
        if not success:
            raise error(
                f"{verb} {model}: the daemon ended the stream before reporting success",
                model=model,
                hint=_RERUN_HINT if verb == "pull" else "retry; the daemon may have restarted",
            )

    def _stream_error(
        self, model: str, verb: str, error: type[ProvisionError], text: str, status: int
    ) -> ProvisionError:
        text = redact(text)
        lowered = text.lower()
        pulling = verb == "pull" or "pull model manifest" in lowered
        if "file does not exist" in lowered and "manifest" in lowered:
            target = model
            if verb == "create":
                target = "its base model"
            tags = known_tags(model, self.catalogue) if verb == "pull" else []
            hint = (
                "known tags: " + ", ".join(tags)
                if tags
                else "check the name at https://ollama.com/library (`dsollama models` lists DeepSeek tags)"
            )
            return error(
                f"{verb} {model}: the Ollama registry has no such model or tag ({target}): {text}",
                model=model,
                hint=hint,
            )
        if "412" in text and "newer version" in lowered:
            return error(
                f"{verb} {model}: this model needs a newer Ollama: {text}",
                model=model,
                hint="upgrade Ollama (https://ollama.com/download), then rerun",
            )
        if "path or modelfile are required" in lowered:
            return DaemonTooOldError(self._info.version if self._info else "< 0.5.5", self.host)
        if verb == "create" and (status in (400, 422) or lowered.startswith("template error")):
            return error(
                f"create {model}: the daemon refused the Modelfile: {text}",
                model=model,
                hint="fix the Modelfile (`dsollama show MODEL --modelfile` shows a working one)",
            )
        if "invalid model name" in lowered:
            return error(
                f"{verb} {model}: invalid model name",
                model=model,
                hint="names look like model[:tag], e.g. deepseek-r1:8b",
            )
        if pulling:
            return error(f"{verb} {model} failed: {text}", model=model, hint=_RERUN_HINT)
        return error(
            f"create {model} failed: {text}",
            model=model,
            hint="check the Modelfile and the daemon's log, then retry",
        )

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
        from ._create_request import plan_create

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
            model, self._open_create(body), CreateError, "create", "create"
        ):
            yield event
        yield ProgressEvent("done", model, f"created {model}")

    async def _open_create(self, body: dict[str, Any]) -> AsyncIterator[ollama.ProgressResponse]:
        extra = set(body) - _CREATE_CLIENT_KEYS
        if not extra:
            return await self._long.create(
                model=body["model"],
                quantize=body.get("quantize"),
                from_=body.get("from"),
                files=body.get("files"),
                adapters=body.get("adapters"),
                template=body.get("template"),
                license=body.get("license"),
                system=body.get("system"),
                parameters=body.get("parameters"),
                messages=body.get("messages"),
                stream=True,
            )
        # renderer/parser/requires/draft_* are not in the official client's create():
        # send the same body ourselves and read the stream the way the client does.
        return self._raw_stream("/api/create", {**body, "stream": True})

    async def _raw_stream(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[ollama.ProgressResponse]:
        import ollama

        async with self._http.stream("POST", path, json=body, timeout=self._long_timeout) as r:
            if r.status_code >= 400:
                await r.aread()
                raise ollama.ResponseError(r.text, r.status_code)
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                part = json.loads(line)
                if err := part.get("error"):
                    raise ollama.ResponseError(err)
                yield ollama.ProgressResponse(**part)

    async def _ensure_blob(self, model: str, blob: BlobUpload) -> AsyncIterator[ProgressEvent]:
        """HEAD first; upload only what the daemon does not have, streaming the file."""
        from ._hardware import format_bytes

        name = Path(blob.path).name
        with self._translate("blob check"):
            head = await self._http.head(f"/api/blobs/{blob.digest}")
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
                with self._translate("upload"):
                    return await self._http.post(
                        f"/api/blobs/{blob.digest}", content=body(), timeout=self._long_timeout
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
        """The model `provision` pulls when none is named (from this machine's memory)."""
        from ._hardware import detect_hardware, recommend

        if self._hardware is None:
            # nvidia-smi may take a few seconds: probe off the event loop.
            self._hardware = await asyncio.to_thread(detect_hardware)
        return recommend(self.catalogue, self._hardware)

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
        for step in plan.steps:
            yield ProgressEvent("plan", step.model, describe_step(step))
        async for event in self.apply(replace(plan, warnings=())):
            yield event
