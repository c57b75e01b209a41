"""`swarm demo`: the whole market on one machine, with one quorum-verified, paid completion.

It starts relay_mock, the local NWC wallet service (a SQLite ledger that plays the Lightning
network) with a funded customer account, three provider nodes running the embedded model at
temperature 0 (so honest providers agree) and one provider that lies; then asks the swarm one
question and reports who agreed, who dissented and who was paid what.

The demo orchestrates every layer, so it is the one module here that imports ``relay_mock``
(a test and development relay) besides the provider's own stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from client.customer.swarm import Progress, SwarmClient, SwarmResult
from client.nostr.errors import QuorumNotReached
from client.nostr.keys import Keys
from client.wallet import NwcWallet, Payer, PaymentLedger, SwarmPayHook
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from router.backends.base import LmBackend
from router.backends.mock import MockBackend

from .node import ProviderNode
from .pricing import Pricing

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


@dataclass
class DemoProvider:
    name: str
    pubkey: str
    honest: bool
    account_id: int


@dataclass
class DemoReport:
    """What the demo did, for printing and for tests."""

    prompt: str
    result: SwarmResult | None
    error: str | None
    providers: list[DemoProvider]
    paid_msats: dict[str, int]  # provider name -> msats received from the customer
    customer_spent_msats: int
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


@dataclass
class DemoSwarm:
    relay_url: str
    ledger: Ledger
    service: WalletService
    customer_id: int
    model: str
    providers: list[DemoProvider]
    nodes: list[ProviderNode]


@contextlib.asynccontextmanager
async def demo_swarm(
    *,
    workdir: Path,
    model_path: str | None = None,
    honest: int = 3,
    backend_factory: Callable[[int, str | None], LmBackend] = honest_backend,
) -> AsyncIterator[DemoSwarm]:
    """Relay, wallet service, funded customer account and the provider nodes, all running."""
    from relay_mock import Relay

    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(db=None))
        ledger = stack.enter_context(Ledger(workdir / "lightning.db", clock=time.time))
        service = await stack.enter_async_context(WalletService(ledger, [relay.url]))
        customer = ledger.create_account("customer", msats=CUSTOMER_SATS * 1000)

        backends = [backend_factory(i + 1, model_path) for i in range(honest)]
        model = backends[0].supported_models()[0]
        for b in backends:  # load the models before the clock starts, one at a time
            load = getattr(b, "load", None)
            if load is not None:
                await load()

        providers: list[DemoProvider] = []
        nodes: list[ProviderNode] = []
        specs = [(f"honest-{i + 1}", b, HONEST_PRICES[i % 3], True) for i, b in enumerate(backends)]
        specs.append(("liar", liar_backend(model), LIAR_PRICE, False))
        for name, backend, pricing, is_honest in specs:
            account = ledger.create_account(name)
            wallet = await stack.enter_async_context(
                NwcWallet(service.connection_uri(account.id), timeout=10)
            )
            keys = Keys.generate()
            node = await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    backend,
                    pricing=pricing,
                    payment="after",
                    wallet=wallet,
                    store=workdir / f"{name}.db",
                    name=name,
                    about="nostr-swarm demo provider" + ("" if is_honest else " (lies on purpose)"),
                )
            )
            nodes.append(node)
            providers.append(DemoProvider(name, keys.public_key, is_honest, account.id))
        yield DemoSwarm(relay.url, ledger, service, customer.id, model, providers, nodes)


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
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="swarm-demo-")))
        async with demo_swarm(
            workdir=workdir, model_path=model_path, backend_factory=backend_factory
        ) as swarm_:
            relay_url, ledger, customer_id = swarm_.relay_url, swarm_.ledger, swarm_.customer_id
            providers = swarm_.providers
            names = {p.pubkey: p.name for p in providers}
            total_before = ledger.check_conservation()
            customer_uri = swarm_.service.connection_uri(customer_id)
            result: SwarmResult | None = None
            error: str | None = None
            async with NwcWallet(customer_uri, timeout=10) as wallet:
                payer = Payer(wallet, PaymentLedger(workdir / "payments.db"))
                async with SwarmClient(
                    Keys.generate(), [relay_url], pay=SwarmPayHook(payer)
                ) as swarm:
                    try:
                        result = await swarm.complete(
                            prompt,
                            model=swarm_.model,
                            quorum=quorum,
                            max_sats=max_sats,
                            timeout=timeout,
                            max_tokens=max_tokens,
                            temperature=0.0,
                            seed=0,
                            providers_expected=len(providers),
                            on_progress=on_progress,
                        )
                    except QuorumNotReached as exc:
                        error = str(exc)
                        result = exc.received if isinstance(exc.received, SwarmResult) else None
            paid = {p.name: ledger.balance(p.account_id) for p in providers}
            report = DemoReport(
                prompt=prompt,
                result=result,
                error=error,
                providers=providers,
                paid_msats=paid,
                customer_spent_msats=CUSTOMER_SATS * 1000 - ledger.balance(customer_id),
                ledger_total_before=total_before,
                ledger_total_after=ledger.check_conservation(),
                seconds=time.perf_counter() - started,
                relay_url=relay_url,
                customer_uri=customer_uri,
                names=names,
            )
            if keep_running is not None:
                waiter = keep_running(report)
                if waiter is not None:
                    await waiter
            return report
    raise AssertionError("unreachable")  # pragma: no cover
