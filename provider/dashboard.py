"""A provider node's live dashboard (``swarm provider run --dashboard HOST:PORT``).

:class:`NodeWatch` is the node's ``observer`` (provider/node.py): it turns the job book's
effects, as the node carries them out, into dashboard events, and does nothing but a check while
nobody watches. Each job the node takes shows this node's state in it:

- taken (queued, waiting for a payment, or started): ``asked``;
- on the backend: ``processing``; each backend run is also a request on the latency and
  requests panels (its error class when it failed: ``timeout``, ``backend``, ...);
- its result out: ``answered``, and the job ends ``reached`` (the page says *answered*);
  ended otherwise (cancelled by its customer, failed, shutdown): ``error`` with the reason, and
  the job ends ``failed``;
- its invoice paid (found by the node's invoice checks, or the payment asked before the work):
  ``paid``, and the sats come in.

:func:`node_dashboard` serves the page on an address of its own, with the node's earnings read
from its job store while somebody watches. :func:`parse_address` reads ``HOST:PORT``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from router.dashboard import DashboardAccess, DashboardApp, DashboardHub, serve_dashboard
from router.dashboard.events import (
    JobAsked,
    Payment,
    ProviderStateChanged,
    ProviderStateName,
    QuorumOutcome,
    RequestServed,
)
from router.dashboard.hub import Panel
from router.dashboard.sources import earnings_probe

from . import jobs
from .errors import ConfigError
from .intake import Accept

if TYPE_CHECKING:
    from .node import ProviderNode

#: What a provider's page shows.
PROVIDER_PANELS: tuple[Panel, ...] = ("jobs", "earnings", "money", "latency", "traffic")
#: Why a job fails when its backend run failed (provider/jobs.py ``backend_failure``), with the
#: HTTP status the requests panel counts it under.
_BACKEND_FAILURES = {"timeout": 504, "unknown_model": 404, "backend": 502, "internal": 500}
#: Jobs followed at once (more than the hub keeps: it shows at most ``max_jobs``).
_MAX_FOLLOWED = 1000


class NodeWatch:
    """``node.observer``: the node's jobs on ``hub`` (see the module's docstring). ``clock``
    times backend runs the book does not (monotonic seconds)."""

    def __init__(
        self,
        hub: DashboardHub,
        node: ProviderNode,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.node = node
        self.me = node.public_key
        self.clock = clock
        self._shown: OrderedDict[str, None] = OrderedDict()  # jobs the hub was told of
        self._running: dict[str, float] = {}  # job -> when its backend run started
        self._prepaid: set[str] = set()  # paid before the work: "paid" once it is answered

    def __call__(self, effects: Sequence[jobs.Effect]) -> None:
        if not self.hub.live:
            if self._shown or self._running or self._prepaid:  # a later viewer starts afresh
                self._shown.clear()
                self._running.clear()
                self._prepaid.clear()
            return
        for effect in effects:
            self._one(effect)

    def _one(self, effect: jobs.Effect) -> None:
        job_id = effect.job_id
        match effect:
            case jobs.RunBackend(_, accept):
                self._show(job_id, accept)
                self._running[job_id] = self.clock()
                self._state(job_id, "processing")
            case (
                jobs.MakeInvoice()
                | jobs.RecordResult()
                | jobs.PublishResult()
                | jobs.PublishCommitment()
            ):
                if job_id in self._running:  # the backend answered
                    self._served(job_id, "")
            case jobs.StoreUpdate(_, state, fields):
                self._stored(job_id, state, fields)
            case jobs.StorePaid():
                self._paid(job_id)

    def _stored(self, job_id: str, state: str, fields: Mapping[str, object]) -> None:
        reason = str(fields.get("reason") or "")
        if state == "refused":
            return  # never taken: not one of this node's jobs
        self._show(job_id, None)
        if state == "done":
            self._running.pop(job_id, None)
            book_job = self.node.book.get(job_id)
            text = book_job.result.text if book_job and book_job.result else ""
            self._state(job_id, "answered")
            self.hub.publish(QuorumOutcome(job_id, True, text=text, elapsed_ms=_ms(fields)))
            if job_id in self._prepaid:
                self._prepaid.discard(job_id)
                self._state(job_id, "paid")
            self._forget(job_id)
        elif state == "failed" or (state == "queued" and reason):  # queued + reason: kept open
            if job_id in self._running:
                if reason in _BACKEND_FAILURES:
                    self._served(job_id, reason)
                else:  # cut short (cancelled, shutdown): not a backend's failure
                    del self._running[job_id]
            self._state(job_id, "error", reason)
            self.hub.publish(QuorumOutcome(job_id, False, elapsed_ms=_ms(fields)))
            self._prepaid.discard(job_id)
            self._forget(job_id)

    def _paid(self, job_id: str) -> None:
        row = self.node.store.get(job_id)
        msats = row.amount_msats if row is not None and row.amount_msats else 0
        book_job = self.node.book.get(job_id)
        if book_job is not None and book_job.state not in jobs.TERMINAL:
            self._prepaid.add(job_id)  # paid before the work: "paid" once it is answered
        elif self.hub.job(job_id) is not None:  # a job the page shows (not one before it)
            self._state(job_id, "paid")
        self.hub.publish(Payment("in", msats, job_id))

    def _show(self, job_id: str, accept: Accept | None) -> None:
        if job_id in self._shown:
            return
        if accept is None:
            book_job = self.node.book.get(job_id)
            accept = book_job.accept if book_job is not None else None
        if accept is None:
            return  # a job the book no longer knows: its states still show, without a prompt
        self._shown[job_id] = None
        while len(self._shown) > _MAX_FOLLOWED:
            old, _ = self._shown.popitem(last=False)
            self._running.pop(old, None)
            self._prepaid.discard(old)
        prompt = accept.request.prompt
        self.hub.publish(JobAsked(job_id, accept.model[:200], 0, (self.me,), prompt))

    def _forget(self, job_id: str) -> None:
        self._shown.pop(job_id, None)

    def _state(self, job_id: str, state: ProviderStateName, detail: str = "") -> None:
        self.hub.publish(ProviderStateChanged(job_id, self.me, state, detail))

    def _served(self, job_id: str, error: str) -> None:
        started = self._running.pop(job_id)
        book_job = self.node.book.get(job_id)
        took = book_job.backend_s if book_job is not None and book_job.backend_s > 0 else 0.0
        if not took:
            took = max(0.0, self.clock() - started)
        model = book_job.accept.model if book_job is not None and book_job.accept else ""
        status = _BACKEND_FAILURES.get(error, 200)
        self.hub.publish(RequestServed(self.node.backend.name, model[:200], took, status, error))


def _ms(fields: Mapping[str, object]) -> float:
    value = fields.get("latency_ms")
    return float(value) if isinstance(value, int | float) and value >= 0 else 0.0


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve anywhere


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[::1]:8090`` for IPv6; port 0: any free port). ConfigError if not."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--dashboard takes HOST:PORT (e.g. 127.0.0.1:8090), not {text!r}")
    return Address(host, int(port))


#: An admin key shorter than this is refused (as the gateway's is).
MIN_ADMIN_KEY = 16


@contextlib.asynccontextmanager
async def node_dashboard(
    node: ProviderNode, address: Address, admin_key: str | None = None
) -> AsyncIterator[tuple[DashboardApp, str]]:
    """Serve ``node``'s dashboard on ``address`` while the block runs; yields the app and the
    page's URL. On an address that is not loopback it needs ``admin_key`` (then only that key
    sees the page); on loopback without one anybody on this machine may read it."""
    if admin_key is not None and len(admin_key) < MIN_ADMIN_KEY:
        raise ConfigError(
            f"the dashboard's admin key must have at least {MIN_ADMIN_KEY} characters"
        )
    if admin_key is None and not address.loopback:
        raise ConfigError(
            f"the dashboard on {address.host} would show this node's jobs and earnings to the "
            "network: give it an admin key (--dashboard-key-env VAR), or listen on 127.0.0.1"
        )
    name = node.config.node.name or node.keys.npub[:16] + "…"
    hub = DashboardHub(title=f"provider {name}", panels=PROVIDER_PANELS, role="provider")
    app = DashboardApp(
        hub,
        DashboardAccess(admin_key, require_key=admin_key is not None),
        probes=[earnings_probe(node)],
    )
    server, url = await serve_dashboard(app, address.host, address.port)
    node.observer = NodeWatch(hub, node)
    try:
        yield app, url
    finally:
        node.observer = None
        await app.close()
        await server.close()


__all__ = [
    "MIN_ADMIN_KEY",
    "PROVIDER_PANELS",
    "Address",
    "NodeWatch",
    "node_dashboard",
    "parse_address",
]
