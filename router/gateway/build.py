"""Turn a :class:`GatewayConfig` into backends and a router (each backend by the one factory,
:func:`router.backends.factory.build_backend`, that provider nodes use too).

Backends are wrapped in :class:`~router.gateway.adapters.Served` and the router is a
:class:`~router.gateway.adapters.GatewayRouter`, so the gateway can name the serving backend and
the routing reason in its response headers.
"""

from __future__ import annotations

from typing import Any

from ..backends.config import SwarmBackendConfig
from ..backends.factory import build_backend as build_configured
from ..options import BackendOptions
from .adapters import GatewayRouter, Served
from .config import GatewayConfig
from .errors import ConfigError


def build_backend(
    b: Any, default_timeout_s: float | None, *, state: str | None = None
) -> tuple[Served, BackendOptions]:
    """One configured backend, wrapped, with its router options: the swarm here (its client,
    wallet, spend account and, on PostgreSQL, its ledgers in ``state`` are the gateway's), every
    other type by the backends' factory."""
    if isinstance(b, SwarmBackendConfig):
        from .swarm import make_swarm_backend

        # The swarm owns its deadline (job_timeout_s, then the payment runs to its outcome):
        # a router timer would cancel a job mid-payment and publish another.
        served = make_swarm_backend(b, state=state)
        return served, b.options().model_copy(update={"timeout_s": None})
    try:
        backend, options = build_configured(b, default_timeout_s=default_timeout_s)
    except ImportError as exc:
        raise ConfigError(
            f"backends.{b.name}.type", f"backend type {b.type!r} is not available: {exc}"
        ) from None
    except ConfigError:
        raise
    except ValueError as exc:  # what the backend itself refuses (a header it sets, ...)
        raise ConfigError(f"backends.{b.name}", str(exc)) from None
    return Served(backend), options


def build_router(cfg: GatewayConfig) -> GatewayRouter:
    """The router for ``cfg``: its backends, routes (plus ``swarm/*`` to the swarm backends),
    default backend, fallbacks, strategy and resilience defaults."""
    res = cfg.resilience
    state = cfg.state.target()
    backends = [build_backend(b, res.timeout_s, state=state) for b in cfg.all_backends()]
    if cfg.swarm is not None or any(isinstance(b, SwarmBackendConfig) for b in cfg.backends):
        from .swarm import connect_judges

        connect_judges([served for served, _ in backends])
    routes = cfg.route_targets()
    usd_per_sat = cfg.usd_per_sat
    router = GatewayRouter(
        backends,
        routes=routes,
        default_backend=cfg.default_backend,
        fallbacks=cfg.backend_fallbacks(),
        strategy=cfg.strategy.build(),
        retry=res.retry,
        circuit_breaker=res.circuit_breaker,
        rate_limit=res.rate_limit,
        queue_timeout_s=res.queue_timeout_s,
        usd_per_sat=usd_per_sat,
        name="gateway",
    )
    router.swarm_backends = frozenset(
        b.backend_name for b in cfg.all_backends() if isinstance(b, SwarmBackendConfig)
    )
    return router
