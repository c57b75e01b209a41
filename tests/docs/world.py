"""The local stand-ins for the outside world that doc commands are pointed at.

Docs show public relays, a real Lightning wallet, a running Ollama. A doc-test directive swaps
those for the values below (exported to every block as environment variables):

| variable | what runs behind it |
|---|---|
| ``RELAY`` | a relay_mock relay (ws://127.0.0.1:PORT) |
| ``NWC`` | a customer's Nostr Wallet Connect URI, 100,000 sats, on a local wallet service |
| ``PROVIDER_NWC`` | an empty account's URI on the same service (for a provider's invoices) |
| ``OLLAMA`` | a fake Ollama server (http://127.0.0.1:PORT) serving ``llama3.2:1b`` |
| ``OPENAI_UPSTREAM`` | a fake OpenAI-compatible server (http://127.0.0.1:PORT/v1) |
| ``PROVIDER_1`` .. ``PROVIDER_3`` | the npubs of the three provider nodes on ``RELAY`` |

Three provider nodes take jobs on ``RELAY`` (any model; the answer is ``Echo: <prompt>``, so they
agree), charge 1 sat per short job after the result (payment ``after``) and invoice through the
wallet service, so a customer's ``--nwc $NWC`` really pays them.

It all runs on an event loop in a background thread; each doc file gets a fresh one (it starts in
about 0.1 s), so a provider a page starts never picks up another page's recent jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

from client.nostr.keys import Keys
from client.wallet import NwcWallet
from provider import Pricing, ProviderNode
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from router.backends import MockBackend
from tests.support.upstreams import FakeOllama, FakeOpenAI

CUSTOMER_SATS = 100_000
PROVIDERS = 3
MODELS = ["llama3.2:1b", "llama3:latest"]
# 1 sat per job for short answers: under any bid a doc shows.
PRICE = Pricing(msats_per_1k_prompt=1_000, msats_per_1k_completion=1_000, min_msats=1_000)


async def _serve(
    workdir: Path, env: dict[str, str], ready: threading.Event, stop: asyncio.Event
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(seed=0))
        ledger = stack.enter_context(Ledger(workdir / "lightning.db"))
        service = await stack.enter_async_context(WalletService(ledger, [relay.url]))
        customer = ledger.create_account("customer", msats=CUSTOMER_SATS * 1000)
        spare = ledger.create_account("provider")
        npubs: dict[str, str] = {}
        for i in range(PROVIDERS):
            account = ledger.create_account(f"doc-provider-{i + 1}")
            wallet = await stack.enter_async_context(
                NwcWallet(service.connection_uri(account.id), timeout=10)
            )
            backend = (
                MockBackend(f"mock-{i + 1}")
                .with_models(*MODELS)
                .with_any_model()
                .with_response("Echo: {prompt}")
                .with_usage(20, 10)
            )
            keys = Keys.generate()
            npubs[f"PROVIDER_{i + 1}"] = keys.npub
            await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    backend,
                    pricing=PRICE,
                    payment="after",
                    wallet=wallet,
                    store=workdir / f"provider-{i + 1}.db",
                    name=f"doc-provider-{i + 1}",
                )
            )
        ollama = await stack.enter_async_context(FakeOllama(models=list(MODELS)))
        openai = await stack.enter_async_context(FakeOpenAI(models=list(MODELS)))
        env.update(
            RELAY=relay.url,
            NWC=service.connection_uri(customer.id),
            PROVIDER_NWC=service.connection_uri(spare.id),
            OLLAMA=ollama.base_url,
            OPENAI_UPSTREAM=openai.base_url + "/v1",
            **npubs,
        )
        ready.set()
        await stop.wait()


@contextlib.contextmanager
def running_world(workdir: Path) -> Iterator[dict[str, str]]:
    """Start the world in a thread; yield the variables above; stop it on exit."""
    env: dict[str, str] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(_serve(workdir, env, ready, stop))
        except BaseException as exc:  # reported to the test below
            failure.append(exc)
        finally:
            ready.set()
            loop.close()

    thread = threading.Thread(target=run, name="doc-world", daemon=True)
    thread.start()
    ready.wait(60)
    if failure or not env:
        raise RuntimeError(f"the doc-test world did not start: {failure!r}")
    try:
        yield env
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
