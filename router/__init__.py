"""nostr-swarm router: one API over local LLM servers, remote APIs and the Nostr swarm."""

from __future__ import annotations

from . import errors
from .builder import LmRouterBuilder
from .circuit_breaker import BreakerConfig, CircuitBreaker, CircuitState
from .clock import ManualClock, RecordingSleeper
from .options import BackendOptions
from .rate_limit import RateLimitConfig, TokenBucket
from .request import LmRequest, Sampling, SwarmTerms
from .retry import RetryPolicy
from .router import LmRouter, LmStream
from .state import BackendMetrics
from .strategy import (
    Adaptive,
    CostBased,
    Hybrid,
    LatencyBased,
    Optimization,
    PriorityOrder,
    RoundRobin,
    RoutingDecision,
    RoutingStrategy,
)
from .types import LmResponse, LmUsage, Message, StreamChunk, SwarmOutcome
from .usage import UsageReport, UsageStats

__all__ = [
    "Adaptive",
    "BackendMetrics",
    "BackendOptions",
    "BreakerConfig",
    "CircuitBreaker",
    "CircuitState",
    "CostBased",
    "Hybrid",
    "LatencyBased",
    "LmRequest",
    "LmResponse",
    "LmRouter",
    "LmRouterBuilder",
    "LmStream",
    "LmUsage",
    "ManualClock",
    "Message",
    "Optimization",
    "PriorityOrder",
    "RateLimitConfig",
    "RecordingSleeper",
    "RetryPolicy",
    "RoundRobin",
    "RoutingDecision",
    "RoutingStrategy",
    "Sampling",
    "StreamChunk",
    "SwarmOutcome",
    "SwarmTerms",
    "TokenBucket",
    "UsageReport",
    "UsageStats",
    "errors",
]
