"""A paid job end to end with a priced nostrdvm DVM (its real DVM engine and payment handling; only
its LLM call is replaced by a fixed answer).

The DVM makes its invoices through LNbits: here a fake LNbits API on 127.0.0.1 (fake_lnbits.py)
over our SQLite Lightning ledger on "bitcoin" (nostrdvm reads only ``lnbc…`` invoices), which it
polls to learn it was paid. Our customer is `swarm ask --prepay`, paying through NWC: our
WalletService on the same ledger. Before `--prepay` (and `--network`), `swarm ask` could not buy
from such a DVM at all: it answers ``payment-required`` and waits, and a mainnet invoice was
refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from client.cli import main
from client.nostr.keys import Keys
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from tests.interop.fake_lnbits import FakeLnbits
from tests.interop.peers import require_nostrdvm
from tests.interop.test_nostrdvm import nostrdvm

COST_SATS = 3  # the DVM's FIX_COST
PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_nostrdvm()


async def _ask(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, argv)
    return code, out.getvalue()


def _lnbits_env(lnbits: FakeLnbits, answer: str | None = None) -> dict[str, str]:
    env = {"LNBITS_HOST": lnbits.url, "LNBITS_INVOICE_KEY": lnbits.invoice_key}
    return env if answer is None else {**env, "NOSTRDVM_ANSWER": answer}


def _settled_incoming(ledger: Ledger, account_id: int) -> int:
    txs = ledger.transactions(account_id, type="incoming")
    return sum(1 for t in txs if t.settled)


async def test_swarm_ask_prepay_pays_a_priced_nostrdvm_dvm_through_nwc_and_prints_its_answer(
    relay: Relay, tmp_path: Path
) -> None:
    with Ledger(tmp_path / "ln.db", network="bitcoin") as ledger:
        dvm_account = ledger.create_account("nostrdvm")
        me = ledger.create_account("me", msats=100_000)
        async with (
            FakeLnbits(ledger, dvm_account.id) as lnbits,
            WalletService(ledger, [relay.url]) as service,
            nostrdvm(relay, tmp_path, cost=COST_SATS, env=_lnbits_env(lnbits)) as (dvm, _),
        ):
            argv = [
                "ask", "hello", "--relay", relay.url, "--quorum", "1", "--max-sats", "5",
                "--target", dvm.public_key, "--nwc", service.connection_uri(me.id),
                "--network", "bitcoin", "--payments-db", str(tmp_path / "payments.db"),
                "--quiet", "--no-reputation", "--json",
            ]  # fmt: skip
            # Without --prepay: it asked for money (an invoice was made) and waits; we time out.
            code, _ = await _ask([*argv, "--timeout", "4"])
            assert code == 1 and len(lnbits.invoices) == 1
            assert ledger.balance(dvm_account.id) == 0
            code, out = await _ask([*argv, "--timeout", "30", "--prepay"])
        outcome = json.loads(out)
        assert code == 0, outcome
        assert outcome["text"] == "nostrdvm says: hello"
        assert outcome["agreeing"] == [dvm.public_key]
        # Its price, once, within --max-sats 5: paid in advance and not billed again after.
        assert outcome["msats_paid"] == COST_SATS * 1000
        assert ledger.balance(dvm_account.id) == COST_SATS * 1000
        assert ledger.balance(me.id) == 100_000 - COST_SATS * 1000
        assert _settled_incoming(ledger, dvm_account.id) == 1
        # It made its invoices through LNbits and learned of the payment by polling it.
        assert len(lnbits.invoices) == 2
        assert lnbits.polls.get(lnbits.invoices[1], 0) >= 1


async def test_quorum_of_a_priced_nostrdvm_dvm_and_our_provider_agrees_and_each_is_paid_once(
    relay: Relay, tmp_path: Path
) -> None:
    answer = "Paris"
    with Ledger(tmp_path / "ln.db", network="bitcoin") as ledger:
        dvm_account = ledger.create_account("nostrdvm")
        node_account = ledger.create_account("our provider")
        me = ledger.create_account("me", msats=100_000)
        node = ProviderNode(
            Keys.generate(), [relay.url],
            MockBackend("mock").with_response(answer).with_usage(7, 1),
            pricing=PRICING, payment="after", wallet=LedgerWallet(ledger, node_account.id),
            connect_timeout=3.0,
        )  # fmt: skip
        async with (
            FakeLnbits(ledger, dvm_account.id) as lnbits,
            WalletService(ledger, [relay.url]) as service,
            node,
            nostrdvm(relay, tmp_path, cost=COST_SATS, env=_lnbits_env(lnbits, answer)) as (
                dvm,
                _,
            ),
        ):
            # Sealed, one request per provider: nostrdvm reads only the last `p` of a cleartext
            # job addressed to several providers, and would ignore one that names it first.
            argv = [
                "ask", "Capital of France? One word.", "--relay", relay.url, "--quorum", "2",
                "--target", dvm.public_key, "--target", node.keys.public_key,
                "--encrypt", "nip44", "--max-sats", "10", "--max-tokens", "100", "--prepay",
                "--nwc", service.connection_uri(me.id), "--network", "bitcoin",
                "--payments-db", str(tmp_path / "payments.db"), "--timeout", "30",
                "--quiet", "--no-reputation", "--json",
            ]  # fmt: skip
            code, out = await _ask(argv)
        outcome = json.loads(out)
        assert code == 0, outcome
        assert outcome["text"] == answer
        assert sorted(outcome["agreeing"]) == sorted([dvm.public_key, node.keys.public_key])
        # nostrdvm in advance (its price), ours after the quorum (its quote, the minimum): each
        # once, 5,000 msats in all, within --max-sats 10.
        assert ledger.balance(dvm_account.id) == COST_SATS * 1000
        assert ledger.balance(node_account.id) == 2000
        assert outcome["msats_paid"] == COST_SATS * 1000 + 2000
        assert ledger.balance(me.id) == 100_000 - COST_SATS * 1000 - 2000
        assert _settled_incoming(ledger, dvm_account.id) == 1
        assert _settled_incoming(ledger, node_account.id) == 1
        assert len(lnbits.invoices) == 1
