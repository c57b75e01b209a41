"""What the dashboard is told: small typed events, built by the process that serves it.

Two kinds. *Happenings* (a job was asked, a provider's state changed, a quorum formed, a payment
went in or out, a request was served) are published as they happen, and only count while
somebody watches (:meth:`DashboardHub.publish <router.dashboard.hub.DashboardHub.publish>` drops
them otherwise). *Snapshots* (breaker states, key spend, the reputation table, a provider's
earnings, the gateway's traffic totals) describe how things stand; the dashboard asks its
probes for them while somebody watches, and replaces what it had.

Money is integer millisats. Each event checks its fields when built (:class:`DashboardEventError`),
so a wrong event fails where it is made; build one only when ``hub.live`` is true and a process
with no viewer pays for nothing but that check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ProviderStateName = Literal[
    "asked",
    "processing",
    "answered",
    "error",
    "timed_out",
    "not_needed",
    "agreed",
    "dissented",
    "paid",
]
#: A provider's states in a job, in the order they can follow each other: a change to an earlier
#: state (a late ``processing`` after the answer) is ignored by the hub.
PROVIDER_STATES: tuple[ProviderStateName, ...] = get_args(ProviderStateName)
BreakerStateName = Literal["closed", "half_open", "open"]
BREAKER_STATES: tuple[BreakerStateName, ...] = get_args(BreakerStateName)
Direction = Literal["in", "out"]

#: The longest text an event carries (prompts, answers, details); longer text is cut.
MAX_TEXT = 2000
MAX_NAME = 200


class DashboardEventError(ValueError):
    """An event with a field the dashboard cannot use (a bug in the code that built it)."""


def _name(value: object, field: str, *, empty: bool = False) -> None:
    if not isinstance(value, str) or (not value and not empty) or len(value) > MAX_NAME:
        raise DashboardEventError(
            f"{field} must be a {'' if empty else 'non-empty '}string of at most {MAX_NAME} "
            f"characters, not {value!r:.80}"
        )


def _count(value: object, field: str) -> None:
    if type(value) is not int or value < 0:
        raise DashboardEventError(f"{field} must be a whole number >= 0, not {value!r:.40}")


def _optional_count(value: object, field: str) -> None:
    if value is not None:
        _count(value, field)


def _amount(value: object, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise DashboardEventError(f"{field} must be a number >= 0, not {value!r:.40}")


def _text(value: object, field: str) -> None:
    if not isinstance(value, str):
        raise DashboardEventError(f"{field} must be a string, not {type(value).__name__}")


def _names(values: object, field: str) -> None:
    if not isinstance(values, tuple):
        raise DashboardEventError(f"{field} must be a tuple of strings")
    for v in values:
        _name(v, field)


# --- happenings -------------------------------------------------------------------------------
# Not frozen: a frozen dataclass takes about a microsecond longer to build, and these are built
# where jobs and requests are handled. The hub copies what it keeps, so one changed after it was
# published changes nothing there.


@dataclass(slots=True)
class JobAsked:
    """A swarm job was published. ``providers``: the providers it was addressed to (empty when
    it went to anyone listening; they show up as they answer)."""

    job_id: str
    model: str
    quorum: int
    providers: tuple[str, ...] = ()
    prompt: str = ""

    def __post_init__(self) -> None:
        _name(self.job_id, "job_id")
        _name(self.model, "model", empty=True)
        _count(self.quorum, "quorum")
        _names(self.providers, "providers")
        _text(self.prompt, "prompt")


@dataclass(slots=True)
class ProviderStateChanged:
    """One provider's state in one job."""

    job_id: str
    provider: str
    state: ProviderStateName
    detail: str = ""

    def __post_init__(self) -> None:
        _name(self.job_id, "job_id")
        _name(self.provider, "provider")
        if self.state not in PROVIDER_STATES:
            raise DashboardEventError(
                f"state must be one of {', '.join(PROVIDER_STATES)}, not {self.state!r:.40}"
            )
        _text(self.detail, "detail")


@dataclass(slots=True)
class QuorumOutcome:
    """A job's quorum was reached (``text`` is the agreed answer) or can no longer be."""

    job_id: str
    reached: bool
    agreeing: tuple[str, ...] = ()
    dissenting: tuple[str, ...] = ()
    text: str = ""
    elapsed_ms: float = 0.0

    def __post_init__(self) -> None:
        _name(self.job_id, "job_id")
        if not isinstance(self.reached, bool):
            raise DashboardEventError("reached must be True or False")
        _names(self.agreeing, "agreeing")
        _names(self.dissenting, "dissenting")
        _text(self.text, "text")
        _amount(self.elapsed_ms, "elapsed_ms")


@dataclass(slots=True)
class Payment:
    """Millisats that came in (a provider's invoice was paid) or went out (we paid one)."""

    direction: Direction
    msats: int
    job_id: str = ""
    peer: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out"):
            raise DashboardEventError(f"direction must be 'in' or 'out', not {self.direction!r}")
        _count(self.msats, "msats")
        _name(self.job_id, "job_id", empty=True)
        _name(self.peer, "peer", empty=True)


@dataclass(slots=True)
class RequestServed:
    """One request answered by a backend: how long it took, its HTTP status, and its error
    class (``""`` when it succeeded)."""

    backend: str
    model: str
    latency_s: float
    status: int = 200
    error: str = ""

    def __post_init__(self) -> None:
        _name(self.backend, "backend")
        _name(self.model, "model", empty=True)
        _amount(self.latency_s, "latency_s")
        if type(self.status) is not int or not 100 <= self.status <= 599:
            raise DashboardEventError(f"status must be an HTTP status, not {self.status!r:.20}")
        _name(self.error, "error", empty=True)


# --- snapshots --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A backend's circuit breaker and load, as they stand."""

    backend: str
    state: BreakerStateName
    in_flight: int = 0
    failures: int = 0
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        _name(self.backend, "backend")
        if self.state not in BREAKER_STATES:
            raise DashboardEventError(
                f"state must be one of {', '.join(BREAKER_STATES)}, not {self.state!r:.40}"
            )
        _count(self.in_flight, "in_flight")
        _count(self.failures, "failures")
        _amount(self.latency_ms, "latency_ms")


@dataclass(frozen=True, slots=True)
class KeySpend:
    """What one budget account (an API key, a swarm budget) spent, against its budget: a row of
    :class:`SpendSnapshot`. ``key_name``: the API key's name when the admin API can revoke it
    (the page then offers to)."""

    account: str
    spent_msats: int
    budget_msats: int | None = None
    reserved_msats: int = 0
    requests: int = 0
    spent_usd: float = 0.0
    budget_usd: float | None = None
    key_name: str | None = None

    def __post_init__(self) -> None:
        _name(self.account, "account")
        if self.key_name is not None:
            _name(self.key_name, "key_name")
        _count(self.spent_msats, "spent_msats")
        _optional_count(self.budget_msats, "budget_msats")
        _count(self.reserved_msats, "reserved_msats")
        _count(self.requests, "requests")
        _amount(self.spent_usd, "spent_usd")
        if self.budget_usd is not None:
            _amount(self.budget_usd, "budget_usd")


@dataclass(frozen=True, slots=True)
class SpendSnapshot:
    """Every budget account as it stands (accounts not in it are gone: revoked keys)."""

    accounts: tuple[KeySpend, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.accounts, tuple) or not all(
            isinstance(a, KeySpend) for a in self.accounts
        ):
            raise DashboardEventError("accounts must be a tuple of KeySpend")


@dataclass(frozen=True, slots=True)
class ReputationRow:
    """One provider's record as the customer keeps it (client/customer/reputation.py)."""

    provider: str
    score: float
    jobs: int
    agreed: float = 0.0
    dissented: float = 0.0
    timeouts: float = 0.0
    latency_ms: float | None = None
    paid_msats: int = 0

    def __post_init__(self) -> None:
        _name(self.provider, "provider")
        if isinstance(self.score, bool) or not isinstance(self.score, int | float):
            raise DashboardEventError(f"score must be a number, not {self.score!r:.40}")
        _count(self.jobs, "jobs")
        _amount(self.agreed, "agreed")
        _amount(self.dissented, "dissented")
        _amount(self.timeouts, "timeouts")
        if self.latency_ms is not None:
            _amount(self.latency_ms, "latency_ms")
        _count(self.paid_msats, "paid_msats")


@dataclass(frozen=True, slots=True)
class ReputationSnapshot:
    """The whole reputation table."""

    rows: tuple[ReputationRow, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.rows, tuple) or not all(
            isinstance(r, ReputationRow) for r in self.rows
        ):
            raise DashboardEventError("rows must be a tuple of ReputationRow")


@dataclass(frozen=True, slots=True)
class ProviderEarnings:
    """A provider node's earnings (provider/store.py ``Earnings``)."""

    jobs_done: int
    billed_msats: int
    paid_msats: int

    def __post_init__(self) -> None:
        _count(self.jobs_done, "jobs_done")
        _count(self.billed_msats, "billed_msats")
        _count(self.paid_msats, "paid_msats")


@dataclass(frozen=True, slots=True)
class TrafficTotals:
    """A gateway's counters since it started (router/gateway/metrics.py), for processes that
    count requests themselves instead of publishing :class:`RequestServed`.

    ``served``: ``(backend, model, completions, sats spent)`` rows; ``errors``: ``(error class,
    count)``; ``latency``: request durations counted in the buckets of
    :data:`router.gateway.metrics.BUCKETS` (one more count for above the last bound);
    ``requests``: every request answered."""

    served: tuple[tuple[str, str, int, int], ...]
    errors: tuple[tuple[str, int], ...]
    latency: tuple[int, ...]
    requests: int

    def __post_init__(self) -> None:
        for row in self.served:
            if len(row) != 4:
                raise DashboardEventError("served rows are (backend, model, completions, sats)")
            _name(row[0], "served backend")
            _name(row[1], "served model", empty=True)
            _count(row[2], "served completions")
            _count(row[3], "served sats")
        for code, n in self.errors:
            _name(code, "error class")
            _count(n, "error count")
        for n in self.latency:
            _count(n, "latency count")
        _count(self.requests, "requests")


DashboardEvent = (
    JobAsked
    | ProviderStateChanged
    | QuorumOutcome
    | Payment
    | RequestServed
    | BreakerState
    | SpendSnapshot
    | ReputationSnapshot
    | ProviderEarnings
    | TrafficTotals
)

__all__ = [
    "BREAKER_STATES",
    "PROVIDER_STATES",
    "BreakerState",
    "DashboardEvent",
    "DashboardEventError",
    "JobAsked",
    "KeySpend",
    "Payment",
    "ProviderEarnings",
    "ProviderStateChanged",
    "ProviderStateName",
    "QuorumOutcome",
    "ReputationRow",
    "ReputationSnapshot",
    "RequestServed",
    "SpendSnapshot",
    "TrafficTotals",
]
