"""A dashboard on its own HTTP server, fed by a real market, for tests of the page itself (the
commands' dashboards are in processes.py and the browser tests).

:func:`market_stage` starts, on 127.0.0.1: a relay_mock relay, paid :class:`ProviderNode`s
(tests/support/market.py: one SQLite ledger plays Lightning), a real :class:`SwarmClient` with a
reputation ledger, and a :class:`DashboardApp` on its own HTTP server (``serve_dashboard``) whose
hub gets the swarm's progress through :class:`ProgressTap`, the providers' earnings and the
customer's reputation through probes, and an ``ask`` action: the demo's view.

:func:`chromium` opens headless Chromium (Debian's, never a downloaded one) with the flags this
machine needs; :func:`browser_or_skip` says why browser tests cannot run here (CI=true: fail).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from client.customer.reputation import ReputationLedger
from client.customer.swarm import SwarmResult
from client.nostr.errors import QuorumNotReached
from relay_mock import Relay
from router.dashboard import Action, DashboardAccess, DashboardApp, DashboardHub, serve_dashboard
from router.dashboard.events import ProviderEarnings
from router.dashboard.hub import Panel
from router.dashboard.sources import ProgressTap, earnings_probe, reputation_probe
from tests.support.market import MODEL, Market, Seller, mock

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ADMIN_KEY = "dashboard-admin-key-0123456789"
ANSWER = "Paris is the capital of France."


def browser_or_skip() -> None:
    """Skip (with the reason shown) when Chromium or Playwright is missing; in CI, fail."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if not missing:
        return
    reason = "browser tests need " + " and ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.asynccontextmanager
async def chromium(viewport: dict[str, int] = LAPTOP) -> AsyncIterator[Any]:
    """A fresh headless Chromium with an empty profile of its own; yields its Playwright
    browser context (``await context.new_page()``)."""
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
    try:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=list(CHROMIUM_FLAGS),
                viewport=viewport,
            )
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class PageProblems:
    """Console errors, page errors and failed requests of one page (a test asserts none)."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on(
            "requestfailed",
            lambda req: (
                self.failed.append(f"{req.method} {req.url}: {req.failure}")
                if not req.url.endswith("/events")  # a stream cut when the page closes
                else None
            ),
        )

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.console.append(f"{msg.type}: {msg.text}")

    def all(self) -> list[str]:
        return self.console + self.errors + self.failed


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=2000)


@dataclass
class Stage:
    hub: DashboardHub
    app: DashboardApp
    url: str
    market: Market
    sellers: list[Seller]
    reputation: ReputationLedger
    results: list[SwarmResult] = field(default_factory=list)

    async def ask(self, prompt: str = "What is the capital of France?") -> SwarmResult:
        """One paid swarm job (quorum 2) with its progress on the dashboard."""
        tap = ProgressTap(self.hub, model=MODEL, quorum=2, prompt=prompt)
        try:
            result = await self.market.ask(prompt, on_progress=tap)
        except QuorumNotReached as exc:
            tap.finish(exc.received or None)
            raise
        tap.finish(result)
        self.results.append(result)
        return result


class _Earnings:
    """Several provider nodes' earnings added up (the demo runs all of them)."""

    def __init__(self, sellers: Sequence[Seller]) -> None:
        self.sellers = sellers

    def earnings(self) -> ProviderEarnings:
        done = billed = paid = 0
        for s in self.sellers:
            e = s.node.earnings()
            done += e.jobs_done
            billed += e.billed_msats
            paid += e.paid_msats
        return ProviderEarnings(done, billed, paid)


PANELS: tuple[Panel, ...] = ("jobs", "money", "latency", "earnings", "reputation")


@contextlib.asynccontextmanager
async def market_stage(
    tmp: Path,
    *,
    providers: int = 2,
    admin_key: str | None = ADMIN_KEY,
    require_key: bool = False,
    bucket_s: float = 1.0,
) -> AsyncIterator[Stage]:
    async with Relay(seed=0) as relay, Market(tmp, [relay.url]) as market:
        sellers = [
            await market.add_provider(mock(ANSWER), settle_check_s=0.1) for _ in range(providers)
        ]
        reputation = ReputationLedger(":memory:")
        await market.open_customer(reputation=reputation)
        hub = DashboardHub(title="swarm demo", panels=PANELS, bucket_s=bucket_s)
        probes = [earnings_probe(_Earnings(sellers)), reputation_probe(reputation)]
        stage: Stage | None = None

        async def ask(body: AskBody) -> dict[str, Any]:
            assert stage is not None
            result = await stage.ask(body.prompt)
            return {
                "job_id": result.job_id,
                "reached": result.reached,
                "text": result.text,
                "agreeing": list(result.agreeing),
            }

        actions = {"ask": Action(AskBody, ask, "Ask the swarm")}
        app = DashboardApp(
            hub,
            DashboardAccess(admin_key, require_key=require_key),
            probes=probes,
            actions=actions,
            tick_s=0.2,
            min_interval_s=0.05,
        )
        server, url = await serve_dashboard(app, "127.0.0.1", 0)
        stage = Stage(hub, app, url, market, sellers, reputation)
        try:
            yield stage
        finally:
            await app.close()
            await server.close()
            server.abort_all()
            reputation.close()
