"""provider.toml: the node's configuration (pydantic models), loaded from TOML with environment
variables on top, and the commented template ``swarm provider init`` writes.

Environment overrides (applied after the file, so a container or a service unit can set them):

- ``[node]`` fields: ``SWARM_PROVIDER_<FIELD>``, e.g. ``SWARM_PROVIDER_SECRET_KEY``,
  ``SWARM_PROVIDER_RELAYS`` (comma-separated), ``SWARM_PROVIDER_STORE``.
- ``[pricing]``, ``[payment]``, ``[limits]``, ``[state]`` fields:
  ``SWARM_PROVIDER_<TABLE>_<FIELD>``, e.g. ``SWARM_PROVIDER_PAYMENT_POLICY=after``,
  ``SWARM_PROVIDER_PAYMENT_NWC=nostr+walletconnect://…``,
  ``SWARM_PROVIDER_LIMITS_MAX_CONCURRENT=4``, ``SWARM_PROVIDER_PRICING_MIN_MSATS=1000``,
  ``SWARM_PROVIDER_STATE_URL=postgresql://…``.
- ``SWARM_PROVIDER_BACKENDS``: the whole ``[[backends]]`` list as JSON.

Lists take commas or a JSON array; booleans take true/false/1/0/yes/no.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypedDict, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from client.nostr.errors import InvalidKey
from client.nostr.keys import Keys
from client.storage.config import StateSettings
from router.backends.config import (
    UNION_TAGS,
    EmbeddedBackendConfig,
    ModelBackend,
    ModelBackendConfig,
    with_default_names,
)

from .errors import ConfigError
from .limits import Limits
from .pricing import Pricing
from .store import LEASE_S

ENV_PREFIX = "SWARM_PROVIDER_"
BackendType = Literal["ollama", "openai", "mock", "embedded"]


class NodeConfig(BaseModel):
    """``[node]``: identity, relays and announcement."""

    model_config = ConfigDict(extra="forbid")

    secret_key: str = Field(description="nsec1… or 64 hex; keep this file private")
    relays: list[str] = Field(min_length=1)
    name: str = ""
    about: str = ""
    picture: str = ""
    lud16: str = ""
    store: str = "provider.sqlite"
    models: list[str] | None = None
    default_model: str | None = None
    #: NIP-90 kinds served: 5050 text generation; 5000 extraction, 5001 summarization and 5002
    #: translation through a prompt template (provider/kinds.py); announced as `k` tags.
    kinds: list[int] = Field(default_factory=lambda: [5050])
    #: The announcement's ``d`` tag (default: one derived from the key, stable across restarts).
    d_tag: str = ""
    announce: bool = True
    heartbeat_s: int = Field(120, ge=1)
    clock_skew_s: int = Field(10, ge=0)
    retention_days: float = Field(30.0, gt=0)
    #: Commit-reveal: seconds a committed result waits for the customer's reveal call.
    reveal_timeout_s: float = Field(300.0, gt=0)
    #: Seconds to wait for the relays at start, and for a relay's OK to a publish.
    connect_timeout: float = Field(5.0, gt=0)
    publish_timeout: float = Field(5.0, gt=0)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: list[int]) -> list[int]:
        from .kinds import check_kinds

        return list(check_kinds(value))

    @field_validator("secret_key")
    @classmethod
    def _key(cls, value: str) -> str:
        try:
            Keys.from_secret(value.strip())
        except InvalidKey as exc:
            raise ValueError(f"secret_key is not a valid nsec or hex key: {exc}") from None
        return value.strip()

    @field_validator("relays")
    @classmethod
    def _relays(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"relay {url!r} must start with ws:// or wss://")
        return value

    @property
    def keys(self) -> Keys:
        return Keys.from_secret(self.secret_key)


class StateConfig(StateSettings):
    """``[state]``, the same table as the gateway's ``state:`` block
    (:class:`client.storage.config.StateSettings`). ``url = "postgresql://..."`` puts the job
    store in PostgreSQL, shared by a fleet of nodes under one key; ``sqlite:///PATH`` or a path
    names the node's own file (as ``node.store`` does; the default is ``node.store``).
    ``lease_s``: how long a fleet node's claim on a job holds without renewal (renewed every
    ``lease_s / 3``); a node silent for longer has its open jobs taken over by another node.
    ``redis`` is refused: a node keeps nothing there (its limits are its own)."""

    lease_s: float = Field(
        LEASE_S,
        ge=1.0,
        le=3600.0,
        description="seconds a fleet node's claim holds without renewal (renewed every third)",
    )

    @model_validator(mode="after")
    def _for_a_node(self) -> StateConfig:
        if self.redis is not None:
            raise ValueError(
                "state.redis: a provider node keeps nothing in Redis (its rate limits and "
                "queue are its own); leave it out"
            )
        # A lone node on SQLite has no one to hand its jobs to: a lease there would do nothing.
        if "lease_s" in self.model_fields_set and not self.shared:
            raise ValueError(
                "lease_s applies to a fleet's shared store: set state.url to a postgresql:// URL"
            )
        return self


class PaymentConfig(BaseModel):
    """``[payment]``: when customers pay, and the wallet that issues invoices."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["free", "after", "before"] = "free"
    nwc: str | None = Field(None, description="nostr+walletconnect:// URI of the node's wallet")
    ledger: str | None = Field(None, description="local ledger file (tests and demos)")
    ledger_account: int | None = Field(None, ge=1)
    invoice_expiry_s: int = Field(600, ge=10)
    poll_s: float = Field(1.0, gt=0)
    poll_max_s: float = Field(15.0, gt=0)
    settle_check_s: float = Field(60.0, gt=0)


class ProviderConfig(BaseModel):
    """A node's whole configuration. ``backends`` describes the backends to build; a node given
    a backend object (``ProviderNode(config, backend)``) needs none, a provider.toml at least
    one (:func:`parse_config`)."""

    model_config = ConfigDict(extra="forbid")

    node: NodeConfig
    pricing: Pricing = Field(default_factory=Pricing)
    payment: PaymentConfig = Field(default_factory=PaymentConfig)
    limits: Limits = Field(default_factory=Limits)
    #: The same entries as config.yaml's ``backends`` (router/backends/config.py), less the swarm.
    backends: list[ModelBackendConfig] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)

    @field_validator("backends")
    @classmethod
    def _names(cls, value: list[ModelBackend]) -> list[ModelBackend]:
        return with_default_names(value)

    @model_validator(mode="after")
    def _one_job_store(self) -> ProviderConfig:
        if self.state.url is not None and not self.state.shared:
            if "store" in self.node.model_fields_set:
                raise ValueError(
                    "the job store is named twice (node.store and state.url): keep one"
                )
        return self

    @property
    def store_target(self) -> str:
        """Where the job store lives: ``state.url`` (PostgreSQL, or a SQLite file), else the
        SQLite file ``node.store``."""
        return self.state.resolve(self.node.store)


class NodeOptions(TypedDict, total=False):
    """The keyword options of ``ProviderNode(keys, relays, backend, **options)``, each one field
    of :class:`ProviderConfig` (:data:`NODE_OPTIONS` says which)."""

    pricing: Pricing
    payment: Literal["free", "after", "before"]
    limits: Limits
    models: Sequence[str] | None
    kinds: Sequence[int]
    default_model: str | None
    name: str
    about: str
    picture: str
    lud16: str
    d_tag: str
    announce: bool
    heartbeat_s: int
    clock_skew_s: int
    retention_days: float
    reveal_timeout_s: float
    connect_timeout: float
    publish_timeout: float
    invoice_expiry_s: int
    payment_poll_s: float
    payment_poll_max_s: float
    settle_check_s: float
    lease_s: float


#: option -> (table, field) of provider.toml; ``pricing`` and ``limits`` are whole tables.
NODE_OPTIONS: dict[str, tuple[str, str | None]] = {
    "pricing": ("pricing", None),
    "limits": ("limits", None),
    "payment": ("payment", "policy"),
    "invoice_expiry_s": ("payment", "invoice_expiry_s"),
    "payment_poll_s": ("payment", "poll_s"),
    "payment_poll_max_s": ("payment", "poll_max_s"),
    "settle_check_s": ("payment", "settle_check_s"),
    "lease_s": ("state", "lease_s"),
    **{
        name: ("node", name)
        for name in (
            "models",
            "kinds",
            "default_model",
            "name",
            "about",
            "picture",
            "lud16",
            "d_tag",
            "announce",
            "heartbeat_s",
            "clock_skew_s",
            "retention_days",
            "reveal_timeout_s",
            "connect_timeout",
            "publish_timeout",
        )
    },
}


def node_config(
    keys: Keys, relays: Sequence[str], *, store: str | Path = ":memory:", **options: Any
) -> ProviderConfig:
    """The :class:`ProviderConfig` of ``ProviderNode(keys, relays, backend, **options)``: the
    key, the relays, ``store`` (a SQLite path, ``":memory:"``, or a ``postgresql://`` URL) and
    the :class:`NodeOptions`. An unknown option is a :class:`TypeError`; a bad value a
    :class:`ConfigError` naming it."""
    unknown = sorted(set(options) - set(NODE_OPTIONS))
    if unknown:
        raise TypeError(f"unknown ProviderNode option(s): {', '.join(unknown)}")
    data: dict[str, Any] = {
        "node": {"secret_key": keys.secret_hex, "relays": list(relays)},
        "payment": {},
    }
    target = str(store)
    if target.startswith(("postgresql://", "postgres://")):
        data["state"] = {"url": target}
    else:
        data["node"]["store"] = target
    for option, value in options.items():
        table, name = NODE_OPTIONS[option]
        if name is None:
            data[table] = value
        else:
            data.setdefault(table, {})[name] = list(value) if option in _LISTS and value else value
    try:
        return ProviderConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid provider options:\n{_errors(exc)}") from None


_LISTS = ("models", "kinds")


# --- loading --------------------------------------------------------------------------------


def _shape(annotation: Any) -> str:
    """ "list", "dict", "bool" or "scalar" for a field's type (Optional unwrapped)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _shape(inner[0]) if len(inner) == 1 else "scalar"
    if origin is list or annotation is list:
        return "list"
    if origin is dict or annotation is dict:
        return "dict"
    return "bool" if annotation is bool else "scalar"


def _coerce(raw: str, annotation: Any) -> Any:
    """An environment string as the value a field wants (pydantic does the final check)."""
    text = raw.strip()
    shape = _shape(annotation)
    if shape == "list":
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    if shape == "dict":
        return json.loads(text)
    if shape == "bool":
        return text.lower() in ("1", "true", "yes", "on")
    return text


def apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``data`` (the parsed TOML) with ``SWARM_PROVIDER_*`` variables applied."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    sections: dict[str, type[BaseModel]] = {
        "pricing": Pricing,
        "payment": PaymentConfig,
        "limits": Limits,
        "state": StateConfig,
    }
    try:
        for name, info in NodeConfig.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None:
                out.setdefault("node", {})[name] = _coerce(raw, info.annotation)
        for section, model in sections.items():
            for name, info in model.model_fields.items():
                raw = env.get(f"{ENV_PREFIX}{section.upper()}_{name.upper()}")
                if raw is not None:
                    out.setdefault(section, {})[name] = _coerce(raw, info.annotation)
        raw = env.get(ENV_PREFIX + "BACKENDS")
        if raw is not None:
            out["backends"] = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"bad {ENV_PREFIX}* environment value: {exc}") from None
    return out


def _errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # A backend and its auth are tagged unions: a branch's name in the location (after the
        # list index, or after "auth") is not a field.
        parts = err["loc"]
        loc = [
            str(p)
            for i, p in enumerate(parts)
            if not (
                p in UNION_TAGS and i and (isinstance(parts[i - 1], int) or parts[i - 1] == "auth")
            )
        ]
        where = ".".join(loc) or "(top)"
        if err["type"] == "backend_type":
            where += ".type"
        lines.append(f"  {where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_config(
    data: Mapping[str, Any], *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> ProviderConfig:
    """Validate a config mapping (environment applied); relative paths are made relative to
    ``base`` (the config file's folder)."""
    environ = os.environ if env is None else env
    merged = apply_env(dict(data), environ)
    try:
        # The backends' *_env fields (api_key_env, token_env, ...) read the same environment.
        cfg = ProviderConfig.model_validate(merged, context={"env": environ})
    except ValidationError as exc:
        raise ConfigError(f"invalid provider config:\n{_errors(exc)}") from None
    if base is not None:
        cfg.node.store = _relative(cfg.node.store, base)
        if cfg.state.url is not None and not cfg.state.shared:
            local = cfg.state.resolve(cfg.node.store)
            cfg.state = cfg.state.model_copy(update={"url": _relative(local, base)})
        if cfg.payment.ledger:
            cfg.payment.ledger = _relative(cfg.payment.ledger, base)
        cfg.backends = [
            b.model_copy(update={"path": _relative(b.path, base)})
            if isinstance(b, EmbeddedBackendConfig) and b.path
            else b
            for b in cfg.backends
        ]
    if not cfg.backends:
        raise ConfigError("invalid provider config:\n  backends: at least one [[backends]] entry")
    if cfg.payment.policy != "free" and not (cfg.payment.nwc or cfg.payment.ledger):
        raise ConfigError(
            f"payment policy {cfg.payment.policy!r} needs a wallet: set payment.nwc "
            "(or payment.ledger for a local test ledger)"
        )
    return cfg


def _relative(path: str, base: Path) -> str:
    if path == ":memory:" or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> ProviderConfig:
    """Read provider.toml, apply the environment, validate."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    return parse_config(data, env=env, base=p.parent.resolve())


# --- the template -------------------------------------------------------------------------


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def render_template(
    keys: Keys,
    *,
    relays: list[str],
    backend: BackendType = "ollama",
    url: str | None = None,
    models: list[str] | None = None,
    name: str = "",
) -> str:
    """A commented provider.toml with a new key."""
    default_urls = {"ollama": "http://127.0.0.1:11434", "openai": "http://127.0.0.1:8080/v1"}
    backend_url = url or default_urls.get(backend, "")
    model_list = models or []
    lim = Limits()
    pay = PaymentConfig()
    lines = [
        "# nostr-swarm provider node. Run it with: swarm provider run --config provider.toml",
        "# Every value can be overridden by an environment variable (see docs/provider-guide.md),",
        "# e.g. SWARM_PROVIDER_RELAYS=wss://a,wss://b or SWARM_PROVIDER_PAYMENT_POLICY=after.",
        "",
        "[node]",
        f"# This node's Nostr identity ({keys.npub}).",
        "# Anyone with this secret can act as your node: keep the file private (chmod 600).",
        f'secret_key = "{keys.nsec}"',
        "# Relays to take jobs from and publish results to.",
        f"relays = {_toml_list(relays)}",
        "# Shown to customers in the NIP-89 announcement.",
        f"name = {json.dumps(name or 'my nostr-swarm provider')}",
        'about = ""',
        '# lud16 = "you@wallet.example"   # a Lightning address, for zaps',
        "# Job history and dedupe (relative to this file).",
        'store = "provider.sqlite"',
        "# Serve only these models (default: every model the backends list).",
        f"# models = {_toml_list(model_list or ['llama3.2:1b'])}",
        "# The model for requests that name none (default: the first one).",
        '# default_model = "llama3.2:1b"',
        "# Seconds between heartbeats (the announcement re-published with a fresh timestamp).",
        "heartbeat_s = 120",
        "",
        "[pricing]",
        "# Millisats (1 sat = 1000 msats) per 1000 tokens, and the least one job costs.",
        '# Ignored while payment.policy is "free".',
        "msats_per_1k_prompt = 1000",
        "msats_per_1k_completion = 3000",
        "min_msats = 1000",
        "# Per-model prices override the ones above:",
        '# [pricing.models."llama3.1:70b"]',
        "# msats_per_1k_prompt = 10000",
        "# msats_per_1k_completion = 30000",
        "# min_msats = 5000",
        "",
        "[payment]",
        '# "free": no invoices. "after": the result carries an invoice. "before": the customer',
        "# pays a payment-required invoice first; work starts once the wallet sees it paid.",
        f'policy = "{pay.policy}"',
        "# The wallet that issues invoices (NIP-47 Nostr Wallet Connect URI; needs make_invoice",
        "# and lookup_invoice permissions).",
        '# nwc = "nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<hex>"',
        f"invoice_expiry_s = {pay.invoice_expiry_s}",
        "",
        "[limits]",
        '# Jobs running on the backend at once, and waiting beyond those (then: error "busy").',
        f"max_concurrent = {lim.max_concurrent}",
        f"queue_size = {lim.queue_size}",
        "# Jobs one customer may send per minute (0: no limit), and at once.",
        f"rate_per_minute = {lim.rate_per_minute:g}",
        f"rate_burst = {lim.rate_burst}",
        f"max_prompt_chars = {lim.max_prompt_chars}",
        "# The largest max_tokens accepted, and the one used when a request gives none.",
        f"max_tokens = {lim.max_tokens}",
        f"default_max_tokens = {lim.default_max_tokens}",
        "# Seconds one backend call may take; seconds running jobs get to finish on shutdown.",
        f"job_timeout = {lim.job_timeout:g}",
        f"shutdown_grace = {lim.shutdown_grace:g}",
        "",
        "# A fleet: several machines serving under this key share one PostgreSQL job store",
        "# (each job answered and billed once; a dead node's jobs finished by the others).",
        "# [state]",
        '# url = "postgresql://swarm@db.internal:5432/provider"',
        f"# lease_s = {LEASE_S:g}   # a node silent this long loses its open jobs to the others",
        "",
        "# Backends: where completions come from. With several, the node fails over between them.",
        '# type = "ollama" (url http://127.0.0.1:11434), "openai" (any OpenAI-compatible server:',
        '# llama.cpp, vLLM, LM Studio; url …/v1), "embedded" (a small model in process) or "mock".',
        "[[backends]]",
        f'type = "{backend}"',
    ]
    if backend_url:
        lines.append(f'url = "{backend_url}"')
    lines.append(f"models = {_toml_list(model_list)}  # empty: ask the server which models it has")
    if backend == "openai":
        lines.append('# api_key_env = "OPENAI_API_KEY"  # read the key from this variable')
    if backend == "mock":
        lines.append('response = "Hello from a mock provider"')
    return "\n".join(lines) + "\n"
