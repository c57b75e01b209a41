"""Prometheus metrics for ``GET /metrics``.

Counters and histograms are updated on the request path (labelled children are cached, so a
request costs a few dict lookups and additions). Per-backend state the router already keeps
(breaker state, in flight, failures, learned latency) is read when Prometheus scrapes, by a
collector, instead of being copied on every request. Each gateway has its own registry, so
several can run in one process (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..state import BackendMetrics
from ..types import LmUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _RouterCollector(Collector):
    """Reads the router's per-backend state at scrape time."""

    def __init__(
        self, backends: Callable[[], dict[str, BackendMetrics]], models: Callable[[], int]
    ) -> None:
        self._backends = backends
        self._models = models

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "swarm_gateway_breaker_state",
            "Circuit breaker state per backend (0 closed, 1 half-open, 2 open)",
            labels=["backend"],
        )
        in_flight = GaugeMetricFamily(
            "swarm_gateway_backend_in_flight", "Requests in flight per backend", labels=["backend"]
        )
        failures = GaugeMetricFamily(
            "swarm_gateway_backend_failures", "Failed attempts per backend", labels=["backend"]
        )
        trips = GaugeMetricFamily(
            "swarm_gateway_breaker_trips", "Times the breaker opened", labels=["backend"]
        )
        latency = GaugeMetricFamily(
            "swarm_gateway_backend_latency_seconds",
            "Learned (EWMA) latency per backend",
            labels=["backend"],
        )
        error_rate = GaugeMetricFamily(
            "swarm_gateway_backend_error_rate", "Learned error rate per backend", labels=["backend"]
        )
        for name, m in self._backends().items():
            state.add_metric([name], _BREAKER_VALUE.get(m.breaker_state, 0.0))
            in_flight.add_metric([name], float(m.in_flight))
            failures.add_metric([name], float(m.failures))
            trips.add_metric([name], float(m.breaker_trips))
            latency.add_metric([name], m.ewma_latency_ms / 1000.0)
            error_rate.add_metric([name], m.error_rate)
        models = GaugeMetricFamily("swarm_gateway_models", "Models the gateway lists")
        models.add_metric([], float(self._models()))
        yield from (state, in_flight, failures, trips, latency, error_rate, models)


class GatewayMetrics:
    """The gateway's metrics in their own registry."""

    def __init__(
        self,
        backends: Callable[[], dict[str, BackendMetrics]],
        models: Callable[[], int],
    ) -> None:
        reg = self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "swarm_gateway_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=reg,
        )
        self._latency = Histogram(
            "swarm_gateway_request_duration_seconds",
            "Time to answer a request (to the last byte for streams)",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self._errors = Counter(
            "swarm_gateway_errors",
            "Error answers by endpoint and OpenAI error code",
            ["endpoint", "code"],
            registry=reg,
        )
        self._completions = Counter(
            "swarm_gateway_backend_completions",
            "Completions served per backend and model",
            ["backend", "model"],
            registry=reg,
        )
        self._tokens = Counter(
            "swarm_gateway_tokens", "Tokens per backend", ["backend", "kind"], registry=reg
        )
        self._sats = Counter(
            "swarm_gateway_sats_spent", "Sats spent per backend", ["backend"], registry=reg
        )
        self._usd = Counter(
            "swarm_gateway_usd_spent", "USD spent per backend", ["backend"], registry=reg
        )
        self.in_flight = Gauge(
            "swarm_gateway_in_flight", "Requests being answered now", registry=reg
        )
        reg.register(_RouterCollector(backends, models))
        self._req_children: dict[tuple[str, int], Counter] = {}
        self._lat_children: dict[str, Histogram] = {}
        self._backend_children: dict[tuple[str, str], tuple[Counter, ...]] = {}

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        child = self._req_children.get((endpoint, status))
        if child is None:
            child = self._req_children[(endpoint, status)] = self._requests.labels(
                endpoint, str(status)
            )
        child.inc()
        hist = self._lat_children.get(endpoint)
        if hist is None:
            hist = self._lat_children[endpoint] = self._latency.labels(endpoint)
        hist.observe(seconds)

    def error(self, endpoint: str, code: str) -> None:
        self._errors.labels(endpoint, code).inc()

    def completion(self, backend: str, model: str, usage: LmUsage) -> None:
        children = self._backend_children.get((backend, model))
        if children is None:
            children = self._backend_children[(backend, model)] = (
                self._completions.labels(backend, model),
                self._tokens.labels(backend, "prompt"),
                self._tokens.labels(backend, "completion"),
                self._sats.labels(backend),
                self._usd.labels(backend),
            )
        calls, prompt, completion, sats, usd = children
        calls.inc()
        if usage.prompt_tokens:
            prompt.inc(usage.prompt_tokens)
        if usage.completion_tokens:
            completion.inc(usage.completion_tokens)
        if usage.cost_sats:
            sats.inc(usage.cost_sats)
        if usage.cost_usd:
            usd.inc(usage.cost_usd)

    def render(self) -> bytes:
        return generate_latest(self.registry)
