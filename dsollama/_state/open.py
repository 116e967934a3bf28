"""`open_store`: the store a ``state_url`` setting names."""

from __future__ import annotations

import time
from collections.abc import Callable

from .._exceptions import ConfigError
from . import BreakerConfig, StateStore
from .memory import MemoryStore

__all__ = ["open_store"]


def open_store(
    url: str | None,
    *,
    breaker: BreakerConfig,
    namespace: str = "dsollama",
    lease_ttl: float = 15.0,
    op_timeout: float = 0.05,
    wait_limit: float = 1.0,
    retry_every: float = 1.0,
    clock: Callable[[], float] | None = None,
) -> StateStore:
    """The store a ``state_url`` setting names.

    None or ``"memory"``: this process only (`MemoryStore`). ``redis://``, ``rediss://``
    or ``unix://``: shared through Redis, with this process's own view as the fallback
    (`SharedStore` over `RedisStore`). ``clock`` (tests) replaces the in-memory clock.
    Anything else is a `ConfigError` that names the setting and the accepted forms.
    """
    local_clock = clock or time.monotonic
    if url is None or url.strip() == "memory":
        return MemoryStore(breaker=breaker, clock=local_clock)
    from .redis_store import SCHEMES, RedisStore, public_url

    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(
            f"state_url {public_url(url)!r} is not a store dsollama knows",
            hint="set state_url to 'memory' (the default: this process only), "
            "redis://[:password@]host:port/db, rediss://… (TLS) or unix:///path/to/redis.sock",
        )
    from .shared import SharedStore

    shared = RedisStore(
        url, namespace=namespace, breaker=breaker, lease_ttl=lease_ttl, op_timeout=op_timeout
    )
    return SharedStore(
        shared,
        MemoryStore(breaker=breaker, clock=local_clock),
        op_timeout=op_timeout,
        wait_limit=wait_limit,
        retry_every=retry_every,
    )
