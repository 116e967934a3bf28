"""Provision the recommended model and every Modelfile, idempotently, as typed events a
GUI could render (the same engine as `dsollama pull`).

    python examples/provision.py [--real]
"""

from __future__ import annotations

from pathlib import Path

from _servers import client_settings, servers

import dsollama

MODELFILES = Path(__file__).resolve().parent.parent / "Modelfiles"

with servers(models=[]) as env, dsollama.Client(**client_settings(env)) as client:
    for run in ("first run", "second run"):
        print(f"-- {run}")
        for event in client.provision(modelfiles_dir=MODELFILES):
            if event.kind in {"layer"} and event.completed != event.total:
                continue  # keep the example's output short: only finished layers
            print(f"{event.kind:>14}  {event.model:<28} {event.message}")
