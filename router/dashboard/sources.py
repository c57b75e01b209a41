"""Where the dashboard's events come from: adapters from the project's own objects.

- :class:`ProgressTap`: a ``SwarmClient.complete(on_progress=...)`` callback that turns a job's
  progress (client/customer/swarm.py ``Progress``) into job, provider-state and quorum events,
  and its payments into ``paid`` states and outgoing payments (:meth:`ProgressTap.finish`).
- :func:`gateway_probe`: a probe reading a gateway's counters (router/gateway/metrics.py), its
  backends' breakers and its spend accounts; nothing on the request path.
- :func:`earnings_probe`: a provider node's earnings (provider/store.py ``JobStore.earnings``).
- :func:`reputation_probe`: a customer's reputation table (client/customer/reputation.py).

Probes are plain callables returning events, read by the web shell while somebody watches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..gateway.auth import key_account
from .events import (
    BREAKER_STATES,
    BreakerState,
    DashboardEvent,
    JobAsked,
    KeySpend,
    Payment,
    ProviderEarnings,
    ProviderStateChanged,
    QuorumOutcome,
    ReputationRow,
    ReputationSnapshot,
    SpendSnapshot,
    TrafficTotals,
)

if TYPE_CHECKING:
    from client.customer.reputation import ReputationLedger
    from client.customer.swarm import Progress

    from ..gateway.app import Gateway

#: Feedback statuses (NIP-90 kind 7000, and the copy guard's ``committed``) a provider is
#: working under; ``error`` is its own state; ``success`` is followed by the result.
_WORKING = frozenset({"processing", "payment-required", "partial", "committed"})


class Publisher(Protocol):
    """Where a tap publishes: a :class:`DashboardHub`, or anything that looks like one."""

    @property
    def live(self) -> bool: ...

    def publish(self, event: DashboardEvent) -> None: ...


class ProgressTap:
    """One job's progress into the hub::

        tap = ProgressTap(hub, model="any", quorum=2, prompt=prompt)
        try:
            result = await client.complete(prompt, quorum=2, on_progress=tap)
        except QuorumNotReached as exc:
            tap.finish(exc.received or None)
            raise
        tap.finish(result)

    The job id is learned from the ``published`` step even while nobody watches (a string
    kept); events are built only while the hub is live."""

    __slots__ = ("hub", "job_id", "model", "outcome_sent", "prompt", "providers", "quorum")

    def __init__(
        self,
        hub: Publisher,
        *,
        model: str | None,
        quorum: int,
        providers: Sequence[str] = (),
        prompt: str = "",
    ) -> None:
        self.hub = hub
        self.model = model or ""
        self.quorum = quorum
        self.providers = tuple(providers)
        self.prompt = prompt
        self.job_id: str | None = None
        self.outcome_sent = False

    def __call__(self, p: Progress) -> None:
        kind = p.kind
        if kind == "published":  # a new job (a retry by the router is one too)
            self.job_id = p.detail
            self.outcome_sent = False
        hub = self.hub
        job = self.job_id
        if not hub.live or job is None:
            return
        if kind == "published":
            hub.publish(JobAsked(job, self.model, self.quorum, self.providers, self.prompt))
        elif kind == "feedback" and p.provider:
            if p.status in _WORKING:
                hub.publish(ProviderStateChanged(job, p.provider, "processing", p.status))
            elif p.status == "error":
                hub.publish(ProviderStateChanged(job, p.provider, "error", p.detail))
        elif kind == "result" and p.provider:
            hub.publish(ProviderStateChanged(job, p.provider, "answered"))
        elif kind in ("reached", "failed") and p.decision is not None:
            d = p.decision
            self.outcome_sent = True
            hub.publish(
                QuorumOutcome(
                    job,
                    d.reached,
                    tuple(d.agreeing) if d.reached else (),
                    tuple(d.dissenting) if d.reached else (),  # no quorum: nobody dissented
                    d.text or "",
                    max(0.0, p.elapsed_ms),
                )
            )

    def finish(self, result: Any) -> None:
        """After ``complete`` returned (a ``SwarmResult``) or gave up (its partial result, or
        None): the outcome if no progress step told it (a timeout), and what was paid."""
        job = self.job_id
        if job is None or not self.hub.live:
            return
        hub = self.hub
        if not self.outcome_sent:
            self.outcome_sent = True
            reached = bool(getattr(result, "reached", False))
            hub.publish(
                QuorumOutcome(
                    job,
                    reached,
                    tuple(getattr(result, "agreeing", ())) if reached else (),
                    tuple(getattr(result, "dissenting", ())) if reached else (),
                    (getattr(result, "text", None) or "") if reached else "",
                )
            )
        if result is None:
            return
        payment = getattr(result, "payment", None)
        paid: dict[str, int] = payment.by_provider_msats() if payment is not None else {}
        for provider, msats in paid.items():
            hub.publish(ProviderStateChanged(job, provider, "paid"))
            hub.publish(Payment("out", msats, job, provider))
        rest = int(getattr(result, "msats_paid", 0)) - sum(paid.values())
        if rest > 0:  # paid by a payer that reports no per-provider outcomes
            hub.publish(Payment("out", rest, job))


def gateway_probe(gateway: Gateway) -> Callable[[], list[DashboardEvent]]:
    """A gateway's traffic totals, breaker states and spend accounts (read from what the
    gateway counts anyway; the request path is not touched)."""

    def probe() -> list[DashboardEvent]:
        m = gateway.metrics
        served = tuple(
            (backend, model, int(row[0]), int(row[3])) for (backend, model), row in m.usage.items()
        )
        errors: dict[str, int] = {}
        for (_endpoint, code), n in list(m.errors.items()):
            errors[code] = errors.get(code, 0) + n
        latency: list[int] | None = None
        for hist in list(m.latency.values()):
            if latency is None:
                latency = list(hist.counts)
            else:
                for i, n in enumerate(hist.counts):
                    latency[i] += n
        events: list[DashboardEvent] = [
            TrafficTotals(
                served,
                tuple(sorted(errors.items())),
                tuple(latency or ()),
                sum(m.requests.values()),
            )
        ]
        for name, b in gateway.router.metrics().items():
            state = b.breaker_state if b.breaker_state in BREAKER_STATES else "closed"
            events.append(
                BreakerState(
                    name,
                    state,
                    max(0, b.in_flight),
                    max(0, b.failures),
                    max(0.0, b.ewma_latency_ms),
                )
            )
        admin = gateway.admin
        revocable: dict[str, str] = {}
        if admin is not None:  # keys the admin API made (those of the config file stay)
            for name, _digest, _spec in admin.records.all():
                if name not in admin.config_names:
                    revocable[key_account(name)] = name
        events.append(spend_snapshot(gateway.book.statuses(), revocable))
        return events

    return probe


def spend_snapshot(
    statuses: Iterable[Any], revocable: Mapping[str, str] | None = None
) -> SpendSnapshot:
    """Spend accounts (router/spend.py ``AccountStatus``) as one snapshot; ``revocable`` maps
    the accounts of keys the admin API can revoke to those keys' names."""
    rows = []
    names = revocable or {}
    for st in statuses:
        budget_usd = st.budget_usd_nanos
        rows.append(
            KeySpend(
                st.name,
                max(0, st.spent_msats),
                st.budget_msats,
                max(0, st.reserved_msats + st.pending_msats),
                max(0, st.requests),
                max(0.0, st.spent_usd_nanos / 1e9),
                None if budget_usd is None else budget_usd / 1e9,
                names.get(st.name),
            )
        )
    return SpendSnapshot(tuple(rows))


class _HasEarnings(Protocol):
    def earnings(self) -> Any: ...


def earnings_probe(store: _HasEarnings) -> Callable[[], list[DashboardEvent]]:
    """A provider node's earnings, from its job store."""

    def probe() -> list[DashboardEvent]:
        e = store.earnings()
        return [ProviderEarnings(int(e.jobs_done), int(e.billed_msats), int(e.paid_msats))]

    return probe


def reputation_probe(ledger: ReputationLedger) -> Callable[[], list[DashboardEvent]]:
    """A customer's reputation table."""

    def probe() -> list[DashboardEvent]:
        rows = tuple(
            ReputationRow(
                r.provider,
                float(r.score),
                int(r.jobs),
                max(0.0, r.agreed),
                max(0.0, r.dissented),
                max(0.0, r.timeouts),
                r.latency_ms,
                max(0, int(r.paid_msats)),
            )
            for r in ledger.records()
        )
        return [ReputationSnapshot(rows)]

    return probe


__all__ = [
    "ProgressTap",
    "Publisher",
    "earnings_probe",
    "gateway_probe",
    "reputation_probe",
    "spend_snapshot",
]
