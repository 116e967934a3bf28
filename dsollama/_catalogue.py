"""The catalogue of DeepSeek models: local Ollama tags, hosted models, prices, and the
mapping between them.

It is data (``data/catalogue.json``), not code: names churn (DeepSeek retired
``deepseek-chat``/``deepseek-reasoner`` in 2026), so users can extend or override entries
with the ``catalogue_path`` setting (a JSON or TOML file of the same shape).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError, UnknownModelError

__all__ = [
    "Catalogue",
    "HostedModel",
    "LocalModel",
    "Price",
    "load_catalogue",
    "normalise_model_name",
    "read_override",
]


def normalise_model_name(name: str) -> str:
    """Ollama's view of a model name: lower case, ``:latest`` when no tag.

    >>> normalise_model_name('DeepSeek-R1')
    'deepseek-r1:latest'
    >>> normalise_model_name('deepseek-r1:8B')
    'deepseek-r1:8b'
    >>> normalise_model_name('registry.ollama.ai/library/deepseek-r1:8b')
    'deepseek-r1:8b'
    >>> normalise_model_name('me/tuned:v1')
    'me/tuned:v1'
    """
    name = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "registry.ollama.ai/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


@dataclass(frozen=True)
class LocalModel:
    """One tag in Ollama's library."""

    tag: str
    library: str
    base_model: str
    "What the model really is (the deepseek-r1 1.5b–70b tags are Qwen/Llama distills)."
    distill: bool
    architecture: str
    parameters: str
    size_bytes: int
    context_length: int
    memory_gb: float
    capabilities: tuple[str, ...]
    hosted: str
    "Hosted counterpart used when this model falls back."
    hosted_thinking: bool
    default: bool = False
    "The tag `library` (and `library:latest`) resolves to."
    notes: str = ""

    @property
    def thinking(self) -> bool:
        return "thinking" in self.capabilities


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    cache_hit: float
    cache_miss: float
    output: float


@dataclass(frozen=True)
class HostedModel:
    name: str
    version: str
    context_length: int
    max_output: int
    thinking_default: bool
    fim: str
    vision: bool
    peak: Price
    off_peak: Price
    local: str
    "Local tag a hosted-first call falls back to when thinking is on."
    local_non_thinking: str
    alias_of: str | None = None


@dataclass(frozen=True)
class _Family:
    prefix: str
    hosted: str
    hosted_thinking: bool


@dataclass(frozen=True)
class Catalogue:
    local: Mapping[str, LocalModel]
    hosted: Mapping[str, HostedModel]
    retired_hosted: Mapping[str, str]
    peak_hours_utc: tuple[tuple[int, int], ...]
    families: tuple[_Family, ...] = field(default=())
    version: str = ""

    # -- lookups -----------------------------------------------------------------

    def resolve(self, name: str) -> LocalModel | None:
        """The catalogue entry for a local model name (``deepseek-r1`` → the default tag)."""
        norm = normalise_model_name(name)
        if norm in self.local:
            return self.local[norm]
        library, _, tag = norm.partition(":")
        if tag == "latest":
            for model in self.local.values():
                if model.library == library and model.default:
                    return model
        return None

    def require(self, name: str) -> LocalModel:
        """Like `resolve`, but an unknown name raises with the closest catalogue names."""
        model = self.resolve(name)
        if model is None:
            raise UnknownModelError(name, self.suggest(name))
        return model

    def suggest(self, name: str, n: int = 3) -> list[str]:
        candidates = list(self.local) + sorted({m.library for m in self.local.values()})
        query = normalise_model_name(name).removesuffix(":latest")
        return difflib.get_close_matches(query, candidates, n=n, cutoff=0.5)

    def hosted_for(
        self, local_name: str, overrides: Mapping[str, str] | None = None
    ) -> tuple[str, bool] | None:
        """(hosted model, thinking on?) for a local model name; custom names map by prefix.

        None for a name nothing connects to a hosted model (not in the catalogue, the
        overrides or a DeepSeek family): such a prompt never leaves the machine.
        """
        norm = normalise_model_name(local_name)
        model = self.resolve(norm)
        thinking = model.hosted_thinking if model else None
        for key in (local_name, norm, norm.removesuffix(":latest")):
            if overrides and key in overrides:
                hosted = overrides[key]
                return hosted, thinking if thinking is not None else self._family_thinking(norm)
        if model is not None:
            return model.hosted, model.hosted_thinking
        for family in self.families:
            if norm.rsplit("/", 1)[-1].startswith(family.prefix):
                return family.hosted, family.hosted_thinking
        return None

    def _family_thinking(self, norm: str) -> bool:
        for family in self.families:
            if norm.rsplit("/", 1)[-1].startswith(family.prefix):
                return family.hosted_thinking
        return False

    def local_for(self, hosted_name: str, thinking: bool) -> str:
        """The local model a hosted-first call falls back to."""
        model = self.hosted.get(hosted_name)
        if model is None:
            return "deepseek-r1:8b" if thinking else "deepseek-coder-v2:16b"
        return model.local if thinking else model.local_non_thinking

    def context_length(self, name: str) -> int | None:
        model = self.resolve(name)
        return model.context_length if model else None

    # -- money ---------------------------------------------------------------------

    def is_peak(self, when: dt.datetime) -> bool:
        when = when.astimezone(dt.timezone.utc)
        if when.weekday() >= 5:
            return False
        return any(start <= when.hour < end for start, end in self.peak_hours_utc)

    def price(self, hosted_name: str, when: dt.datetime | None = None) -> Price | None:
        model = self.hosted.get(hosted_name)
        if model is None:
            return None
        when = when or dt.datetime.now(dt.timezone.utc)
        return model.peak if self.is_peak(when) else model.off_peak

    def cost_usd(
        self,
        hosted_name: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        when: dt.datetime | None = None,
    ) -> float | None:
        """Estimated charge for one hosted call; reasoning tokens are billed as output."""
        price = self.price(hosted_name, when)
        if price is None:
            return None
        miss = max(prompt_tokens - cached_tokens, 0)
        total = (
            cached_tokens * price.cache_hit
            + miss * price.cache_miss
            + completion_tokens * price.output
        )
        return total / 1_000_000


def _local_from(raw: Mapping[str, Any]) -> LocalModel:
    return LocalModel(
        tag=normalise_model_name(str(raw["tag"])),
        library=str(raw["library"]),
        base_model=str(raw["base_model"]),
        distill=bool(raw.get("distill", False)),
        architecture=str(raw.get("architecture", "")),
        parameters=str(raw.get("parameters", "")),
        size_bytes=int(raw.get("size_bytes", 0)),
        context_length=int(raw.get("context_length", 4096)),
        memory_gb=float(raw.get("memory_gb", 0.0)),
        capabilities=tuple(raw.get("capabilities", ("completion",))),
        hosted=str(raw.get("hosted", "deepseek-flash")),
        hosted_thinking=bool(raw.get("hosted_thinking", False)),
        default=bool(raw.get("default", False)),
        notes=str(raw.get("notes", "")),
    )


def _hosted_from(raw: Mapping[str, Any]) -> HostedModel:
    prices = raw.get("prices_usd_per_mtok", {})

    def price(kind: str) -> Price:
        p = prices.get(kind, {})
        return Price(
            float(p.get("cache_hit", 0)), float(p.get("cache_miss", 0)), float(p.get("output", 0))
        )

    return HostedModel(
        name=str(raw["name"]),
        version=str(raw.get("version", "")),
        context_length=int(raw.get("context_length", 0)),
        max_output=int(raw.get("max_output", 0)),
        thinking_default=bool(raw.get("thinking_default", False)),
        fim=str(raw.get("fim", "")),
        vision=bool(raw.get("vision", False)),
        peak=price("peak"),
        off_peak=price("off_peak"),
        local=str(raw.get("local", "deepseek-r1:8b")),
        local_non_thinking=str(raw.get("local_non_thinking", "deepseek-coder-v2:16b")),
        alias_of=raw.get("alias_of"),
    )


def _merge_by(
    key: str, base: Iterable[Mapping[str, Any]], extra: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for item in base:
        merged[str(item[key])] = dict(item)
    for item in extra:
        merged.setdefault(str(item[key]), {}).update(item)
    return list(merged.values())


def read_override(path: str | Path) -> dict[str, Any]:
    """An override file (JSON, or TOML by its suffix) as a table."""
    path = Path(path).expanduser()
    try:
        if path.suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            with path.open("rb") as fh:
                loaded: dict[str, Any] = tomllib.load(fh)
                return loaded
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"catalogue file {path} does not exist", hint="fix the catalogue_path setting"
        ) from None
    except (ValueError, OSError) as exc:
        raise ConfigError(f"catalogue file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"catalogue file {path} must hold an object with 'local'/'hosted' lists")
    return data


@lru_cache(maxsize=8)
def load_catalogue(override_path: str | None = None) -> Catalogue:
    """The built-in catalogue, extended or overridden by ``override_path`` when given."""
    text = resources.files("dsollama").joinpath("data/catalogue.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    if override_path:
        extra = read_override(override_path)
        data["local"] = _merge_by("tag", data["local"], extra.get("local", []))
        data["hosted"] = _merge_by("name", data["hosted"], extra.get("hosted", []))
        data["retired_hosted"] = {**data["retired_hosted"], **extra.get("retired_hosted", {})}
        data["families"] = list(extra.get("families", [])) + data["families"]
    try:
        local = {m.tag: m for m in map(_local_from, data["local"])}
        hosted = {m.name: m for m in map(_hosted_from, data["hosted"])}
        families = tuple(
            _Family(str(f["prefix"]), str(f["hosted"]), bool(f.get("hosted_thinking", False)))
            for f in data.get("families", [])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"catalogue entry is malformed: {exc!r}", hint="check catalogue_path"
        ) from None
    peak = tuple((int(a), int(b)) for a, b in data.get("peak_hours_utc", {}).get("weekdays", []))
    return Catalogue(
        local=local,
        hosted=hosted,
        retired_hosted=dict(data.get("retired_hosted", {})),
        peak_hours_utc=peak,
        families=families,
        version=str(data.get("version", "")),
    )
