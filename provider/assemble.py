"""Build the parts a :class:`~provider.config.ProviderConfig` describes: the backend (one, or an
LmRouter failing over between several; each built by the router's one backend factory), the
wallet, and the node."""

from __future__ import annotations

from collections.abc import Sequence

from client.nostr.errors import NostrSwarmError
from client.wallet import Wallet
from router.backends import LmBackend
from router.backends.config import ModelBackend, with_default_names
from router.backends.factory import build_backend

from .config import PaymentConfig, ProviderConfig
from .errors import ConfigError
from .node import ProviderNode


def build_backends(configs: Sequence[ModelBackend]) -> LmBackend:
    """One backend as is; several (or one with router options of its own: a rate limit, a
    circuit breaker, ...) behind an LmRouter that tries them in order."""
    configs = with_default_names(configs)
    built = [build_backend(c) for c in configs]
    names = [b.name for b, _ in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"backend names must differ (got {', '.join(names)}); set name = …")
    if len(built) == 1 and not configs[0].router_options_set():
        return built[0][0]
    from router.router import LmRouter

    # Fail over fast: a second backend beats a third try of a dead one.
    builder = LmRouter.builder().name("provider").retry(max_attempts=2, initial_backoff_s=0.05)
    for backend, options in built:
        builder.add_backend(backend, options)
    builder.fallback_chain(*names)
    return builder.build()


def build_wallet(cfg: PaymentConfig) -> Wallet | None:
    """The node's wallet: NWC (``nwc``), or a local test ledger (``ledger``: the wallet kind of
    that name, which relay_mock registers), on ``ledger_account`` or the ledger's "provider"
    account (opened on first use)."""
    if cfg.policy == "free" and not (cfg.nwc or cfg.ledger):
        return None
    if cfg.nwc:
        from client.wallet.nwc import NwcWallet

        return NwcWallet(cfg.nwc)
    if cfg.ledger:
        from client.wallet.registry import open_wallet

        account = cfg.ledger_account if cfg.ledger_account is not None else "provider"
        try:
            return open_wallet("ledger", cfg.ledger, account=account)
        except NostrSwarmError as exc:
            raise ConfigError(f"payment.ledger: {exc}") from None
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
