"""`dsollama demo`: the whole point of dsollama in one command, on simulated servers.

The demo needs no Ollama, no API key and no network. It starts the doubles from
`dsollama.testing` in this process (a one-slot local daemon with a realistic token rate
and cold load, and a hosted API with busy episodes), provisions a Modelfile with the
real provisioning code, then sends the same burst of concurrent chats twice: through
`dsollama.AsyncClient` and through the official `ollama.AsyncClient`, and compares.

Modules, one job each: `scenario` (what is simulated and the settings the client gets),
`burst` (sending a burst and timing every request), `live` (showing it as it happens),
`summary` (the closing table). `dsollama.cli.demo` is the command.
"""

from __future__ import annotations
