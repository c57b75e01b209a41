"""`swarm demo`: the whole market on one machine, with one quorum-verified, paid completion.

It starts a local relay (`swarm relay`) and the local NWC wallet service (`swarm wallet serve`,
a SQLite ledger that plays the Lightning network, with a funded customer account and one account
per provider) as child processes, three provider nodes running the embedded model at temperature
0 (so honest providers agree) and one provider that lies; then asks the swarm one question and
reports who agreed, who dissented and who was paid what, reading every balance over NWC.

The relay and the wallet service are local stand-ins (relay_mock) that this package does not
import: it runs them as commands, reads their URL and URIs from their first line of output, and
stops them when it ends, on failure and on Ctrl-C too.

`swarm demo --web` (:func:`web_demo`) keeps the same swarm running behind its live dashboard: the
customer's jobs, money, latency and reputation table, the providers' earnings, and a form that
asks the swarm more questions (``POST /dashboard/actions/ask``, with the admin key it prints).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from client.customer.reputation import ReputationLedger
from client.customer.swarm import Progress, SwarmClient, SwarmResult
from client.nostr.errors import NostrSwarmError, QuorumNotReached
from client.nostr.keys import Keys
from client.wallet import NwcWallet, Payer, PaymentLedger, SwarmPayHook, Wallet
from router.backends.base import LmBackend
from router.backends.mock import MockBackend
from router.dashboard import Action, ActionError, DashboardAccess, DashboardApp, DashboardHub
from router.dashboard.hub import Panel
from router.dashboard.sources import ProgressTap, earnings_probe, reputation_probe
from router.dashboard.web import serve_dashboard

from .errors import ProviderError
from .node import ProviderNode
from .pricing import Pricing
from .store import Earnings

log = logging.getLogger("provider.demo")

DEFAULT_PROMPT = "What is the capital of France? Answer in one short sentence."
LIE = "The capital of France is Berlin."
CUSTOMER_SATS = 10_000
HONEST_PRICES = (
    Pricing(msats_per_1k_prompt=20_000, msats_per_1k_completion=60_000, min_msats=2_000),
    Pricing(msats_per_1k_prompt=25_000, msats_per_1k_completion=50_000, min_msats=2_000),
    Pricing(msats_per_1k_prompt=15_000, msats_per_1k_completion=70_000, min_msats=2_000),
)
# The liar undercuts everyone: cheap answers are exactly what a quorum must not trust blindly.
LIAR_PRICE = Pricing(msats_per_1k_prompt=1_000, msats_per_1k_completion=1_000, min_msats=1_000)
READY_TIMEOUT_S = 60.0  # for a child process's first line (a loaded machine starts slowly)
STOP_TIMEOUT_S = 10.0  # for a child process to exit after SIGTERM, before it is killed


class DemoError(ProviderError):
    """A part of the demo's swarm (the relay, the wallet service) did not start."""


@dataclass
class DemoProvider:
    name: str
    pubkey: str
    honest: bool
    account_id: int  # its account in the wallet service's ledger


@dataclass
class DemoReport:
    """What the demo did, for printing and for tests."""

    prompt: str
    result: SwarmResult | None
    error: str | None
    providers: list[DemoProvider]
    paid_msats: dict[str, int]  # provider name -> msats received from the customer
    customer_spent_msats: int
    # The sum of every account's balance (customer and providers), read over NWC before the
    # job and after it: payments move money between the accounts, never create or lose any.
    ledger_total_before: int
    ledger_total_after: int
    seconds: float
    relay_url: str = ""
    customer_uri: str = ""
    names: dict[str, str] = field(default_factory=dict)  # pubkey -> name

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.reached

    def name(self, pubkey: str) -> str:
        return self.names.get(pubkey, pubkey[:12] + "…")


def honest_backend(index: int, model_path: str | None) -> LmBackend:
    """One embedded model per honest provider (each node runs its own, as it would for real)."""
    from router.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(model_path, name=f"local-{index}", n_threads=1)


def liar_backend(model: str) -> LmBackend:
    return MockBackend("liar").with_model(model).with_response(LIE).with_usage(30, 9)


# --- child processes -----------------------------------------------------------------------


def swarm_command(*args: str) -> list[str]:
    """The argv of a `swarm` subcommand run by this interpreter (whether or not `swarm` is on
    PATH)."""
    return [sys.executable, "-m", "client.cli", *args]


@dataclass
class Child:
    """A running child process and its first line of output (how it says it is ready)."""

    name: str
    process: asyncio.subprocess.Process
    ready_line: str
    log_path: Path
    terminated: bool = False

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM: both children stop cleanly on it), once; do not wait."""
        if not self.terminated and self.process.returncode is None:
            self.terminated = True
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)


@contextlib.asynccontextmanager
async def child_process(
    name: str, argv: list[str], *, log_path: Path, ready_timeout: float = READY_TIMEOUT_S
) -> AsyncIterator[Child]:
    """Run ``argv`` until the block ends; yield once it printed its first line on stdout.

    Its stderr goes to ``log_path`` (quoted when it fails to start). It runs in a session of its
    own, so the terminal's Ctrl-C reaches only the demo, which stops its children itself, in
    order (the providers say goodbye on a relay that is still up), with SIGTERM (unless
    :meth:`Child.terminate` sent it already), then SIGKILL after ``STOP_TIMEOUT_S``.
    """
    with await asyncio.to_thread(log_path.open, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            # Unbuffered: the ready line must not sit in a pipe buffer.
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    drain: asyncio.Task[None] | None = None
    child: Child | None = None
    try:
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(ready_timeout):
                line = (await proc.stdout.readline()).decode(errors="replace").strip()
        except TimeoutError:
            raise DemoError(
                f"{name} did not start within {ready_timeout:g} s{_tail(log_path)}"
            ) from None
        if not line:
            code = await proc.wait()
            raise DemoError(f"{name} exited ({code}) before it was ready{_tail(log_path)}")
        # Read whatever else it prints, so that a full pipe never blocks it.
        drain = asyncio.create_task(_discard(proc.stdout), name=f"{name}-stdout")
        child = Child(name, proc, line, log_path)
        yield child
    finally:
        await _stop(proc, signalled=child is not None and child.terminated)
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


async def _stop(proc: asyncio.subprocess.Process, *, signalled: bool = False) -> None:
    """SIGTERM (unless ``signalled``), then SIGKILL if it is still running."""
    if proc.returncode is not None:
        return
    if not signalled:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.warning("child %d did not stop within %g s: killed", proc.pid, STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    except BaseException:  # cancelled again while waiting: it must not outlive us
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return (":\n" + "\n".join(text.splitlines()[-lines:])) if text else ""


@dataclass
class DemoSwarm:
    relay_url: str
    customer_uri: str
    model: str
    providers: list[DemoProvider]
    nodes: list[ProviderNode]
    wallets: dict[str, Wallet]  # provider name -> its NWC wallet
    processes: dict[str, int] = field(default_factory=dict)  # "relay", "wallet" -> process id

    async def balances(self) -> dict[str, int]:
        """Each provider's balance in msats, read over NWC."""
        names = list(self.wallets)
        found = await asyncio.gather(*(self.wallets[n].get_balance() for n in names))
        return dict(zip(names, found, strict=True))


async def _load(backends: list[LmBackend]) -> None:
    for b in backends:  # one at a time: loading is what the CPU does meanwhile
        load = getattr(b, "load", None)
        if load is not None:
            await load()


@contextlib.asynccontextmanager
async def demo_swarm(
    *,
    workdir: Path,
    model_path: str | None = None,
    honest: int = 3,
    backend_factory: Callable[[int, str | None], LmBackend] = honest_backend,
) -> AsyncIterator[DemoSwarm]:
    """Relay, wallet service, funded customer account and the provider nodes, all running."""
    backends = [backend_factory(i + 1, model_path) for i in range(honest)]
    model = backends[0].supported_models()[0]
    specs = [(f"honest-{i + 1}", b, HONEST_PRICES[i % 3], True) for i, b in enumerate(backends)]
    specs.append(("liar", liar_backend(model), LIAR_PRICE, False))
    # The models load (in threads) while the relay and the wallet service start: the processes
    # cost the demo little more than their own start-up.
    loading = asyncio.create_task(_load(backends), name="load-models")
    try:
        async with contextlib.AsyncExitStack() as stack:
            relay = await stack.enter_async_context(
                child_process(
                    "the relay (swarm relay)",
                    swarm_command("relay", "--port", "0"),
                    log_path=workdir / "relay.log",
                )
            )
            relay_url = relay.ready_line
            if not relay_url.startswith("ws://"):
                raise DemoError(f"the relay printed {relay_url!r}, not its ws:// URL")
            accounts = [f"customer={CUSTOMER_SATS}", *(name for name, *_ in specs)]
            service = await stack.enter_async_context(
                child_process(
                    "the wallet service (swarm wallet serve)",
                    swarm_command(
                        "wallet",
                        "serve",
                        "--db",
                        str(workdir / "lightning.db"),
                        "--relay",
                        relay_url,
                        "--json",
                        *(arg for a in accounts for arg in ("--new-account", a)),
                    ),
                    log_path=workdir / "wallet.log",
                )
            )
            opened = _new_accounts(service.ready_line)
            # Once the nodes below have closed (the stack unwinds in reverse), both children
            # are told to stop at the same time; each is then waited for in turn.
            stack.callback(service.terminate)
            stack.callback(relay.terminate)
            await loading
            providers: list[DemoProvider] = []
            nodes: list[ProviderNode] = []
            wallets: dict[str, Wallet] = {}
            for name, backend, pricing, is_honest in specs:
                uri, account_id = opened[name]
                wallet = await stack.enter_async_context(NwcWallet(uri, timeout=10))
                keys = Keys.generate()
                node = await stack.enter_async_context(
                    ProviderNode(
                        keys,
                        [relay_url],
                        backend,
                        pricing=pricing,
                        payment="after",
                        wallet=wallet,
                        store=workdir / f"{name}.db",
                        name=name,
                        about="nostr-swarm demo provider"
                        + ("" if is_honest else " (lies on purpose)"),
                    )
                )
                nodes.append(node)
                wallets[name] = wallet
                providers.append(DemoProvider(name, keys.public_key, is_honest, account_id))
            yield DemoSwarm(
                relay_url,
                opened["customer"][0],
                model,
                providers,
                nodes,
                wallets,
                {"relay": relay.process.pid, "wallet": service.process.pid},
            )
    finally:
        if not loading.done():
            loading.cancel()  # the thread finishes its model; nothing waits for it
        await asyncio.gather(loading, return_exceptions=True)


def _new_accounts(line: str) -> dict[str, tuple[str, int]]:
    """name -> (NWC URI, account id), from `swarm wallet serve --json`'s ready line."""
    try:
        ready: Any = json.loads(line)
        return {a["name"]: (a["uri"], int(a["account"])) for a in ready["new_accounts"]}
    except (ValueError, KeyError, TypeError):
        raise DemoError(f"the wallet service printed {line[:200]!r}, not its accounts") from None


@contextlib.asynccontextmanager
async def customer(
    swarm_: DemoSwarm, workdir: Path, *, reputation: ReputationLedger | None = None
) -> AsyncIterator[tuple[SwarmClient, Wallet]]:
    """The demo's customer: a SwarmClient paying from the funded account over NWC (every
    payment in ``workdir``'s payment ledger), and that wallet."""
    async with NwcWallet(swarm_.customer_uri, timeout=10) as wallet:
        payer = Payer(wallet, PaymentLedger(workdir / "payments.db"))
        async with SwarmClient(
            Keys.generate(), [swarm_.relay_url], pay=SwarmPayHook(payer), reputation=reputation
        ) as client:
            yield client, wallet


@dataclass(frozen=True)
class JobTerms:
    """What each of the demo's questions asks for (temperature 0 and seed 0: honest models
    agree)."""

    quorum: int = 2
    timeout: float = 120.0
    max_tokens: int = 48
    max_sats: int = 50


async def ask_and_report(
    swarm_: DemoSwarm,
    client: SwarmClient,
    wallet: Wallet,
    prompt: str,
    terms: JobTerms,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    started: float | None = None,
) -> DemoReport:
    """One question to the swarm, with every balance read over NWC before and after it."""
    started = time.perf_counter() if started is None else started
    providers = swarm_.providers
    before = await swarm_.balances()
    customer_before = await wallet.get_balance()
    result: SwarmResult | None = None
    error: str | None = None
    try:
        result = await client.complete(
            prompt,
            model=swarm_.model,
            quorum=terms.quorum,
            max_sats=terms.max_sats,
            timeout=terms.timeout,
            max_tokens=terms.max_tokens,
            temperature=0.0,
            seed=0,
            providers_expected=len(providers),
            on_progress=on_progress,
        )
    except QuorumNotReached as exc:
        error = str(exc)
        result = exc.received if isinstance(exc.received, SwarmResult) else None
    after = await swarm_.balances()
    customer_after = await wallet.get_balance()
    return DemoReport(
        prompt=prompt,
        result=result,
        error=error,
        providers=providers,
        paid_msats={p.name: after[p.name] - before[p.name] for p in providers},
        customer_spent_msats=customer_before - customer_after,
        ledger_total_before=customer_before + sum(before.values()),
        ledger_total_after=customer_after + sum(after.values()),
        seconds=time.perf_counter() - started,
        relay_url=swarm_.relay_url,
        customer_uri=swarm_.customer_uri,
        names={p.pubkey: p.name for p in providers},
    )


async def run_demo(
    prompt: str = DEFAULT_PROMPT,
    *,
    quorum: int = 2,
    timeout: float = 120.0,  # noqa: ASYNC109 - a budget for the whole job, handed to the client
    max_tokens: int = 48,
    max_sats: int = 50,
    model_path: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    keep_running: Callable[[DemoReport], asyncio.Future[None] | None] | None = None,
    backend_factory: Callable[[int, str | None], LmBackend] = honest_backend,
    workdir: Path | None = None,
) -> DemoReport:
    """Run the demo once and return its report. ``keep_running`` is awaited (with the report)
    before the swarm is torn down, for ``--keep-running``."""
    started = time.perf_counter()
    terms = JobTerms(quorum, timeout, max_tokens, max_sats)
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="swarm-demo-")))
        async with demo_swarm(
            workdir=workdir, model_path=model_path, backend_factory=backend_factory
        ) as swarm_:
            async with customer(swarm_, workdir) as (client, wallet):
                report = await ask_and_report(
                    swarm_, client, wallet, prompt, terms, on_progress=on_progress, started=started
                )
            if keep_running is not None:
                waiter = keep_running(report)
                if waiter is not None:
                    await waiter
            return report
    raise AssertionError("unreachable")  # pragma: no cover


# --- swarm demo --web: the same swarm, watched and asked from its dashboard ----------------------

#: What the demo's page shows: the customer's jobs and money, latency, the providers' earnings
#: (all four nodes together) and the customer's reputation table.
DEMO_PANELS: tuple[Panel, ...] = ("jobs", "money", "latency", "earnings", "reputation")


class AskBody(BaseModel):
    """The page's question (``POST /dashboard/actions/ask``)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1, max_length=2000)


class _AllEarnings:
    """Every demo node's earnings added up (the page shows the swarm's providers as one)."""

    def __init__(self, nodes: list[ProviderNode]) -> None:
        self.nodes = nodes

    def earnings(self) -> Earnings:
        done = billed = paid = 0
        for node in self.nodes:
            e = node.earnings()
            done += e.jobs_done
            billed += e.billed_msats
            paid += e.paid_msats
        return Earnings(done, billed, paid)


@dataclass
class WebDemo:
    """A running ``swarm demo --web``: the swarm, its customer, and the dashboard at ``url``,
    where ``admin_key`` logs in to ask (one question at a time)."""

    swarm: DemoSwarm
    client: SwarmClient
    wallet: Wallet
    hub: DashboardHub
    app: DashboardApp
    url: str
    admin_key: str
    terms: JobTerms
    #: Each question's report, the first (asked by the command) and those asked on the page.
    reports: list[DemoReport] = field(default_factory=list)
    #: Called with each question asked on the page and its report (the command prints them).
    on_answer: Callable[[DemoReport], None] | None = None
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ask(
        self, prompt: str, on_progress: Callable[[Progress], None] | None = None
    ) -> DemoReport:
        """One question, on the page as it happens; the providers' invoices are checked after
        it, so their earnings show at once."""
        async with self._busy:
            tap = ProgressTap(
                self.hub, model=self.swarm.model, quorum=self.terms.quorum, prompt=prompt
            )
            watchers: list[Callable[[Progress], None]] = [tap]
            if on_progress is not None:
                watchers.insert(0, on_progress)

            def progress(p: Progress) -> None:
                for watch in watchers:
                    watch(p)

            try:
                report = await ask_and_report(
                    self.swarm, self.client, self.wallet, prompt, self.terms, on_progress=progress
                )
            except BaseException:
                tap.finish(None)  # the page shows the job ended, not in flight for ever
                raise
            tap.finish(report.result)
            await asyncio.gather(*(node.check_invoices() for node in self.swarm.nodes))
            self.app.refresh()
            self.reports.append(report)
            return report

    async def _ask_from_page(self, body: AskBody) -> dict[str, Any]:
        if self._busy.locked():
            raise ActionError(
                409, "the swarm is answering a question: ask again once it has", "busy"
            )
        try:
            report = await self.ask(body.prompt)
        except NostrSwarmError as exc:  # no relay took the job, the wallet failed, ...
            raise ActionError(502, f"the swarm could not be asked: {exc}", "swarm_error") from None
        if self.on_answer is not None:
            self.on_answer(report)
        result = report.result
        return {
            "job_id": result.job_id if result is not None else None,
            "reached": report.ok,
            "text": result.text if report.ok and result is not None else None,
            "agreeing": list(result.agreeing) if result is not None else [],
            "reason": report.error,
        }


@contextlib.asynccontextmanager
async def web_demo(
    *,
    workdir: Path,
    terms: JobTerms = JobTerms(),
    model_path: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    admin_key: str | None = None,
    backend_factory: Callable[[int, str | None], LmBackend] = honest_backend,
) -> AsyncIterator[WebDemo]:
    """The demo's swarm with its dashboard served on ``host:port`` until the block ends. The
    page is open to read; asking needs ``admin_key`` (a new random one when not given)."""
    key = admin_key or secrets.token_urlsafe(24)
    async with demo_swarm(
        workdir=workdir, model_path=model_path, backend_factory=backend_factory
    ) as swarm_:
        reputation = ReputationLedger(workdir / "reputation.db")
        try:
            async with customer(swarm_, workdir, reputation=reputation) as (client, wallet):
                # It counts from the start: the page shows what happened before it was opened.
                hub = DashboardHub(title="swarm demo", panels=DEMO_PANELS, always_live=True)
                web: WebDemo | None = None

                async def ask(body: AskBody) -> dict[str, Any]:
                    assert web is not None
                    return await web._ask_from_page(body)

                app = DashboardApp(
                    hub,
                    DashboardAccess(key),
                    probes=[
                        earnings_probe(_AllEarnings(swarm_.nodes)),
                        reputation_probe(reputation),
                    ],
                    actions={"ask": Action(AskBody, ask, "Ask the swarm")},
                )
                server, url = await serve_dashboard(app, host, port)
                web = WebDemo(swarm_, client, wallet, hub, app, url, key, terms)
                try:
                    yield web
                finally:
                    await app.close()
                    await server.close()
                    server.abort_all()
        finally:
            reputation.close()
