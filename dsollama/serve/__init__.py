"""`dsollama serve`: one local endpoint, Ollama's API and OpenAI's, answered with fallback.

GUI clients (Open WebUI, Cherry Studio), ``llm`` and code in any language point at it as
they would at an Ollama host or an OpenAI-format API; every model call goes through the
same router as `dsollama.AsyncClient`. Needs the ``serve`` extra (starlette, uvicorn):
``pip install 'dsollama[serve]'``. See docs/serve.md.

Modules, one job each: `app` (the app factory and its lifetime), `ollama_api`,
`openai_api` + `openai_wire`, `compat` (``POST /generate``), `passthrough` (provisioning
routes relayed to the daemon), `admin` (who may use those), `models` (every route's models),
`health` (/healthz, /readyz, /metrics), `metrics` + `observe` (Prometheus text),
`router_metrics` (breakers and the state store, read when scraped), `security` (bind
rule, token, Host and Origin checks), `errors` (each dialect's error shape), `validate`
(request bodies) + `safe_json` (what JSON decoding lets through), `info` (headers and
body fields saying who served), `streaming` (writing answers, cancelling on disconnect),
`server` (uvicorn with graceful shutdown) + `slow_clients` (deadlines on receiving
requests), `run` (one process, or ``--workers`` processes on one socket).
"""

from __future__ import annotations

from .app import DEFAULT_MAX_BODY, create_app

__all__ = ["DEFAULT_MAX_BODY", "create_app"]
