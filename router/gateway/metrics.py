"""Prometheus metrics for ``GET /metrics`` (exposition by ``prometheus-client``).

The request path only adds to plain dicts and lists (a few hundred nanoseconds); the metric
families are built when Prometheus scrapes, by a collector that also reads the router's
per-backend state (breaker state, in flight, failures, learned latency). Each gateway has its own
registry, so several can run in one process (tests).

Series:
- ``swarm_gateway_requests_total{endpoint,status}``, ``swarm_gateway_errors_total{endpoint,code}``
- ``swarm_gateway_request_duration_seconds{endpoint}`` (histogram; streams: to the last byte)
- ``swarm_gateway_backend_completions_total{backend,model}``,
  ``swarm_gateway_tokens_total{backend,kind}``, ``swarm_gateway_sats_spent_total{backend}``,
  ``swarm_gateway_usd_spent_total{backend}``
- ``swarm_gateway_breaker_state{backend}`` (0 closed, 1 half-open, 2 open),
  ``swarm_gateway_breaker_trips{backend}``, ``swarm_gateway_backend_in_flight{backend}``,
  ``swarm_gateway_backend_failures{backend}``, ``swarm_gateway_backend_latency_seconds{backend}``,
  ``swarm_gateway_backend_error_rate{backend}``, ``swarm_gateway_in_flight``,
  ``swarm_gateway_models``
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..state import BackendMetrics
from ..types import LmUsage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
#: Distinct models tracked per backend before the rest are counted as "other" (a catch-all
#: backend would otherwise let clients create a series per made-up model name).
MAX_MODELS = 200


class _Histogram:
    """Bucket counts for one label set (cumulated at scrape time)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0


class GatewayMetrics:
    """Counters kept in plain Python containers, exposed through a prometheus-client registry."""

    def __init__(
        self,
        backends: Callable[[], dict[str, BackendMetrics]],
        models: Callable[[], int],
        in_flight: Callable[[], int],
    ) -> None:
        self._backends = backends
        self._models = models
        self._in_flight = in_flight
        self.requests: dict[tuple[str, int], int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.latency: dict[str, _Histogram] = {}
        #: (backend, model) -> [completions, prompt tokens, completion tokens, sats, usd]
        self.usage: dict[tuple[str, str], list[float]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def use_router(self, backends: Callable[[], dict[str, BackendMetrics]]) -> None:
        """Read backend figures from another router (after a reload); counters go on."""
        self._backends = backends

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get(endpoint)
        if hist is None:
            hist = self.latency[endpoint] = _Histogram()
        hist.counts[bisect_left(BUCKETS, seconds)] += 1
        hist.total += seconds

    def error(self, endpoint: str, code: str) -> None:
        key = (endpoint, code)
        self.errors[key] = self.errors.get(key, 0) + 1

    def completion(self, backend: str, model: str, usage: LmUsage) -> None:
        row = self.usage.get((backend, model))
        if row is None:
            if sum(1 for b, _ in self.usage if b == backend) >= MAX_MODELS:
                model = "other"
            row = self.usage.setdefault((backend, model), [0, 0, 0, 0, 0.0])
        row[0] += 1
        row[1] += usage.prompt_tokens
        row[2] += usage.completion_tokens
        if usage.cost_sats:
            row[3] += usage.cost_sats
        if usage.cost_usd:
            row[4] += usage.cost_usd

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, m: GatewayMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        req = CounterMetricFamily(
            "swarm_gateway_requests",
            "HTTP requests by endpoint and status code",
            labels=["endpoint", "status"],
        )
        for (endpoint, status), n in list(m.requests.items()):
            req.add_metric([endpoint, str(status)], n)
        err = CounterMetricFamily(
            "swarm_gateway_errors",
            "Error answers by endpoint and OpenAI error code",
            labels=["endpoint", "code"],
        )
        for (endpoint, code), n in list(m.errors.items()):
            err.add_metric([endpoint, code], n)
        lat = HistogramMetricFamily(
            "swarm_gateway_request_duration_seconds",
            "Time to answer a request (to the last byte for streams)",
            labels=["endpoint"],
        )
        for endpoint, h in list(m.latency.items()):
            cum, buckets = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), h.counts, strict=True):
                cum += n
                buckets.append((_le(bound), cum))
            lat.add_metric([endpoint], buckets, h.total)
        yield from (req, err, lat)

        done = CounterMetricFamily(
            "swarm_gateway_backend_completions",
            "Completions served per backend and model",
            labels=["backend", "model"],
        )
        tokens = CounterMetricFamily(
            "swarm_gateway_tokens", "Tokens per backend", labels=["backend", "kind"]
        )
        sats = CounterMetricFamily(
            "swarm_gateway_sats_spent", "Sats spent per backend", labels=["backend"]
        )
        usd = CounterMetricFamily(
            "swarm_gateway_usd_spent", "USD spent per backend", labels=["backend"]
        )
        per_backend: dict[str, list[float]] = {}
        for (backend, model), row in list(m.usage.items()):
            done.add_metric([backend, model], row[0])
            acc = per_backend.setdefault(backend, [0, 0, 0, 0, 0.0])
            for i in range(1, 5):
                acc[i] += row[i]
        for backend, acc in per_backend.items():
            tokens.add_metric([backend, "prompt"], acc[1])
            tokens.add_metric([backend, "completion"], acc[2])
            sats.add_metric([backend], acc[3])
            usd.add_metric([backend], acc[4])
        yield from (done, tokens, sats, usd)

        state = GaugeMetricFamily(
            "swarm_gateway_breaker_state",
            "Circuit breaker state per backend (0 closed, 1 half-open, 2 open)",
            labels=["backend"],
        )
        trips = GaugeMetricFamily(
            "swarm_gateway_breaker_trips", "Times the breaker opened", labels=["backend"]
        )
        in_flight = GaugeMetricFamily(
            "swarm_gateway_backend_in_flight", "Requests in flight per backend", labels=["backend"]
        )
        failures = GaugeMetricFamily(
            "swarm_gateway_backend_failures", "Failed attempts per backend", labels=["backend"]
        )
        latency = GaugeMetricFamily(
            "swarm_gateway_backend_latency_seconds",
            "Learned (EWMA) latency per backend",
            labels=["backend"],
        )
        error_rate = GaugeMetricFamily(
            "swarm_gateway_backend_error_rate", "Learned error rate per backend", labels=["backend"]
        )
        for name, b in m._backends().items():
            state.add_metric([name], _BREAKER_VALUE.get(b.breaker_state, 0.0))
            trips.add_metric([name], float(b.breaker_trips))
            in_flight.add_metric([name], float(b.in_flight))
            failures.add_metric([name], float(b.failures))
            latency.add_metric([name], b.ewma_latency_ms / 1000.0)
            error_rate.add_metric([name], b.error_rate)
        yield from (state, trips, in_flight, failures, latency, error_rate)
        gw = GaugeMetricFamily("swarm_gateway_in_flight", "Requests being answered now")
        gw.add_metric([], float(m._in_flight()))
        models = GaugeMetricFamily("swarm_gateway_models", "Models the gateway lists")
        models.add_metric([], float(m._models()))
        yield from (gw, models)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
