"""The gateway's ``config.yaml``: pydantic models, environment substitution and loading.

The format is a superset of the LLM Router Service's: a file with only ``refresh_interval`` and
``backends`` (``name``, ``url``, optional ``auth`` of type ``bearer``/``basic``/``header``) works
unchanged. The ``backends`` entries are :mod:`router.backends.config`'s schema, the one a provider
node's ``provider.toml`` uses too: a ``type`` (``openai``, the default, ``ollama``, ``embedded``,
``mock`` or ``swarm``), static ``models``, and the router's per-backend settings (priority,
prices, timeout, rate limit, circuit breaker, retry). The file may add ``routes``, ``aliases``,
``default_backend``, ``fallbacks``, ``strategy``, ``resilience``, ``swarm``, ``server`` and the
gateway's API ``keys``.

Secrets stay out of the file: any string may contain ``${VAR}`` (or ``${VAR:-default}``; ``$${``
is a literal ``${``), and secret fields have a ``*_env`` twin naming the variable to read
(``token_env``, ``password_env``, ``value_env``, ``api_key_env``, ``key_env``, ``secret_key_env``,
``nwc_uri_env``).

:func:`load_config` raises :class:`~router.gateway.errors.ConfigError` naming the bad field, e.g.
``backends[1] (local).auth.token: Field required``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from client.storage.config import StateSettings

from ..backends.config import (
    UNION_TAGS,
    BackendConfig,
    OllamaBackendConfig,
    OpenAIBackendConfig,
    SwarmBackendConfig,
    SwarmSettings,
    with_default_names,
)
from ..circuit_breaker import BreakerConfig
from ..config_env import resolve_secret
from ..rate_limit import RateLimitConfig
from ..retry import RetryPolicy
from ..strategy import RoutingStrategy, strategy_from_name
from .errors import ConfigError

#: The prefix under which swarm models are listed and requested (``swarm/<model>``).
SWARM_PREFIX = "swarm/"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- routing, resilience, server, keys -----------------------------------------------------------


class StrategyConfig(_Model):
    """``strategy: cost`` or ``strategy: {name: hybrid, cost_weight: 0.5, ...}``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = "priority"

    def build(self) -> RoutingStrategy:
        return strategy_from_name(self.name, **(self.model_extra or {}))

    @model_validator(mode="after")
    def _valid(self) -> StrategyConfig:
        try:
            self.build()
        except (TypeError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return self


class ResilienceConfig(_Model):
    """Defaults for every backend (a backend's own settings win) and the gateway's timeouts."""

    timeout_s: float | None = Field(60.0, gt=0, description="per upstream attempt")
    request_timeout_s: float = Field(300.0, gt=0, description="whole request at the gateway")
    queue_timeout_s: float = Field(0.0, ge=0, description="wait for capacity when rate limited")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    circuit_breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1 << 20, ge=1024, description="larger requests get 413")
    shutdown_timeout_s: float = Field(30.0, ge=0, description="time in-flight requests get")
    keepalive_timeout_s: float = Field(
        75.0,
        gt=0,
        description="idle keep-alive connections close after this; a request must "
        "arrive whole within it",
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="larger request lines plus headers get 431"
    )
    default_max_tokens: int = Field(1024, ge=1, description="when a request gives none")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the gateway (CORS); '*' for any",
    )
    max_connections: int = Field(
        1024,
        ge=1,
        description="open connections at most; at the cap the oldest idle or slow one is cut "
        "for a new one (also lowered to fit the process's descriptor limit)",
    )
    max_tokens: int = Field(
        32768,
        ge=1,
        description="the most max_tokens a request may ask for (above it: 400); budgets "
        "reserve a request's max_tokens at its backend's price before it is sent",
    )

    @model_validator(mode="after")
    def _token_limits(self) -> ServerConfig:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError(
                f"default_max_tokens {self.default_max_tokens} is above max_tokens "
                f"{self.max_tokens}"
            )
        return self


class StateConfig(StateSettings):
    """Where durable state (key and swarm spend, reservations, payments of unknown outcome,
    admin-made keys) lives: ``sqlite:///PATH`` or a plain path (one process; the default is
    ``$NOSTR_SWARM_HOME/gateway.sqlite``) or ``postgresql://...`` (shared by every gateway that
    names it). ``redis``: where the keys' rate limits, the breakers and the response cache are
    kept, so they are shared by every instance that names it; without it they are per process.
    The schema is :class:`client.storage.config.StateSettings`, shared with provider.toml."""

    def target(self) -> str:
        """The SQLite file's path, or the PostgreSQL URL."""
        home = os.environ.get("NOSTR_SWARM_HOME") or str(Path.home() / ".nostr-swarm")
        return self.resolve(Path(home).expanduser() / "gateway.sqlite")


_PERIOD = re.compile(r"^([1-9][0-9]*)([smhd])$")
_PERIOD_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def period_seconds(value: str) -> int:
    """``30d``, ``12h``, ``15m``, ``90s`` as seconds; raises ValueError otherwise."""
    m = _PERIOD.match(value.strip())
    if m is None:
        raise ValueError(f"a period is a number and one of s, m, h, d (e.g. 30d), not {value!r}")
    return int(m.group(1)) * _PERIOD_S[m.group(2)]


class ApiKeyConfig(_Model):
    """One gateway API key (``Authorization: Bearer <key>``), its budgets and limits."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    key: str | None = Field(None, repr=False)
    key_env: str | None = None
    budget_sats: int | None = Field(None, ge=0)
    budget_usd: float | None = Field(None, ge=0)
    budget_period: str | None = Field(
        None, description="budgets start again every period (30d, 24h, ...); unset: never"
    )
    models: list[str] | None = Field(
        None, description="models the key may use (fnmatch patterns); unset: every model"
    )
    rpm: int | None = Field(None, ge=1, description="requests per minute")
    tpm: int | None = Field(None, ge=1, description="tokens per minute (prompt + completion)")
    max_parallel: int | None = Field(None, ge=1, description="requests in flight at once")

    @field_validator("budget_period")
    @classmethod
    def _period(cls, v: str | None) -> str | None:
        if v is not None:
            period_seconds(v)
        return v

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> ApiKeyConfig:
        key = resolve_secret(self.key, self.key_env, "key", info)
        if not key:
            raise ValueError("key must not be empty")
        object.__setattr__(self, "key", key)
        return self


class CacheConfig(_Model):
    """Identical deterministic requests (``temperature: 0`` or a ``seed``) answered once."""

    ttl_s: float = Field(300.0, gt=0, description="how long an answer is kept")
    max_entries: int = Field(10_000, ge=1, description="answers kept at most")


class AdminConfig(_Model):
    """The admin key: ``Authorization: Bearer <admin key>`` on ``/admin/*``."""

    key: str | None = Field(None, repr=False)
    key_env: str | None = None

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> AdminConfig:
        key = resolve_secret(self.key, self.key_env, "key", info)
        if not key or len(key) < 16:
            raise ValueError("the admin key must be at least 16 characters")
        object.__setattr__(self, "key", key)
        return self


class GatewayConfig(_Model):
    """The whole file. ``backends`` entries are :mod:`router.backends.config`'s schema, the one
    ``provider.toml`` uses too."""

    refresh_interval: float = Field(
        300.0, ge=0, description="seconds between model discovery rounds; 0 turns it off"
    )
    backends: list[BackendConfig] = Field(default_factory=list)
    routes: dict[str, str | list[str]] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    default_backend: str | None = None
    fallbacks: list[str] | dict[str, list[str]] = Field(
        default_factory=list,
        description="a list: backends tried last for every model; a mapping: model -> models "
        "tried in order when every backend of the model failed",
    )
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)
    swarm: SwarmSettings | None = Field(
        None, description="shorthand for a backend named 'swarm' of type swarm"
    )
    server: ServerConfig = Field(default_factory=ServerConfig)
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    usd_per_sat: float | None = Field(None, gt=0, description="prices sats in USD for budgets")
    state: StateConfig = Field(default_factory=StateConfig)
    cache: CacheConfig | None = Field(None, description="a response cache; unset: none")
    admin: AdminConfig | None = Field(
        None, description="enables /admin/* (make, list, rotate and revoke keys; spend)"
    )

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("backends")
    @classmethod
    def _names(cls, v: list[Any]) -> list[Any]:
        return with_default_names(v)

    def all_backends(self) -> list[Any]:
        """The backends, with the ``swarm:`` shorthand added as a backend named ``swarm``."""
        out: list[Any] = list(self.backends)
        if self.swarm is not None:
            # secrets are already resolved: leave out the *_env names
            fields = self.swarm.model_dump(exclude={"secret_key_env", "nwc_uri_env"})
            out.append(SwarmBackendConfig(type="swarm", name="swarm", **fields))
        return out

    def backend_fallbacks(self) -> list[str]:
        return list(self.fallbacks) if isinstance(self.fallbacks, list) else []

    def model_fallbacks(self) -> dict[str, list[str]]:
        return dict(self.fallbacks) if isinstance(self.fallbacks, dict) else {}

    def route_targets(self) -> dict[str, list[str]]:
        return {m: [t] if isinstance(t, str) else list(t) for m, t in self.routes.items()}


def _check_references(cfg: GatewayConfig) -> None:
    """Cross-field checks; raise ConfigError naming the field."""
    backends = cfg.all_backends()
    if not backends:
        raise ConfigError("backends", "at least one backend is required (or a swarm: section)")
    names: set[str] = set()
    for i, b in enumerate(backends):
        if b.name in names:
            field = f"backends[{i}].name" if i < len(cfg.backends) else "swarm"
            raise ConfigError(field, f"two backends are named {b.name!r}")
        names.add(b.name)
    known = ", ".join(sorted(names))
    for model, targets in cfg.route_targets().items():
        if not targets:
            raise ConfigError(f"routes.{model}", "names no backend")
        for t in targets:
            if t not in names:
                raise ConfigError(f"routes.{model}", f"unknown backend {t!r} (backends: {known})")
    if cfg.default_backend is not None and cfg.default_backend not in names:
        raise ConfigError(
            "default_backend", f"unknown backend {cfg.default_backend!r} (backends: {known})"
        )
    for i, f in enumerate(cfg.backend_fallbacks()):
        if f not in names:
            raise ConfigError(f"fallbacks[{i}]", f"unknown backend {f!r} (backends: {known})")
    for model, chain in cfg.model_fallbacks().items():
        if not chain or not all(isinstance(m, str) and m for m in chain):
            raise ConfigError(f"fallbacks.{model}", "must list at least one model")
        if model in chain:
            raise ConfigError(f"fallbacks.{model}", "a model cannot fall back to itself")
    for alias, target in cfg.aliases.items():
        if not alias or not target:
            raise ConfigError(f"aliases.{alias}", "alias and model must be non-empty")
        if target in cfg.aliases:
            raise ConfigError(f"aliases.{alias}", f"points at another alias {target!r}")
    for i, b in enumerate(backends):
        judge = b.judge if isinstance(b, SwarmBackendConfig) else None
        if judge is None:
            continue
        field = f"backends[{i}] ({b.name}).judge" if i < len(cfg.backends) else "swarm.judge"
        named = next((t for t in backends if t.name == judge.backend), None)
        if named is None:
            raise ConfigError(
                f"{field}.backend", f"unknown backend {judge.backend!r} (backends: {known})"
            )
        if isinstance(named, SwarmBackendConfig):
            # Judging swarm answers by the swarm would verify a job with more unverified jobs.
            raise ConfigError(f"{field}.backend", f"{judge.backend!r} is a swarm: name a model")
    for i, b in enumerate(cfg.backends):
        if isinstance(b, OpenAIBackendConfig | OllamaBackendConfig) and _is_self(b.url, cfg.server):
            raise ConfigError(
                f"backends[{i}] ({b.name}).url",
                f"{b.url} is this gateway's own address (server.port {cfg.server.port}): "
                "give the upstream's url",
            )
    seen: set[str] = set()
    for i, k in enumerate(cfg.keys):
        if k.name in seen:
            raise ConfigError(f"keys[{i}].name", f"two keys are named {k.name!r}")
        seen.add(k.name)


_LOOPBACK = frozenset(("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"))


def _is_self(url: str, server: ServerConfig) -> bool:
    """Whether ``url`` is where this gateway listens (a request to it would come back here)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    hosts = _LOOPBACK if server.host in _LOOPBACK else _LOOPBACK | {server.host.lower()}
    return server.port != 0 and port == server.port and host in hosts


# --- environment substitution --------------------------------------------------------------------

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree.

    Raises ConfigError naming the field when a variable without a default is not set.
    """
    if isinstance(value, str):
        if "$" not in value:
            return value

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(path or "(top)", f"environment variable {name} is not set")

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, env, _join(path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _field_path(loc: tuple[int | str, ...], raw: Any) -> str:
    """A pydantic error location as ``backends[1] (name).auth.token``; union tags dropped."""
    out = ""
    node: Any = raw
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
                if prev == "backends" and isinstance(node, dict) and "name" in node:
                    out += f" ({node['name']})"
            else:
                node = None
        else:
            if part in UNION_TAGS and not (isinstance(node, dict) and part in node):
                continue  # a tagged union's branch name, not a field
            out = _join(out, part)
            node = node.get(part) if isinstance(node, dict) else None
        prev = part
    return out


def parse_config(
    data: Any, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> GatewayConfig:
    """Validate an already-parsed YAML/JSON tree (after ``${VAR}`` substitution)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", "the file must hold a mapping (key: value lines)", source=source)
    try:
        env = os.environ if env is None else env
        data = substitute_env(data, env)
        cfg = GatewayConfig.model_validate(data, context={"env": env})
        _check_references(cfg)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.message, source=source) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_path(tuple(err["loc"]), data)
        if err["type"] in ("backend_type", "union_tag_invalid"):
            field += ".type"
        msg = str(err["msg"]).removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise ConfigError(field or "(top)", msg, source=source) from None
    return cfg


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate ``config.yaml``; raises ConfigError naming the bad field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"not valid YAML{where}: {problem}", source=str(p)) from None
    return parse_config(data, env=env, source=str(p))
