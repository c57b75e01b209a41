"""The backend configuration schema: one ``backends`` entry, the same in ``config.yaml`` (the
gateway) and in ``provider.toml`` (a provider node's ``[[backends]]``), built by
:func:`router.backends.factory.build_backend`.

An entry has a ``type`` (default ``openai``):

- ``openai``: any OpenAI-compatible server (``url``, default ``http://127.0.0.1:8080/v1``);
- ``ollama``: Ollama's native API (``url``, default ``http://127.0.0.1:11434``);
- ``embedded``: a small GGUF model in process (``path``, default: the bundled SmolLM2);
- ``mock``: a fixed answer (``response``), for demos and tests;
- ``swarm``: the Nostr swarm (gateway only: a provider node refuses it).

Every entry may have a ``name`` (default: its type, then the type and its position for repeats,
see :func:`with_default_names`), ``models`` (names, or entries with their own prices and limits;
missing or empty: asked of the server) and the router's per-backend options
(:class:`~router.options.BackendOptions`: priority, prices, ``timeout_s``, rate limit, circuit
breaker, retry). HTTP backends take ``auth`` (:mod:`router.backends.auth`) or its shorthand
``api_key``/``api_key_env`` (bearer), and ``headers``. An unknown key is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..config_env import resolve_secret
from ..options import BackendOptions
from .auth import BackendAuth, BearerAuth

DEFAULT_OPENAI_URL = "http://127.0.0.1:8080/v1"
DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_http_url(url: str) -> str:
    """``url`` without a trailing slash; ValueError unless it is an http(s) URL with a host."""
    if not re.match(r"^https?://[^\s/]+", url):
        raise ValueError(f"must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


class ModelEntry(_Model):
    """One model of a backend, with its own prices and limit."""

    name: str = Field(min_length=1, max_length=256)
    input_per_1k_usd: float | None = Field(None, ge=0)
    output_per_1k_usd: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1, description="the most a request may ask for")


class BackendBase(BackendOptions):
    """Fields every entry has: its name, static models, and the router's options.

    ``models`` lists names, or entries ``{name, input_per_1k_usd, output_per_1k_usd,
    max_tokens}`` (mixed freely); the entries' settings land in ``model_settings``."""

    name: str | None = Field(None, min_length=1, description="default: see with_default_names")
    models: list[str] | None = Field(
        None, description="models it serves; missing or empty: discovered from the upstream"
    )
    model_settings: dict[str, ModelEntry] = Field(
        default_factory=dict, description="set from the entries of models"
    )

    @model_validator(mode="before")
    @classmethod
    def _model_entries(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            return data
        names: list[Any] = []
        settings: dict[str, Any] = {}
        for i, m in enumerate(data["models"]):
            if isinstance(m, dict):
                entry = ModelEntry.model_validate(m)
                if entry.name in settings:
                    raise ValueError(f"models[{i}]: {entry.name!r} is listed twice")
                settings[entry.name] = entry
                names.append(entry.name)
            else:
                names.append(m)
        return {**data, "models": names, "model_settings": settings}

    def options(self) -> BackendOptions:
        """The router's options for this backend (per-model prices and limits included)."""
        fields = {k: getattr(self, k) for k in BackendOptions.model_fields}
        prices = {
            n: (e.input_per_1k_usd, e.output_per_1k_usd)
            for n, e in self.model_settings.items()
            if e.input_per_1k_usd is not None or e.output_per_1k_usd is not None
        }
        limits = {n: e.max_tokens for n, e in self.model_settings.items() if e.max_tokens}
        fields["model_prices"] = {**self.model_prices, **prices}
        fields["model_max_tokens"] = {**self.model_max_tokens, **limits}
        return BackendOptions(**fields)

    def router_options_set(self) -> set[str]:
        """The router options this entry sets itself (``timeout_s`` aside: the backend uses it)."""
        return (self.model_fields_set & set(BackendOptions.model_fields)) - {"timeout_s"}


class _HttpBackendConfig(BackendBase):
    """A server reached over HTTP: ``url``, ``auth`` (or ``api_key``/``api_key_env``, bearer
    auth's shorthand) and extra ``headers``."""

    url: str
    auth: BackendAuth | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_http_url(v)

    @model_validator(mode="before")
    @classmethod
    def _api_key(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or not ("api_key" in data or "api_key_env" in data):
            return data
        data = dict(data)
        key, env = data.pop("api_key", None), data.pop("api_key_env", None)
        if data.get("auth") is not None:
            raise ValueError("give auth or api_key, not both (api_key is bearer auth)")
        data["auth"] = BearerAuth(token=SecretStr(resolve_secret(key, env, "api_key", info)))
        return data


class OpenAIBackendConfig(_HttpBackendConfig):
    """An OpenAI-compatible server (OpenAI, vLLM, llama.cpp, LM Studio, another gateway).
    Models it names no price for are priced from the bundled table of well-known models
    (``price_table: false`` turns that off)."""

    type: Literal["openai"] = "openai"
    url: str = DEFAULT_OPENAI_URL
    price_table: bool = True
    drop_params: list[str] = Field(
        default_factory=list, description="request parameters never sent to this upstream"
    )
    transport: Literal["http1", "aiohttp"] = Field(
        "http1", description="the HTTP client for this upstream: our own (http1) or aiohttp"
    )


class OllamaBackendConfig(_HttpBackendConfig):
    """An Ollama server (its native API)."""

    type: Literal["ollama"] = "ollama"
    url: str = DEFAULT_OLLAMA_URL


class EmbeddedBackendConfig(BackendBase):
    """A GGUF model run in process by llama-cpp-python (the ``local`` extra); loads on first use.
    ``models`` may name the one model it serves (default: the file's name, or SmolLM2's)."""

    type: Literal["embedded"] = "embedded"
    path: str | None = Field(None, description="a GGUF file (default: the bundled model)")

    @field_validator("models")
    @classmethod
    def _one_model(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(v) > 1:
            raise ValueError("an embedded backend serves one model: list at most one")
        return v


class MockBackendConfig(BackendBase):
    """A canned backend, for demos and tests. ``{prompt}`` in ``response`` is the prompt."""

    type: Literal["mock"] = "mock"
    response: str = "Mock response"
    usage: tuple[int, int] | None = Field(None, description="[prompt_tokens, completion_tokens]")
    latency_ms: float = Field(0.0, ge=0)
    cost_sats: int | None = Field(None, ge=0)


class SwarmJudgeSettings(_Model):
    """A model of the gateway's own backends that judges whether two paragraph answers make
    the same claims, for the ``auto`` and ``judge`` comparators (docs/quorum.md)."""

    backend: str = Field(min_length=1, description="the name of a backend (not a swarm)")
    model: str = Field(min_length=1, description="the model that backend serves")
    threshold: float = Field(0.5, gt=0, le=1, description="P(same claims) to agree")
    max_calls: int = Field(10, ge=0, description="judge calls per job at most")
    timeout_s: float = Field(30.0, gt=0, description="how long one judge call may take")


class SwarmSettings(_Model):
    """The Nostr swarm: where to publish jobs and what to pay (the gateway's ``swarm:``)."""

    relays: list[str] = Field(min_length=1)
    quorum: int = Field(2, ge=1, description="providers that must agree (default per request)")
    max_quorum: int = Field(5, ge=1, description="the most a request may ask for")
    bid_sats: int = Field(10, ge=0, description="default bid per provider, in sats")
    max_bid_sats: int | None = Field(
        None, ge=0, description="the most a request may bid per provider (default: bid_sats)"
    )
    budget_sats: int | None = Field(None, ge=0, description="total the gateway may spend")
    job_timeout_s: float = Field(
        60.0, gt=0, description="how long to wait for a quorum (the payment after it runs on)"
    )
    resolve_interval_s: float = Field(
        30.0, gt=0, description="how often payments of unknown outcome are looked up"
    )
    wallet_timeout_s: float = Field(
        30.0, gt=0, description="how long the wallet may take to answer one NWC request"
    )
    network: Literal["auto", "bitcoin", "testnet", "signet", "regtest"] = Field(
        "auto",
        description="the Lightning network of the invoices paid; auto: what the wallet's "
        "get_info says (else regtest, with a warning)",
    )
    secret_key: str | None = Field(
        None, repr=False, description="hex or nsec; omitted: a fresh key per run"
    )
    secret_key_env: str | None = None
    nwc_uri: str | None = Field(
        None, repr=False, description="NIP-47 wallet connection for paying providers"
    )
    nwc_uri_env: str | None = None
    payment_ledger: str | None = Field(
        None,
        description="where payments are recorded (with nwc_uri), so none is made twice; "
        "default: state.url when that is PostgreSQL (shared by the gateways), else the "
        "client's payments database",
    )
    models: list[str] = Field(default_factory=list, description="models asked of the swarm")
    prepay: bool = Field(
        False,
        description="pay providers that ask to be paid before they work (payment-required), "
        "within the bid: at most the quorum, once each (client/customer/prepay.py)",
    )
    judge: SwarmJudgeSettings | None = Field(
        None, description="a model of another backend that judges paragraph answers"
    )

    @field_validator("relays")
    @classmethod
    def _relay_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not re.match(r"^wss?://[^\s/]+", url):
                raise ValueError(f"relay must be a ws:// or wss:// URL, not {url!r}")
        return v

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> SwarmSettings:
        key = resolve_secret(
            self.secret_key, self.secret_key_env, "secret_key", info, required=False
        )
        nwc = resolve_secret(self.nwc_uri, self.nwc_uri_env, "nwc_uri", info, required=False)
        object.__setattr__(self, "secret_key", key)
        object.__setattr__(self, "nwc_uri", nwc)
        if self.quorum > self.max_quorum:
            raise ValueError(f"quorum {self.quorum} is above max_quorum {self.max_quorum}")
        if self.max_bid_sats is not None and self.bid_sats > self.max_bid_sats:
            raise ValueError(f"bid_sats {self.bid_sats} is above max_bid_sats {self.max_bid_sats}")
        return self

    @property
    def bid_limit_sats(self) -> int:
        """The most a request may bid per provider: ``max_bid_sats``, else ``bid_sats``."""
        return self.max_bid_sats if self.max_bid_sats is not None else self.bid_sats


class SwarmBackendConfig(SwarmSettings, BackendBase):
    """The swarm as a backend; the gateway serves its models as ``swarm/<model>``."""

    type: Literal["swarm"]

    @property
    def backend_name(self) -> str:
        """The name it serves under and its spend account's: its own, else its type (as the
        backend factory names an unnamed entry)."""
        return self.name or self.type


#: A backend that runs a model (what a provider node may use).
ModelBackend = OpenAIBackendConfig | OllamaBackendConfig | EmbeddedBackendConfig | MockBackendConfig
#: Any backend entry.
AnyBackend = ModelBackend | SwarmBackendConfig

MODEL_TYPES = ("openai", "ollama", "embedded", "mock")
TYPES = ("openai", "ollama", "swarm", "mock", "embedded")
#: Names pydantic puts in error locations for the unions' branches (not fields).
UNION_TAGS = frozenset((*TYPES, "bearer", "basic", "header"))


def _backend_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("type", "openai"))
    return str(getattr(value, "type", "openai"))


#: One ``backends`` entry of ``config.yaml``.
BackendConfig = Annotated[
    Annotated[OpenAIBackendConfig, Tag("openai")]
    | Annotated[OllamaBackendConfig, Tag("ollama")]
    | Annotated[SwarmBackendConfig, Tag("swarm")]
    | Annotated[MockBackendConfig, Tag("mock")]
    | Annotated[EmbeddedBackendConfig, Tag("embedded")],
    Discriminator(
        _backend_kind,
        custom_error_type="backend_type",
        custom_error_message=f"type must be one of {', '.join(TYPES)}",
    ),
]

#: One ``[[backends]]`` entry of ``provider.toml``: the same entries, less the swarm.
ModelBackendConfig = Annotated[
    Annotated[OpenAIBackendConfig, Tag("openai")]
    | Annotated[OllamaBackendConfig, Tag("ollama")]
    | Annotated[MockBackendConfig, Tag("mock")]
    | Annotated[EmbeddedBackendConfig, Tag("embedded")],
    Discriminator(
        _backend_kind,
        custom_error_type="backend_type",
        custom_error_message=f"type must be one of {', '.join(MODEL_TYPES)} "
        "(a provider runs a model; swarm is a gateway backend)",
    ),
]

B = TypeVar("B", bound=BackendBase)


def with_default_names(backends: Sequence[B]) -> list[B]:
    """``backends`` with a name on each: its own, else its type, followed by its position in
    the list unless it is the first entry (``[ollama, ollama]`` -> ``ollama``, ``ollama1``)."""
    return [
        b if b.name else b.model_copy(update={"name": f"{b.type}{i or ''}"})  # type: ignore[attr-defined]
        for i, b in enumerate(backends)
    ]
