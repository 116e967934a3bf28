"""Settings of the OpenAI-format doubles: checked conversions, and `configure`/`config`.

A double lists its run-time settings in a table of name → converter; the converter
checks a value (from Python, or from JSON over ``POST /_dsollama/config``) and returns it
in the type the double keeps, or raises TypeError/ValueError saying what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

__all__ = [
    "Configurable",
    "as_bool",
    "as_count",
    "as_interval",
    "as_limit",
    "as_positive",
    "as_seconds",
    "as_str",
    "as_strings",
]


def as_strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("expected a list of strings")
    items = tuple(value)
    if not all(isinstance(v, str) for v in items):
        raise TypeError("expected a list of strings")
    return items


def as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def as_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected an integer >= 0")
    return value


def as_positive(value: Any) -> int:
    if as_count(value) < 1:
        raise ValueError("expected an integer >= 1")
    return int(value)


def as_limit(value: Any) -> int | None:
    return None if value is None else as_count(value)


def as_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("expected a number >= 0")
    return float(value)


def as_interval(value: Any) -> float:
    number = as_seconds(value)
    if number <= 0:
        raise ValueError("expected a number > 0")
    return number


class Configurable:
    """`configure` / `config` over the class's ``_settings`` table (the control route uses them)."""

    _settings: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings by name (all checked before any is applied); returns them all."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            convert = self._settings.get(name)
            if convert is None:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(self._settings)}")
            try:
                checked[name] = convert(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"bad value for {name}: {exc}") from None
        current = {name: getattr(self, name) for name in self._settings if hasattr(self, name)}
        self._check_together({**current, **checked})
        for name, value in checked.items():
            setattr(self, name, value)
        self._after_configure(set(checked))
        return self.config()

    def config(self) -> dict[str, Any]:
        """The current settings, JSON-ready."""
        out: dict[str, Any] = {}
        for name in self._settings:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def _check_together(self, settings: Mapping[str, Any]) -> None:
        """Hook: raise ValueError when settings that are fine alone clash together."""

    def _after_configure(self, changed: set[str]) -> None:
        """Hook: act on changed settings (e.g. let queued requests into new slots)."""
