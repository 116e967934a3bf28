"""`RedisStore`: routing state shared through Redis, by every process that points at it.

Optional extra: ``pip install 'dsollama[redis]'`` (redis-py's asyncio client). The module
imports without it; making a store without it raises a `ConfigError` that says so.

Each operation is one Lua script (`lua.py`), so one round trip and atomic: ``admit``
predicts and takes the lease with nothing in between, on the server's clock. Under a
burst (more than a few operations in flight) operations share round trips in pipelines
(`batching.py`); each script still runs on its own, atomically. Leases
expire ``lease_ttl`` seconds after they were last renewed; a background task renews this
process's leases (one pipelined round trip for all of them) every ``lease_ttl / 3``, so
the slots of a process that dies — even by SIGKILL — are free again within ``lease_ttl``.
Idle keys expire on their own (estimates and breakers after ``idle_ttl``).

Failures raise `StoreError` (never a redis-py exception); `SharedStore` turns them into a
fallback to this process's own view. A store belongs to the event loop that first uses it
(its connections do); the router's loop, or the sync client's private loop thread. The password in the URL is never logged, shown in
`health()` or put in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from .._exceptions import ConfigError, redact
from . import (
    Admission,
    BreakerConfig,
    BreakerOutcome,
    BreakerPass,
    BreakerState,
    Estimates,
    Lease,
    LoadView,
    ServerQueue,
    StoreError,
    StoreHealth,
)
from .batching import Batcher
from .lua import SCRIPTS
from .memory import check_fact_ttl
from .timeouts import bounded_while_silent

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["SCHEMES", "RedisStore", "public_url"]

logger = logging.getLogger("dsollama")

T = TypeVar("T")

_DIRECT_MAX = 4
"Operations in flight on their own round trip before the rest share pipelines."

SCHEMES = ("redis", "rediss", "unix")
_INSTALL_HINT = "install it with pip install 'dsollama[redis]'"


def public_url(url: str) -> str:
    """The URL without credentials (user, password, a password in the query).

    >>> public_url("redis://:s3cret@cache.internal:6379/0")
    'redis://cache.internal:6379/0'
    >>> public_url("unix://user:pw@/run/redis.sock?db=2&password=pw")
    'unix:///run/redis.sock?db=2'
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k == "db"])
    # Built by hand: urlunsplit drops the "//" of an empty host (unix:///path).
    return f"{parts.scheme}://{host}{parts.path}" + (f"?{query}" if query else "")


def _num(value: float) -> str:
    # repr() round-trips a double exactly; Lua's tonumber reads it back bit for bit.
    return repr(float(value))


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@dataclass
class _Held:
    """This process's live leases in one lease set, renewed in the background."""

    keys: tuple[str, ...]
    "The sorted set of expiries first, then the leases hash (admission keys only)."
    ids: set[str] = field(default_factory=set)


class RedisStore:
    """`StateStore` on Redis (see the module docstring)."""

    kind = "redis"
    bounds_operations = True
    "Each operation is bounded by ``op_timeout`` once under way (see `SharedStore`)."
    safety_timeout = 5.0
    "Socket deadlines: a backstop only; a silent server is caught after ``op_timeout``."

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "dsollama",
        breaker: BreakerConfig | None = None,
        lease_ttl: float = 15.0,
        op_timeout: float = 0.05,
        idle_ttl: float = 86_400.0,
        max_connections: int = 16,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``max_connections`` bounds this process's connections: a burst of calls queues
        for them instead of opening one each (`SharedStore` bounds the whole operation,
        wait included, by its ``op_timeout``). ``clock`` is for
        tests: a time to use instead of the server's ``TIME`` (the parity test freezes
        time on this store and on a `MemoryStore` alike)."""
        scheme = urlsplit(url).scheme
        if scheme not in SCHEMES:
            raise ConfigError(
                f"state_url {public_url(url)!r} is not a Redis URL",
                hint="use redis://[:password@]host:port/db, rediss://… (TLS) or unix:///path/to/redis.sock",
            )
        if not namespace or any(c in namespace for c in "{}"):
            raise ConfigError(
                f"namespace {namespace!r} cannot name Redis keys",
                hint="use a non-empty name without braces, such as 'dsollama'",
            )
        if not (lease_ttl > 0 and op_timeout > 0 and idle_ttl >= lease_ttl):
            raise ConfigError(
                "lease_ttl and op_timeout must be positive, and idle_ttl at least lease_ttl",
                hint="the defaults are lease_ttl=15, op_timeout=0.05, idle_ttl=86400 (seconds)",
            )
        try:
            from redis.asyncio import ConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ConfigError(
                "a Redis state store needs the redis package, which is not installed",
                hint=_INSTALL_HINT,
            ) from exc
        self.url = public_url(url)
        self._secret = urlsplit(url).password or ""
        self.namespace = namespace
        self.breaker_config = breaker or BreakerConfig()
        self.lease_ttl = lease_ttl
        self.op_timeout = op_timeout
        self._clock = clock
        self._lease_key_ms = _ms(lease_ttl) + 1000
        self._idle_ms = _ms(idle_ttl)
        # A burst of calls queues for a connection on the semaphore (cheaper than redis-py's
        # blocking pool), so the pool never needs more than max_connections. No retries
        # inside redis-py: a slow or dead Redis must cost one short timeout, after which
        # the caller routes on its own view.
        self._slots = asyncio.Semaphore(max_connections)
        self._pool = ConnectionPool.from_url(
            url,
            max_connections=max_connections,
            decode_responses=True,
            # Wall-clock socket deadlines would fire on a process merely busy with a burst;
            # `_io` gives up after op_timeout of silence from the server instead.
            socket_timeout=max(self.safety_timeout, op_timeout),
            socket_connect_timeout=max(self.safety_timeout, op_timeout),
            retry=Retry(NoBackoff(), 0),
        )
        self._redis: Redis = Redis(connection_pool=self._pool)
        self._scripts: dict[str, AsyncScript] = {
            name: self._redis.register_script(source) for name, source in SCRIPTS.items()
        }
        self._names: dict[tuple[str, str], str] = {}
        self._token = secrets.token_hex(4)
        self._gate_ids = itertools.count(1)
        self._held: dict[str, _Held] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._failed_at = -math.inf
        self._failure: StoreError | None = None
        self._heard_at = -math.inf
        "Loop time of the last answer from Redis."
        self._direct = 0
        "Operations in flight on their own round trip."
        self._batcher = Batcher(
            self._redis,
            self._slots,
            timeout=op_timeout,
            heard=self._heard,
            on_answer=self._answered,
        )

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, namespace={self.namespace!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        # The escaped key is the hash tag: every Redis key of one store key lands in one
        # slot, and no route or model name can break out of its braces.
        name = self._names.get((kind, key))
        if name is None:
            if len(self._names) > 10_000:  # keys come from routes and models: few
                self._names.clear()
            escaped = quote(key, safe="", errors="surrogatepass")
            name = self._names[(kind, key)] = f"{self.namespace}:{kind}:{{{escaped}}}"
        return name

    def _load_keys(self, key: str) -> list[str]:
        base = self._key("load", key)
        return [base + ":leases", base + ":exp", base + ":est"]

    def _now(self) -> str:
        return "" if self._clock is None else _num(self._clock())

    async def _run(self, op: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        script = self._scripts[op]
        if self._direct >= _DIRECT_MAX:
            # A burst: share round trips (batching.py).
            return await self._io(op, lambda: self._batcher.submit(script, keys, args))
        self._direct += 1
        try:
            return await self._io(op, lambda: script(keys=keys, args=args), connection=True)
        finally:
            self._direct -= 1

    async def _io(
        self, op: str, call: Callable[[], Awaitable[T]], *, connection: bool = False
    ) -> T:
        """One operation, bounded while Redis is silent; with ``connection``, holding one
        of this store's connections (else the call brings its own: the batcher's)."""
        queued_at = time.monotonic()
        try:
            async with self._slots if connection else contextlib.nullcontext():
                if self._failed_at >= queued_at:
                    # Redis failed while this waited for a connection: fail now, not after
                    # another timeout, so a burst queued behind a dead Redis drains at once.
                    raise StoreError(f"not sent, Redis failed meanwhile ({self._failure})")
                result = await bounded_while_silent(call(), self.op_timeout, self._heard)
        except Exception as exc:
            self._failed_at = time.monotonic()
            self._failure = self._error(op, exc)
            raise self._failure from exc
        self._answered()
        return result

    def _heard(self) -> float:
        return self._heard_at

    def _answered(self) -> None:
        self._heard_at = asyncio.get_running_loop().time()
        self._last_error = None

    def _error(self, op: str, exc: BaseException) -> StoreError:
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if isinstance(exc, StoreError):
            detail = str(exc)
        elif isinstance(exc, TimeoutError | asyncio.TimeoutError | RedisTimeoutError):
            detail = f"no answer within {self.op_timeout * 1000:.0f} ms"
        else:
            detail = redact(f"{type(exc).__name__}: {exc}", [self._secret])
        self._last_error = f"{op}: {detail}"
        return StoreError(self._last_error)

    def _hold(self, keys: tuple[str, ...], lease_id: str) -> None:
        held = self._held.get(keys[0])
        if held is None:
            held = self._held[keys[0]] = _Held(keys)
        held.ids.add(lease_id)
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    def _drop(self, set_key: str, lease_id: str) -> None:
        held = self._held.get(set_key)
        if held is not None:
            held.ids.discard(lease_id)
            if not held.ids:
                del self._held[set_key]

    async def _renew_forever(self) -> None:
        """Push back the expiry of every lease this process holds, until it holds none."""
        while self._held:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                await self.renew()
            except StoreError as exc:
                # Nothing to do but try again: if Redis stays away the leases expire there,
                # which is right, and the calls route on their own view meanwhile.
                logger.debug("renewing leases failed: %s", exc)

    async def renew(self) -> None:
        """Renew this process's leases now (the background task calls this)."""
        held = [h for h in self._held.values() if h.ids]
        if not held:
            return
        script = self._scripts["renew"]

        async def pipelined() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for h in held:
                    args: list[str | int] = [self._now(), _num(self.lease_ttl), self._lease_key_ms]
                    args += sorted(h.ids)
                    await script(keys=h.keys, args=args, client=pipe)
                return list(await pipe.execute())

        results = await self._io("renew", pipelined, connection=True)
        for h, gone in zip(held, results, strict=True):
            for lease_id in gone:
                self._drop(h.keys[0], lease_id)

    # -- admission ------------------------------------------------------------------------

    async def admit(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        limit_s: float | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> Admission:
        keys = self._load_keys(key)
        args = [
            self._now(),
            max(1, slots),
            _num(priors.prompt_s),
            _num(priors.generation_s),
            "" if limit_s is None else _num(limit_s),
            _num(cold_s),
            "" if server is None else server.running,
            "" if server is None else server.waiting,
            _num(self.lease_ttl),
            self._lease_key_ms,
            self._idle_ms,
        ]
        reply = await self._run("admit", keys, args)
        predicted, in_flight = float(reply[1]), int(reply[2])
        if not int(reply[0]):
            return Admission(None, predicted, in_flight)
        lease = Lease(key, str(reply[3]), float(reply[4]), in_flight, self.kind)
        self._hold((keys[1], keys[0]), lease.id)
        return Admission(lease, predicted, in_flight)

    async def first_token(self, lease: Lease) -> None:
        await self._run(
            "first_token", self._load_keys(lease.key), [self._now(), lease.id, self._idle_ms]
        )

    async def finish(self, lease: Lease, *, ok: bool, load_s: float | None = None) -> None:
        keys = self._load_keys(lease.key)
        # Stop renewing first: if Redis cannot hear the finish, the lease expires there.
        self._drop(keys[1], lease.id)
        load = "" if load_s is None else _num(load_s)
        args = [self._now(), lease.id, "1" if ok else "0", load, self._idle_ms]
        await self._run("finish", keys, args)

    async def observe(self, key: str, *, load_s: float) -> None:
        keys = self._load_keys(key)[2:]
        await self._run("observe", keys, [_num(load_s), self._idle_ms])

    async def predict(
        self,
        key: str,
        *,
        slots: int,
        priors: Estimates,
        lease: Lease | None = None,
        cold_s: float = 0.0,
        server: ServerQueue | None = None,
    ) -> float:
        args = [
            self._now(),
            max(1, slots),
            _num(priors.prompt_s),
            _num(priors.generation_s),
            _num(cold_s),
            "" if server is None else server.running,
            "" if server is None else server.waiting,
            "" if lease is None else lease.id,
        ]
        return float(await self._run("predict", self._load_keys(key), args))

    async def view(self, key: str, *, priors: Estimates) -> LoadView:
        args = [self._now(), _num(priors.prompt_s), _num(priors.generation_s), _num(priors.load_s)]
        in_flight, running, prompt, generation, load, samples, load_samples = await self._run(
            "view", self._load_keys(key), args
        )
        estimates = Estimates(
            float(prompt), float(generation), float(load), int(samples), int(load_samples)
        )
        return LoadView(int(in_flight), int(running), int(in_flight) - int(running), estimates)

    # -- breakers ---------------------------------------------------------------------------

    @staticmethod
    def _state(reply: Sequence[Any]) -> BreakerState:
        state, failures, steps, retry_in, reason, epoch = reply
        return BreakerState(
            cast(Literal["closed", "open", "half-open"], state),
            int(failures),
            int(steps),
            float(retry_in),
            reason or None,
            int(epoch),
        )

    async def breaker_pass(self, key: str) -> BreakerPass:
        args = [self._now(), _num(self.breaker_config.probe_ttl), self._idle_ms]
        reply = await self._run("breaker_pass", [self._key("breaker", key)], args)
        return BreakerPass(bool(reply[0]), bool(reply[1]), int(reply[2]), self._state(reply[3:]))

    async def breaker_report(
        self,
        key: str,
        outcome: BreakerOutcome,
        *,
        epoch: int,
        reason: str = "",
        probe: bool = False,
        disable_s: float | None = None,
    ) -> None:
        config = self.breaker_config
        args = [
            self._now(),
            config.threshold,
            _num(config.cooldown),
            _num(config.cooldown_max),
            outcome,
            epoch,
            reason,
            "1" if probe else "0",
            "" if disable_s is None else _num(disable_s),
            self._idle_ms,
        ]
        await self._run("breaker_report", [self._key("breaker", key)], args)

    async def breaker_state(self, key: str) -> BreakerState:
        reply = await self._run("breaker_state", [self._key("breaker", key)], [self._now()])
        return self._state(reply)

    # -- gates --------------------------------------------------------------------------------

    async def gate_take(self, key: str, *, limit: int) -> Lease | None:
        gate = self._key("gate", key)
        lease_id = f"{self._token}.{next(self._gate_ids)}"
        args = [self._now(), limit, lease_id, _num(self.lease_ttl), self._lease_key_ms]
        reply = await self._run("gate_take", [gate], args)
        if not int(reply[0]):
            return None
        self._hold((gate,), lease_id)
        return Lease(key, lease_id, float(reply[2]), int(reply[1]), self.kind)

    async def gate_release(self, lease: Lease) -> None:
        gate = self._key("gate", lease.key)
        self._drop(gate, lease.id)
        await self._io("gate_release", lambda: self._redis.zrem(gate, lease.id), connection=True)

    async def gate_count(self, key: str) -> int:
        return int(await self._run("gate_count", [self._key("gate", key)], [self._now()]))

    # -- facts ----------------------------------------------------------------------------------

    async def fact_get(self, key: str) -> str | None:
        value = await self._io(
            "fact_get", lambda: self._redis.get(self._key("fact", key)), connection=True
        )
        return None if value is None else str(value)

    async def fact_set(self, key: str, value: str, *, ttl_s: float) -> None:
        check_fact_ttl(ttl_s)
        name = self._key("fact", key)
        await self._io(
            "fact_set", lambda: self._redis.set(name, value, px=_ms(ttl_s)), connection=True
        )

    # -- lifecycle --------------------------------------------------------------------------------

    def health(self) -> StoreHealth:
        return StoreHealth(
            kind=self.kind,
            url=self.url,
            ok=self._last_error is None,
            using_fallback=False,
            last_error=self._last_error,
        )

    async def aclose(self) -> None:
        """Stop renewing (held leases then expire within ``lease_ttl``) and disconnect."""
        if self._renewer is not None:
            self._renewer.cancel()
            try:
                await self._renewer
            except (asyncio.CancelledError, Exception):
                pass
            self._renewer = None
        self._held.clear()
        await self._batcher.aclose()
        await self._redis.aclose()
        await self._pool.disconnect()

    async def server_time(self) -> float:
        """The Redis server's clock, in seconds (the clock of ``Lease.started``)."""
        seconds, micros = await self._io("time", lambda: self._redis.time(), connection=True)
        return float(seconds) + float(micros) / 1_000_000
