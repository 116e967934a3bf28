"""Settings: explicit arguments > environment > TOML config file > defaults.

`load_settings()` builds a frozen `Settings`; `explain_settings()` says where each value
came from (for `dsollama config`). The hosted API key is a `SecretStr`: it never shows in
a repr, a log line or an exception.

Environment variables: ``OLLAMA_HOST`` (parsed as Ollama parses it), ``OLLAMA_NUM_PARALLEL``
(the daemon's slots per model, our default for ``local_slots``), ``DEEPSEEK_API_KEY``,
``DEEPSEEK_BASE_URL``, and ``DSOLLAMA_<SETTING>`` for every setting below (upper case).
``DSOLLAMA_CONFIG`` names the config file; by default it is ``config.toml`` in the
platform's user config directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from ._exceptions import ConfigError, InsecureEndpointError
from ._hosts import key_may_travel_to, normalise_base_url, parse_ollama_host
from ._speed import DEFAULT_MIN_SPEED

__all__ = [
    "ModelSettings",
    "Policy",
    "SettingSource",
    "Settings",
    "config_path",
    "explain_settings",
    "load_settings",
    "user_data_dir",
]

Policy = Literal["local-first", "hosted-first", "local-only"]

APP_NAME = "dsollama"


class ModelSettings(BaseModel):
    """Settings of one model name (a ``[models."NAME"]`` table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fallbacks: tuple[str, ...] = ()
    "Models to try, in order, when no route can answer with this one."


class Settings(BaseModel):
    """Every dsollama setting, with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Routes
    ollama_hosts: tuple[str, ...] = ("http://127.0.0.1:11434",)
    "Local Ollama daemons, in preference order; several hosts share load."
    hosted_base_url: str = "https://api.deepseek.com"
    "OpenAI-format endpoint for the hosted route (DeepSeek by default; vLLM etc. work too)."
    hosted_api_key: SecretStr | None = None
    "Key for the hosted route. Without it nothing is ever sent off the machine."
    hosted_model: str | None = None
    "Force one hosted model for every call (otherwise the catalogue maps each local model)."
    policy: Policy = "local-first"
    fallback: bool = True
    "Allow moving to the other route at all (local-first: to hosted; hosted-first: to local)."

    # Deadlines, seconds
    connect_timeout: float = Field(default=3.0, gt=0)
    first_token_timeout: float = Field(default=10.0, gt=0)
    "Budget for the first token on a route before the call moves on (or hedges)."
    gap_timeout: float = Field(default=30.0, gt=0)
    "Longest silence allowed between two chunks once an answer is flowing."
    total_timeout: float = Field(default=600.0, gt=0)
    "Whole-call deadline, all attempts included."

    # Retries, breakers, admission
    max_attempts: int = Field(default=2, ge=1, le=10)
    "Tries per route for retryable failures (1 = no retry)."
    backoff_base: float = Field(default=0.2, ge=0)
    backoff_cap: float = Field(default=4.0, ge=0)
    retry_after_cap: float = Field(default=30.0, ge=0)
    "Longest server-requested wait (Retry-After) dsollama will honour before moving on."
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    "Retries allowed as a share of the client's recent calls (plus the floor)."
    retry_budget_floor: int = Field(default=3, ge=0)
    retry_budget_shared: bool = False
    "Share one retry budget between every client of the process (by default each client has its own)."
    breaker_threshold: int = Field(default=3, ge=1)
    "Consecutive failures that open a route's breaker."
    breaker_cooldown: float = Field(default=5.0, ge=0)
    breaker_cooldown_max: float = Field(default=300.0, ge=0)
    local_slots: int = Field(default=1, ge=1)
    "Parallel slots per local model (the daemon's OLLAMA_NUM_PARALLEL)."
    hosted_concurrency: int | None = Field(default=None, ge=1)
    "Most requests to keep in flight on the hosted route (your account's concurrency limit); learned from 429 answers that state it."
    admission: Literal["budget", "latency"] = "budget"
    "budget: stay local while the predicted first token fits the budget (private, free); latency: go wherever the first token is predicted sooner."
    hedge: bool = False
    "Race local and hosted when local is late, keeping the first to produce a token."
    on_broken_stream: Literal["raise", "continue", "restart"] = "raise"
    "A stream that breaks after text reached the caller: raise (with the partial text), continue it on another route (prefix completion), or restart it there (announced in the stream)."
    continue_streams: bool = False
    "Older spelling of on_broken_stream = continue."

    # Models and provisioning
    modelfiles_dir: str | None = None
    "Folder of Modelfiles that `dsollama pull` provisions (default: ./Modelfiles if present)."
    catalogue_path: str | None = None
    "JSON or TOML file whose entries extend or override the built-in catalogue."
    hosted_model_map: dict[str, str] = Field(default_factory=dict)
    "Local model → hosted model overrides (e.g. {'deepseek-coder-v2:16b': 'deepseek-v4-pro'})."
    min_speed: float = Field(default=DEFAULT_MIN_SPEED, ge=0)
    "Estimated tokens/s a recommended model must reach (`dsollama models`/`pull`); 0: by memory alone."

    # Request log
    log: bool = True
    "Record every call in the local SQLite log (DSOLLAMA_LOG=off disables)."
    log_path: str | None = None
    log_content: bool | None = None
    "Keep messages and answers in the log. Unset: by who runs the call (off for a program using the library, on for `dsollama chat`/`generate`/`serve`)."

    # Routes as data, model chains, shared state
    routes: tuple[dict[str, Any], ...] = ()
    "Places that can answer, one [[routes]] table each (see `dsollama routes`); none: ollama_hosts plus the hosted_* settings."
    models: dict[str, ModelSettings] = Field(default_factory=dict)
    'Per-model settings, e.g. [models."deepseek-v4-pro"] fallbacks = ["deepseek-flash"].'
    state_url: str | None = None
    "Where routing state is shared: none or memory (this process only), or redis://host:6379/0 (every process using it)."
    state_namespace: str = "dsollama"
    "Prefix of every key in a shared store: deployments that must not share state use different ones."
    state_op_timeout: float = Field(default=0.08, gt=0)
    "Seconds one shared-store operation may take before the call goes on with this process's own view (raise it on a machine under heavy load)."

    # serve
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=11435, ge=0, le=65535)
    serve_token: SecretStr | None = None
    serve_admin_token: SecretStr | None = None
    "Bearer token `dsollama serve` requires for pull, create, copy, delete and push."

    @field_validator("ollama_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [h for h in value.split(",") if h.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(parse_ollama_host(str(h)) for h in value) or ("http://127.0.0.1:11434",)
        return value

    @field_validator("hosted_base_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        # Parsed strictly here, once, so that every later check and request sees the
        # same destination (``HTTP://host`` is plain HTTP too).
        return normalise_base_url(value)

    def api_key(self) -> str | None:
        """The hosted key in clear, for the one place that sends it."""
        return self.hosted_api_key.get_secret_value() if self.hosted_api_key else None

    def check_hosted_endpoint(self) -> None:
        """Refuse to send the key over plain HTTP anywhere but this machine."""
        url = self.hosted_base_url
        if not key_may_travel_to(url):
            raise InsecureEndpointError(url)


@dataclass(frozen=True)
class SettingSource:
    """One effective setting and where it came from."""

    name: str
    value: Any
    "The value, with secrets already redacted."
    source: str
    "'argument', 'environment (VAR)', 'config file (PATH)' or 'default'."


# Settings whose environment variable is not simply DSOLLAMA_<NAME>.
_EXTRA_ENV: dict[str, tuple[str, ...]] = {
    "ollama_hosts": ("DSOLLAMA_OLLAMA_HOSTS", "OLLAMA_HOST"),
    "hosted_api_key": ("DSOLLAMA_HOSTED_API_KEY", "DEEPSEEK_API_KEY"),
    "hosted_base_url": ("DSOLLAMA_HOSTED_BASE_URL", "DEEPSEEK_BASE_URL"),
    "local_slots": ("DSOLLAMA_LOCAL_SLOTS", "OLLAMA_NUM_PARALLEL"),
}
_SECRET_FIELDS = {"hosted_api_key", "serve_token", "serve_admin_token"}
# What an unset value means, where "(unset)" alone would leave the reader guessing.
_UNSET_MEANING = {
    "log_content": "unset: library off, CLI and serve on",
}
_FALSE = {"0", "false", "no", "off", ""}
_TRUE = {"1", "true", "yes", "on"}


def _env_names(name: str) -> tuple[str, ...]:
    return _EXTRA_ENV.get(name, (f"DSOLLAMA_{name.upper()}",))


def user_config_dir() -> Path:
    """The platform's per-user config folder for dsollama (click's rules, no extra dependency)."""
    import click

    return Path(click.get_app_dir(APP_NAME))


def user_data_dir() -> Path:
    """Where dsollama keeps data (the request log): XDG data dir on Linux, else the config dir."""
    platform: str = sys.platform  # a variable, so type checkers keep both branches
    if platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / APP_NAME
    return user_config_dir()


def config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("DSOLLAMA_CONFIG")
    return Path(explicit).expanduser() if explicit else user_config_dir() / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid TOML: {exc}",
            hint="fix the file, or point DSOLLAMA_CONFIG at another one",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return data


def _coerce_env(name: str, raw: str) -> Any:
    """Turn an environment string into what the field expects (pydantic does the rest)."""
    annotation = str(Settings.model_fields[name].annotation)
    lowered = raw.strip().lower()
    if "bool" in annotation:
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(
            f"environment variable for {name} has {raw!r}, which is not on/off",
            hint="use one of on, off, true, false, 1, 0",
        )
    if name in ("routes", "models"):
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigError(
                f"environment variable for {name} is not valid JSON",
                hint="use the config file's [[routes]] / [models] tables, or valid JSON",
            ) from None
    if name == "hosted_model_map":
        pairs = [p.split("=", 1) for p in raw.split(",") if "=" in p]
        return {k.strip(): v.strip() for k, v in pairs}
    return raw


def _collect(
    overrides: Mapping[str, Any], env: Mapping[str, str], file_data: Mapping[str, Any], path: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    unknown = sorted(set(file_data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown setting(s): {', '.join(unknown)}",
            hint="`dsollama config` lists the valid names",
        )
    for index, table in enumerate(file_data.get("routes") or ()):
        if isinstance(table, Mapping) and "api_key" in table:
            raise ConfigError(
                f"config file {path}: route #{index + 1} holds an API key",
                hint="keep keys out of files: put it in an environment variable and name it with key_env",
            )
    for name in Settings.model_fields:
        if name in overrides and overrides[name] is not None:
            values[name], sources[name] = overrides[name], "argument"
            continue
        for var in _env_names(name):
            if env.get(var, "").strip():
                values[name], sources[name] = _coerce_env(name, env[var]), f"environment ({var})"
                break
        else:
            if name in file_data:
                values[name], sources[name] = file_data[name], f"config file ({path})"
            else:
                sources[name] = "default"
    return values, sources


def _build(
    overrides: Mapping[str, Any], env: Mapping[str, str] | None
) -> tuple[Settings, dict[str, str]]:
    env = os.environ if env is None else env
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
    path = config_path(env)
    values, sources = _collect(overrides, env, _read_toml(path), path)
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(
            f"setting {name} ({sources.get(name, 'default')}): {first['msg']}",
            hint="`dsollama config` shows every setting and where it came from",
        ) from None
    return settings, sources


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Effective settings: ``overrides`` > environment > config file > defaults."""
    return _build(overrides, env)[0]


def explain_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> list[SettingSource]:
    """Each effective setting with its source; secrets are shown as '****' (or unset)."""
    settings, sources = _build(overrides, env)
    out = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in _SECRET_FIELDS:
            value = "**** (set)" if value is not None else None
        elif value is None:
            value = _UNSET_MEANING.get(name)
        out.append(SettingSource(name=name, value=value, source=sources[name]))
    return out
