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

The modules: `events` (`ProgressEvent`), `goformat` (Go ``%#v`` text of ``/api/show``
parameters), `plan` (the pure plan), `errors` (failure translation and timeouts) and
`engine` (`AsyncProvisioner`). This package re-exports their public names, so callers
import from ``dsollama._provision``.
"""

from __future__ import annotations

from .._backends.daemon import QUICK_READ_TIMEOUT as QUICK_READ_TIMEOUT
from .._backends.daemon import STALL_TIMEOUT as STALL_TIMEOUT
from .engine import MIN_DAEMON_VERSION, AsyncProvisioner, DaemonInfo
from .events import ProgressEvent
from .goformat import (
    format_show_parameters,
    go_format_value,
    go_quote,
    go_unquote,
    parse_show_parameters,
)
from .plan import (
    DaemonState,
    InstalledModel,
    PlanStep,
    ProvisionPlan,
    check_library_name,
    compare_created,
    describe_step,
    discover_modelfiles,
    known_tags,
    make_plan,
    parse_version,
    summarise_plan,
)

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
