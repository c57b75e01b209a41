"""Per-backend settings the router applies: priority, pricing, limits, breaker, retries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .circuit_breaker import BreakerConfig
from .rate_limit import RateLimitConfig
from .retry import RetryPolicy


class BackendOptions(BaseModel):
    """How the router treats one backend. Unset sections fall back to the router's defaults.

    Pricing: ``cost_per_1k_input_usd``/``cost_per_1k_output_usd`` price responses that carry no
    cost of their own; ``cost_per_1k_tokens_usd`` is what cost-aware strategies compare (default:
    the mean of the two prices, else the backend's own hint, else learned from responses that
    report a cost).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    priority: int = Field(0, description="lower is preferred; breaks ties between equal scores")
    enabled: bool = True
    cost_per_1k_input_usd: float | None = Field(None, ge=0)
    cost_per_1k_output_usd: float | None = Field(None, ge=0)
    cost_per_1k_tokens_usd: float | None = Field(None, ge=0)
    latency_hint_ms: float | None = Field(
        None, ge=0, description="latency assumed until measured (default: the backend's own)"
    )
    timeout_s: float | None = Field(None, gt=0, description="per attempt; None: no router timeout")
    max_tokens: int | None = Field(
        None, ge=1, description="the most max_tokens a request to this backend may ask for"
    )
    model_prices: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict, description="model -> (input, output) USD per 1k tokens"
    )
    model_max_tokens: dict[str, int] = Field(
        default_factory=dict, description="model -> the most max_tokens a request may ask for"
    )
    price_table: bool = Field(
        False, description="price models it names no price for from router/prices.py"
    )
    rate_limit: RateLimitConfig | None = None
    circuit_breaker: BreakerConfig | None = None
    retry: RetryPolicy | None = None
