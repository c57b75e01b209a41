"""Turn a :class:`GatewayConfig` into backends and a router.

Backends are wrapped in :class:`~router.gateway.adapters.Served` and the router is a
:class:`~router.gateway.adapters.GatewayRouter`, so the gateway can name the serving backend and
the routing reason in its response headers.
"""

from __future__ import annotations

from typing import Any

from ..backends.base import LmBackend
from ..backends.mock import MockBackend
from ..options import BackendOptions
from .adapters import GatewayRouter, Served
from .config import (
    GatewayConfig,
    MockBackendConfig,
    OllamaBackendConfig,
    OpenAIBackendConfig,
    SwarmBackendConfig,
)
from .errors import ConfigError


def _upstream_headers(b: OpenAIBackendConfig | OllamaBackendConfig) -> dict[str, str]:
    headers = dict(b.headers)
    if b.auth is not None:
        headers.update(b.auth.headers())
    return headers


def _openai(b: OpenAIBackendConfig, timeout_s: float | None) -> LmBackend:
    from ..backends.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(
        b.url,
        name=b.name,
        models=b.models,
        headers=_upstream_headers(b),
        timeout_s=timeout_s,
        drop_params=b.drop_params,
        transport=b.transport,
    )


def _ollama(b: OllamaBackendConfig, timeout_s: float | None) -> LmBackend:
    from ..backends.ollama import OllamaBackend

    return OllamaBackend(
        b.url,
        name=b.name,
        models=b.models,
        headers=_upstream_headers(b),
        timeout_s=timeout_s,
    )


def _mock(b: MockBackendConfig) -> LmBackend:
    m = MockBackend(b.name).with_response(b.response)
    m.with_models(*(b.models or ["mock-model"]))
    if b.usage is not None:
        m.with_usage(*b.usage)
    if b.cost_sats is not None:
        m.with_cost(sats=b.cost_sats)
    if b.latency_ms:
        m.with_latency(b.latency_ms)
    return m


def _swarm(b: SwarmBackendConfig) -> Served:
    from .swarm import make_swarm_backend

    return make_swarm_backend(b)


def build_backend(b: Any, default_timeout_s: float | None) -> tuple[Served, BackendOptions]:
    """One configured backend, wrapped, with its router options."""
    timeout_s = b.timeout_s if b.timeout_s is not None else default_timeout_s
    try:
        served: Served
        if isinstance(b, OpenAIBackendConfig):
            served = Served(_openai(b, timeout_s))
        elif isinstance(b, OllamaBackendConfig):
            served = Served(_ollama(b, timeout_s))
        elif isinstance(b, SwarmBackendConfig):
            served = _swarm(b)
        elif isinstance(b, MockBackendConfig):
            served = Served(_mock(b))
        else:  # pragma: no cover - the config's union has no other members
            raise ConfigError(f"backends.{b.name}.type", f"unknown type {b.type!r}")
    except ImportError as exc:
        raise ConfigError(
            f"backends.{b.name}.type", f"backend type {b.type!r} is not available: {exc}"
        ) from None
    except ConfigError:
        raise
    except ValueError as exc:  # what the backend itself refuses (a header it sets, ...)
        raise ConfigError(f"backends.{b.name}", str(exc)) from None
    options = b.options()
    if isinstance(b, (OpenAIBackendConfig, OllamaBackendConfig)):
        # HTTP backends enforce the timeout on their own requests; a router timer on top
        # would only cost time per request.
        options = options.model_copy(update={"timeout_s": None})
    elif isinstance(b, SwarmBackendConfig):
        # The swarm owns its deadline (job_timeout_s, then the payment runs to its outcome):
        # a router timer would cancel a job mid-payment and publish another.
        options = options.model_copy(update={"timeout_s": None})
    elif options.timeout_s is None and default_timeout_s is not None:
        options = options.model_copy(update={"timeout_s": default_timeout_s})
    return served, options


def build_router(cfg: GatewayConfig) -> GatewayRouter:
    """The router for ``cfg``: its backends, routes (plus ``swarm/*`` to the swarm backends),
    default backend, fallbacks, strategy and resilience defaults."""
    res = cfg.resilience
    backends = [build_backend(b, res.timeout_s) for b in cfg.all_backends()]
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
        b.name for b in cfg.all_backends() if isinstance(b, SwarmBackendConfig)
    )
    return router
