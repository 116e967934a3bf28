"""Pure codecs between the wire formats and dsollama's internal `Delta`.

Nothing here does I/O or reads a clock; the backends and the router call these.

- `reasoning`: split inline ``<think>…</think>`` out of answer text, incrementally.
- `sse`: server-sent-event framing for OpenAI-format streams, keep-alive aware.
- `hosted`: Ollama-shaped requests → OpenAI-format (DeepSeek) requests, responses → `Delta`s,
  HTTP errors → dsollama errors.
- `local`: Ollama NDJSON lines → `Delta`s, ollama/httpx exceptions → dsollama errors.
- `local_request`: the body of a streamed ``/api/chat`` or ``/api/generate``, made by the
  official client's own request models.
- `schema`: a small JSON-schema check for answers to ``format=<schema>`` requests.

Modules are imported directly (``from dsollama._wire.hosted_request import …``); this package
re-exports nothing so that importing one codec does not pull in the others.
"""

from __future__ import annotations
