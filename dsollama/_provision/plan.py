"""The pure provisioning plan: what the daemon has, what is wanted, and what to do.

`DaemonState` and `InstalledModel` hold what ``/api/tags`` and ``/api/show`` report;
`make_plan` decides from them and the wanted tags and `CreatePlan`s what to pull, what to
(re-)create and what is already up to date (`compare_created` finds the differences,
`check_library_name` refuses misspelt DeepSeek tags); `ProvisionPlan`, `describe_step` and
`summarise_plan` put the result into words. Nothing here does I/O but listing a folder
of Modelfiles (`discover_modelfiles`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .._catalogue import Catalogue, normalise_model_name
from .._exceptions import UnknownModelError
from .goformat import go_format_value, parse_show_parameters

if TYPE_CHECKING:
    from .._create_request import CreatePlan

__all__ = [
    "Action",
    "DaemonState",
    "InstalledModel",
    "PlanStep",
    "ProvisionPlan",
    "check_library_name",
    "compare_created",
    "describe_step",
    "discover_modelfiles",
    "known_tags",
    "make_plan",
    "parse_version",
    "summarise_plan",
]

Action = Literal["pull", "create", "up-to-date"]


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
    recommended: tuple[str, str] | None = None
    "(tag, why) when no model was named and the one recommended for this machine is wanted."

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

    def describe_recommendation(self) -> str:
        """'recommended deepseek-r1:8b: <why>', or '' when the models were named."""
        if self.recommended is None:
            return ""
        tag, why = self.recommended
        return f"recommended {tag}: {why}"

    def describe(self) -> list[str]:
        """The plan as lines for people (``dsollama pull --dry-run``)."""
        from .._hardware import format_bytes

        where = f" on {self.host}" if self.host else ""
        version = f" (Ollama {self.version})" if self.version else ""
        lines = [f"plan{where}{version}:"]
        if self.recommended is not None:
            lines.append(f"  {self.describe_recommendation()}")
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
    recommended: tuple[str, str] | None = None,
) -> ProvisionPlan:
    """Decide what to pull, what to (re-)create and what is up to date. Pure.

    A library model is up to date when the daemon has it (no re-pull: ``dsollama pull``
    provisions, it does not upgrade). A created model is up to date when `compare_created`
    finds no difference. A create whose base is missing gets a pull step for the base,
    so progress shows as a pull rather than inside the create stream. Creates are ordered
    so a model built from another Modelfile model comes after it, and a re-created base
    forces its dependants to be re-created too. ``recommended`` ((tag, why)) is carried
    into the plan so that the reason a model was chosen is shown with it.
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
        steps=tuple(ordered),
        host=host,
        version=daemon.version,
        warnings=tuple(warnings),
        recommended=recommended,
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


def describe_step(step: PlanStep) -> str:
    """One plan step as a line: 'pull deepseek-r1:8b: not on the daemon (5.2 GB download)'."""
    from .._hardware import format_bytes

    reason = step.reason
    if step.action == "pull" and step.size_bytes:
        reason += f" ({format_bytes(step.size_bytes)} download)"
    if step.changes:
        reason += ": " + "; ".join(step.changes)
    return f"{step.action} {step.model}: {reason}"
