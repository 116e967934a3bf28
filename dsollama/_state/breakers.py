"""The breaker state machine every store follows — pure; the clock is an argument.

The Redis store runs the same rules in Lua (`lua.py`); a property test drives both.

Why epochs: when a route breaks, every call already in flight fails too. Counting those
failures would double the cooldown once per call (12 concurrent 503s: 300 s instead of
5 s). So each pass carries the epoch it was granted in, each opening starts a new epoch,
and a report from an older epoch is ignored entirely: the breaker learns once per open
period, and the cooldown grows at most one step per period (a failed probe is one step).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import BreakerConfig, BreakerOutcome, BreakerPass, BreakerState

__all__ = ["BreakerRecord", "breaker_pass", "breaker_report", "breaker_state", "cooldown_for"]

_MAX_DOUBLINGS = 60
"Past this the cooldown is capped anyway; keeps 2**n finite however long a route is down."


@dataclass
class BreakerRecord:
    """One key's breaker (the Redis store keeps the same fields in a hash)."""

    failures: int = 0
    steps: int = 0
    epoch: int = 0
    opened: bool = False
    open_until: float = 0.0
    probe_until: float = 0.0
    "A half-open probe is out until then (0: none)."
    reason: str | None = None


def cooldown_for(config: BreakerConfig, steps: int) -> float:
    """Seconds open after the ``steps``-th consecutive opening.

    >>> [cooldown_for(BreakerConfig(cooldown=5, cooldown_max=300), n) for n in (1, 2, 3, 8)]
    [5.0, 10.0, 20.0, 300.0]
    """
    doublings = min(max(steps - 1, 0), _MAX_DOUBLINGS)
    return float(min(config.cooldown * 2.0**doublings, config.cooldown_max))


def breaker_state(record: BreakerRecord, now: float) -> BreakerState:
    if not record.opened:
        return BreakerState("closed", record.failures, record.steps, 0.0, None, record.epoch)
    if now < record.open_until:
        return BreakerState(
            "open",
            record.failures,
            record.steps,
            record.open_until - now,
            record.reason,
            record.epoch,
        )
    return BreakerState(
        "half-open", record.failures, record.steps, 0.0, record.reason, record.epoch
    )


def breaker_pass(record: BreakerRecord, now: float, config: BreakerConfig) -> BreakerPass:
    """Closed: everyone passes. Open: nobody. Half-open: one probe at a time; a probe not
    reported within ``probe_ttl`` is given up (its process may have died)."""
    allowed = probe = False
    if not record.opened:
        allowed = True
    elif now >= record.open_until and now >= record.probe_until:
        record.probe_until = now + config.probe_ttl
        allowed = probe = True
    return BreakerPass(allowed, probe, record.epoch, breaker_state(record, now))


def breaker_report(
    record: BreakerRecord,
    now: float,
    config: BreakerConfig,
    outcome: BreakerOutcome,
    *,
    epoch: int,
    reason: str = "",
    probe: bool = False,
    disable_s: float | None = None,
) -> None:
    """Apply what a call reports (see `BreakerOutcome`)."""
    if outcome == "disable":
        # A verdict on the account (401, 402), not on timing: applies whatever the epoch,
        # and never shortens an opening already longer.
        seconds = config.cooldown_max if disable_s is None else max(disable_s, 0.0)
        until = now + seconds
        _open(record, reason, max(until, record.open_until) if record.opened else until)
        return
    if epoch != record.epoch:
        return  # let through before the breaker last opened: already accounted for
    if outcome in ("neutral", "release"):
        if probe:
            record.probe_until = 0.0
    elif outcome == "success":
        record.failures = record.steps = 0
        record.opened = False
        record.open_until = record.probe_until = 0.0
        record.reason = None
    elif outcome == "open" or (outcome == "failure" and (probe or record.opened)):
        _step(record, now, config, reason)
    elif outcome == "failure":
        record.failures += 1
        if record.failures >= config.threshold:
            _step(record, now, config, reason)


def _step(record: BreakerRecord, now: float, config: BreakerConfig, reason: str) -> None:
    record.steps += 1
    _open(record, reason, now + cooldown_for(config, record.steps))


def _open(record: BreakerRecord, reason: str, until: float) -> None:
    record.opened = True
    record.open_until = until
    record.epoch += 1
    record.failures = 0
    record.probe_until = 0.0
    record.reason = reason or None
