"""dsollama: DeepSeek on your own machine, dependably.

    import dsollama
    client = dsollama.Client()                       # drop-in for ollama.Client
    r = client.chat("deepseek-r1:8b", messages=[{"role": "user", "content": "hi"}])
    print(r.message.content, r.served_by)

Importing this package is cheap: every public name is loaded on first use, so
`import dsollama` and `dsollama --help` stay fast and never touch the network.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    # clients
    "AsyncClient": "dsollama._client",
    "Client": "dsollama._sync",
    # results
    "Attempt": "dsollama._types",
    "CallRecord": "dsollama._types",
    "ChatResponse": "dsollama._types",
    "EmbedResponse": "dsollama._types",
    "GenerateResponse": "dsollama._types",
    "HostedUsage": "dsollama._types",
    "Seam": "dsollama._types",
    "ServedBy": "dsollama._types",
    # settings and catalogue
    "Settings": "dsollama._config",
    "explain_settings": "dsollama._config",
    "load_settings": "dsollama._config",
    "Catalogue": "dsollama._catalogue",
    "load_catalogue": "dsollama._catalogue",
    # Modelfiles
    "Modelfile": "dsollama._modelfile",
    "parse_modelfile": "dsollama._modelfile",
    "load_modelfile": "dsollama._modelfile",
    "render_modelfile": "dsollama._modelfile",
    # provisioning
    "AsyncProvisioner": "dsollama._provision",
    "ProgressEvent": "dsollama._provision",
    # errors
    "AllRoutesFailedError": "dsollama._exceptions",
    "BackendError": "dsollama._exceptions",
    "BackendTimeoutError": "dsollama._exceptions",
    "BadRequestError": "dsollama._exceptions",
    "BusyError": "dsollama._exceptions",
    "ConfigError": "dsollama._exceptions",
    "ContextOverflowError": "dsollama._exceptions",
    "CreateError": "dsollama._exceptions",
    "DaemonTooOldError": "dsollama._exceptions",
    "DaemonUnreachableError": "dsollama._exceptions",
    "DsollamaError": "dsollama._exceptions",
    "HostedAuthError": "dsollama._exceptions",
    "HostedBalanceError": "dsollama._exceptions",
    "IncompleteResponseError": "dsollama._exceptions",
    "InsecureEndpointError": "dsollama._exceptions",
    "InsufficientResourceError": "dsollama._exceptions",
    "MissingAPIKeyError": "dsollama._exceptions",
    "ModelNotFoundError": "dsollama._exceptions",
    "ModelfileError": "dsollama._exceptions",
    "ProvisionError": "dsollama._exceptions",
    "PullError": "dsollama._exceptions",
    "RedirectRefusedError": "dsollama._exceptions",
    "ServerError": "dsollama._exceptions",
    "StreamInterruptedError": "dsollama._exceptions",
    "UnknownModelError": "dsollama._exceptions",
    "UnsupportedRequestError": "dsollama._exceptions",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from ._catalogue import Catalogue as Catalogue
    from ._catalogue import load_catalogue as load_catalogue
    from ._client import AsyncClient as AsyncClient
    from ._config import Settings as Settings
    from ._config import explain_settings as explain_settings
    from ._config import load_settings as load_settings
    from ._exceptions import AllRoutesFailedError as AllRoutesFailedError
    from ._exceptions import BackendError as BackendError
    from ._exceptions import BackendTimeoutError as BackendTimeoutError
    from ._exceptions import BadRequestError as BadRequestError
    from ._exceptions import BusyError as BusyError
    from ._exceptions import ConfigError as ConfigError
    from ._exceptions import ContextOverflowError as ContextOverflowError
    from ._exceptions import CreateError as CreateError
    from ._exceptions import DaemonTooOldError as DaemonTooOldError
    from ._exceptions import DaemonUnreachableError as DaemonUnreachableError
    from ._exceptions import DsollamaError as DsollamaError
    from ._exceptions import HostedAuthError as HostedAuthError
    from ._exceptions import HostedBalanceError as HostedBalanceError
    from ._exceptions import IncompleteResponseError as IncompleteResponseError
    from ._exceptions import InsecureEndpointError as InsecureEndpointError
    from ._exceptions import InsufficientResourceError as InsufficientResourceError
    from ._exceptions import MissingAPIKeyError as MissingAPIKeyError
    from ._exceptions import ModelfileError as ModelfileError
    from ._exceptions import ModelNotFoundError as ModelNotFoundError
    from ._exceptions import ProvisionError as ProvisionError
    from ._exceptions import PullError as PullError
    from ._exceptions import RedirectRefusedError as RedirectRefusedError
    from ._exceptions import ServerError as ServerError
    from ._exceptions import StreamInterruptedError as StreamInterruptedError
    from ._exceptions import UnknownModelError as UnknownModelError
    from ._exceptions import UnsupportedRequestError as UnsupportedRequestError
    from ._modelfile import Modelfile as Modelfile
    from ._modelfile import load_modelfile as load_modelfile
    from ._modelfile import parse_modelfile as parse_modelfile
    from ._modelfile import render_modelfile as render_modelfile
    from ._provision import AsyncProvisioner as AsyncProvisioner
    from ._provision import ProgressEvent as ProgressEvent
    from ._sync import Client as Client
    from ._types import Attempt as Attempt
    from ._types import CallRecord as CallRecord
    from ._types import ChatResponse as ChatResponse
    from ._types import EmbedResponse as EmbedResponse
    from ._types import GenerateResponse as GenerateResponse
    from ._types import HostedUsage as HostedUsage
    from ._types import Seam as Seam
    from ._types import ServedBy as ServedBy

    __version__: str


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from ._version import version

        return version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dsollama' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
