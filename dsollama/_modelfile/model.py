"""The parsed Modelfile: `Modelfile`, `Message` and the types their fields use.

Plain frozen values with no behaviour beyond keeping themselves immutable and hashable
(`Modelfile.parameters` is a read-only mapping that compares like a dict); the parser
builds them, the renderer and the create request read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Union

__all__ = ["Message", "Modelfile", "ParamValue", "Role"]

ParamValue = Union[int, float, bool, str, tuple[str, ...]]

Role = Literal["system", "user", "assistant"]
_ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One preset conversation turn (``MESSAGE <role> <content>``)."""

    role: Role
    content: str


class _Parameters(Mapping[str, ParamValue]):
    """A read-only, hashable, insertion-ordered mapping that compares like a dict."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, ParamValue]) -> None:
        self._data = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in data.items()}

    def __getitem__(self, key: str) -> ParamValue:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True)
class Modelfile:
    """A parsed Modelfile: what ``ollama create`` would build, already type-checked.

    ``parameters`` keeps the order of first appearance and compares by value; ``stop``
    is a tuple of every ``PARAMETER stop`` line in order. ``requires`` is stored without
    a leading ``v``. ``path`` and ``warnings`` do not take part in equality.
    """

    from_: str
    parameters: Mapping[str, ParamValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None
    draft: str | None = None
    path: str | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        # Frozen means frozen: callers may pass a dict or lists; keep private copies.
        object.__setattr__(self, "parameters", _Parameters(self.parameters))
        for name in ("adapters", "licenses", "messages", "warnings"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
