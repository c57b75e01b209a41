"""Build the parts a :class:`~provider.config.ProviderConfig` describes: the backend (one, or an
LmRouter failing over between several), the wallet, and the node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client.wallet import Wallet
from router.backends import LmBackend, MockBackend, OllamaBackend, OpenAICompatBackend

from .config import BackendConfig, PaymentConfig, ProviderConfig
from .errors import ConfigError
from .node import ProviderNode

_HTTP_BACKENDS: dict[str, tuple[type[LmBackend], str]] = {
    "ollama": (OllamaBackend, "http://127.0.0.1:11434"),
    "openai": (OpenAICompatBackend, "http://127.0.0.1:8080/v1"),
}


def build_backend(cfg: BackendConfig, index: int = 0) -> LmBackend:
    name = cfg.name or f"{cfg.type}{index or ''}"
    if cfg.type == "mock":
        mock = MockBackend(name)
        for m in cfg.models:
            mock.with_model(m)
        if cfg.response is not None:
            mock.with_response(cfg.response)
        return mock
    if cfg.type == "embedded":
        from router.backends.llamacpp import LlamaCppBackend

        # Loads lazily: a missing llama-cpp-python is reported on the first job, not here.
        model_name = cfg.models[0] if cfg.models else None
        return LlamaCppBackend(cfg.path, name=name, model_name=model_name)
    cls, default_url = _HTTP_BACKENDS[cfg.type]
    kwargs: dict[str, Any] = {"name": name}
    if cfg.models:
        kwargs["models"] = list(cfg.models)
    key = cfg.resolved_api_key()
    if key:
        if cfg.type != "openai":
            raise ConfigError(f"backend {name}: api_key is for type openai only")
        kwargs["api_key"] = key
    if cfg.timeout_s is not None:
        kwargs["timeout_s"] = cfg.timeout_s
    try:
        return cls(cfg.url or default_url, **kwargs)  # type: ignore[call-arg]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"backend {name}: {exc}") from None


def build_backends(configs: Sequence[BackendConfig]) -> LmBackend:
    """One backend as is; several behind an LmRouter that tries them in order."""
    backends = [build_backend(c, i) for i, c in enumerate(configs)]
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ConfigError(f"backend names must differ (got {', '.join(names)}); set name = …")
    if len(backends) == 1:
        return backends[0]
    from router.router import LmRouter

    # Fail over fast: a second backend beats a third try of a dead one.
    builder = LmRouter.builder().name("provider").retry(max_attempts=2, initial_backoff_s=0.05)
    for b in backends:
        builder.add_backend(b)
    builder.fallback_chain(*names)
    return builder.build()


def build_wallet(cfg: PaymentConfig) -> Wallet | None:
    if cfg.policy == "free" and not (cfg.nwc or cfg.ledger):
        return None
    if cfg.nwc:
        from client.wallet.nwc import NwcWallet

        return NwcWallet(cfg.nwc)
    if cfg.ledger:
        from relay_mock.lightning.ledger import Ledger
        from relay_mock.lightning.wallet import LedgerWallet

        ledger = Ledger(cfg.ledger)
        account = cfg.ledger_account
        if account is None:  # the ledger's "provider" account, made on first use
            named = [a for a in ledger.accounts() if a.name == "provider"]
            account = named[0].id if named else ledger.create_account("provider").id
        return LedgerWallet(ledger, account)
    raise ConfigError(f"payment policy {cfg.policy!r} needs payment.nwc or payment.ledger")


def build_node(
    cfg: ProviderConfig, *, backend: LmBackend | None = None, wallet: Wallet | None = None
) -> ProviderNode:
    """The node ``cfg`` describes, with its backends and wallet built unless given."""
    return ProviderNode(
        cfg,
        backend if backend is not None else build_backends(cfg.backends),
        wallet if wallet is not None else build_wallet(cfg.payment),
    )
