"""What the Ollama double knows: settings, models on disk, blobs, runners, requests in flight.

The route handlers (`_ollama_infer`, `_ollama_provision`, `_ollama_openai`) and the
`FakeOllama` front share this one object. Handlers take it, not the front, so they depend
on the daemon's state alone and the front can compose them without an import circle.

While the double serves, models, blobs, runners and counts change on its event-loop
thread only; settings may change from a test's thread at any time (they are read, never
iterated).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from ._faults import FaultPlan
from ._ollama_models import FakeModel, ModelName, parse_name, registry_index
from ._ollama_sched import Scheduler
from ._ollama_settings import DaemonSettings

__all__ = ["DaemonState"]


class DaemonState:
    """The daemon's shared state; handlers read settings from it when a request needs them."""

    def __init__(
        self, settings: DaemonSettings, faults: FaultPlan, registry: Iterable[FakeModel]
    ) -> None:
        self.settings = settings
        self.faults = faults
        "The double's queued faults: streaming handlers act them out mid-answer."
        self.registry = registry_index(registry)
        "What a pull finds, by `ModelName.key`."
        self.installed: dict[str, FakeModel] = {}
        self.modified: dict[str, float] = {}
        "When each installed model was last written (``modified_at``), by key."
        self.blobs: dict[str, tuple[int, bytes]] = {}
        "digest → (size, first bytes): what /api/blobs and pulls stored."
        self.in_flight: dict[str, int] = {}
        "Requests inside the daemon per model key: queued, loading, waiting or generating."
        self.sched = Scheduler(settings)

    def new_scheduler(self) -> None:
        """No runners: their timers and futures belonged to the loop of the last start."""
        self.sched = Scheduler(self.settings)

    # -- models on disk -----------------------------------------------------------------

    def install(self, model: str | FakeModel) -> FakeModel:
        """Install a model as if pulled: a registry name, any name, or a `FakeModel`."""
        if isinstance(model, str):
            name = parse_name(model)
            if name is None:
                raise ValueError(f"invalid model name {model!r}")
            found = self.registry.get(name.key)
            model = (
                dataclasses.replace(found, name=name.display) if found else FakeModel(name.display)
            )
        name = parse_name(model.name)
        if name is None:
            raise ValueError(f"invalid model name {model.name!r}")
        model = dataclasses.replace(model, name=name.display)
        self.store(name, model)
        return model

    def store(self, name: ModelName, model: FakeModel) -> None:
        """Write a model's manifest; its layers count as on disk from now on."""
        self.installed[name.key] = model
        self.modified[name.key] = time.time()
        for layer in model.layers():
            self.blobs.setdefault(layer.digest, (layer.size, b""))

    def lookup(self, name: ModelName) -> FakeModel | None:
        return self.installed.get(name.key)

    def installed_names(self) -> list[str]:
        # A copy first: a test thread may ask while the loop thread installs.
        return [m.name for m in tuple(self.installed.values())]

    def loaded_names(self) -> list[str]:
        return [r.model.name for r in tuple(self.sched.loaded.values())]

    def newest_first(self) -> list[tuple[str, FakeModel]]:
        """(key, model) for every installed model, most recently written first (as listed)."""
        return sorted(self.installed.items(), key=lambda item: -self.modified[item[0]])

    def remove(self, name: ModelName) -> FakeModel | None:
        """Delete a model's manifest and the layers only it used; None if it was not there."""
        model = self.installed.pop(name.key, None)
        if model is not None:
            self.modified.pop(name.key, None)
            self.prune()
        return model

    def prune(self) -> None:
        """Layers no longer referenced by any manifest are deleted (uploads are kept)."""
        used = {layer.digest for model in self.installed.values() for layer in model.layers()}
        for digest, (_, head) in list(self.blobs.items()):
            if digest not in used and not head:
                del self.blobs[digest]

    # -- requests -----------------------------------------------------------------------

    def enter(self, name: ModelName) -> None:
        self.in_flight[name.key] = self.in_flight.get(name.key, 0) + 1

    def leave(self, name: ModelName) -> None:
        self.in_flight[name.key] -= 1

    def in_flight_for(self, model: str) -> int:
        name = parse_name(model)
        return self.in_flight.get(name.key if name else model, 0)

    def snapshot(self) -> dict[str, Any]:
        """Installed and loaded models, requests in flight (``GET /_dsollama/state``)."""
        return {
            "installed": self.installed_names(),
            "loaded": self.loaded_names(),
            "in_flight": {k: v for k, v in self.in_flight.items() if v},
        }
