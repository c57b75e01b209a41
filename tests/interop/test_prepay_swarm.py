"""Buying from a DVM that works only once paid (a priced nostrdvm DVM does this: it answers
``payment-required`` with a BOLT11 and waits). Our own provider with ``payment = "before"`` plays
that DVM here: nostrdvm's invoices come from LNbits or a Lightning address over HTTP, which a test
on 127.0.0.1 cannot reach."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import openai
import pytest

from client.cli import main
from client.customer.prepay import PrepayPolicy
from client.customer.reputation import ReputationLedger
from client.customer.swarm import SwarmClient
from client.nostr.errors import QuorumNotReached
from client.nostr.keys import Keys
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from tests.support.gateway import client, gateway, user
from tests.support.nodes import mock_backend

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


async def test_swarm_client_prepays_a_pay_before_work_provider_and_pays_once(
    relay: Relay, tmp_path: object
) -> None:
    ledger = Ledger(":memory:")
    node_wallet = LedgerWallet(ledger, ledger.create_account("dvm").id)
    customer_wallet = LedgerWallet(ledger, ledger.create_account("me", msats=100_000).id)
    node = ProviderNode(
        Keys.generate(),
        [relay.url],
        mock_backend(),
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        payment_poll_s=0.01,
        connect_timeout=3.0,
    )
    async with (
        node,
        SwarmClient(
            Keys.generate(),
            [relay.url],
            wallet=customer_wallet,
            payments_db=str(tmp_path) + "/payments.db",  # type: ignore[operator]
        ) as swarm,
    ):
        targets = [node.keys.public_key]
        with pytest.raises(QuorumNotReached):  # without prepay: it waits for money, we time out
            await swarm.complete(
                "hello", quorum=1, targets=targets, bid_msats=10_000, max_tokens=100, timeout=1.0
            )
        result = await swarm.complete(
            "hello",
            quorum=1,
            targets=targets,
            bid_msats=10_000,
            max_tokens=100,
            timeout=10.0,
            prepay=PrepayPolicy(),
        )
    quote = 2000  # 2 prompt + 100 completion tokens cost 1,002 msats: the minimum, 2,000
    assert result.text == "Echo: hello"
    assert result.msats_paid == quote
    assert ledger.balance(node_wallet.account_id) == quote  # once: not again after the quorum
    assert ledger.balance(customer_wallet.account_id) == 100_000 - quote


async def test_prepay_never_pays_above_the_bid(relay: Relay, tmp_path: object) -> None:
    ledger = Ledger(":memory:")
    node_wallet = LedgerWallet(ledger, ledger.create_account("dvm").id)
    customer_wallet = LedgerWallet(ledger, ledger.create_account("me", msats=100_000).id)
    node = ProviderNode(
        Keys.generate(),
        [relay.url],
        mock_backend(),
        pricing=PRICING,
        payment="before",
        wallet=node_wallet,
        payment_poll_s=0.01,
        connect_timeout=3.0,
    )
    async with (
        node,
        SwarmClient(
            Keys.generate(),
            [relay.url],
            wallet=customer_wallet,
            payments_db=str(tmp_path) + "/payments.db",  # type: ignore[operator]
        ) as swarm,
    ):
        # The invoice asks 2,000 msats; max_msats 1,000 caps what we pay in advance: nothing is.
        with pytest.raises(QuorumNotReached):
            await swarm.complete(
                "hello",
                quorum=1,
                targets=[node.keys.public_key],
                bid_msats=10_000,
                max_tokens=100,
                timeout=1.0,
                prepay=PrepayPolicy(max_msats=1000),
            )
    assert ledger.balance(node_wallet.account_id) == 0
    assert ledger.balance(customer_wallet.account_id) == 100_000


async def _ask(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.to_thread(main, argv)
    return code, out.getvalue()


async def test_swarm_ask_prepay_pays_a_pay_before_work_provider_through_nwc(
    relay: Relay, tmp_path: Path
) -> None:
    with Ledger(tmp_path / "ln.db") as ledger:
        dvm = ledger.create_account("dvm")
        me = ledger.create_account("me", msats=100_000)
        node = ProviderNode(
            Keys.generate(),
            [relay.url],
            mock_backend(),
            pricing=PRICING,
            payment="before",
            wallet=LedgerWallet(ledger, dvm.id),
            payment_poll_s=0.01,
            connect_timeout=3.0,
        )
        async with node, WalletService(ledger, [relay.url]) as service:
            argv = [
                "ask", "hello", "--relay", relay.url, "--quorum", "1", "--max-sats", "4",
                "--max-tokens", "100",
                "--target", node.keys.public_key, "--nwc", service.connection_uri(me.id),
                "--payments-db", str(tmp_path / "payments.db"), "--quiet", "--no-reputation",
            ]  # fmt: skip
            # Without --prepay it waits for money and we for its answer: nothing is paid.
            assert (await _ask([*argv, "--timeout", "1.5"]))[0] == 1
            assert ledger.balance(dvm.id) == 0
            # An invoice for another network than --network says is refused, even in advance.
            refused = [*argv, "--timeout", "1.5", "--prepay", "--network", "bitcoin"]
            assert (await _ask(refused))[0] == 1
            assert ledger.balance(dvm.id) == 0
            code, out = await _ask([*argv, "--timeout", "10", "--prepay", "--json"])
        outcome = json.loads(out)
        assert code == 0 and outcome["text"] == "Echo: hello"
        assert outcome["msats_paid"] == 2000  # its quote (the minimum), within --max-sats 4
        assert ledger.balance(dvm.id) == 2000  # once: not billed again after the quorum
        assert ledger.balance(me.id) == 98_000


def test_swarm_ask_help_explains_prepay(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    flag = "pay providers that ask to be paid before they work (payment-required), within "
    assert flag + "--bid/--max-sats" in text


@pytest.mark.parametrize("prepay", [True, False])
async def test_the_gateways_swarm_prepays_when_its_config_says_so(
    relay: Relay, tmp_path: Path, prepay: bool
) -> None:
    with Ledger(tmp_path / "ln.db") as ledger:
        dvm = ledger.create_account("dvm")
        me = ledger.create_account("gateway", msats=100_000)
        node = ProviderNode(
            Keys.generate(),
            [relay.url],
            mock_backend(),
            pricing=PRICING,
            payment="before",
            wallet=LedgerWallet(ledger, dvm.id),
            payment_poll_s=0.01,
            connect_timeout=3.0,
        )
        swarm = {
            "relays": [relay.url], "quorum": 1, "bid_sats": 5, "models": ["m1"],
            "job_timeout_s": 10 if prepay else 1.5, "nwc_uri": "${NWC}", "prepay": prepay,
            "payment_ledger": str(tmp_path / "payments.db"),
        }  # fmt: skip
        async with node, WalletService(ledger, [relay.url]) as service:
            env = {"NWC": service.connection_uri(me.id)}
            async with gateway({"swarm": swarm}, env=env) as gw:
                ask = client(gw).chat.completions.create(
                    model="swarm/m1", messages=user("hello"), max_tokens=100
                )
                if prepay:
                    answer = (await ask).choices[0].message.content
                else:  # it waits for money, the gateway for a quorum
                    with pytest.raises(openai.APIStatusError) as e:
                        await ask
                    assert e.value.status_code == 504
        if prepay:
            assert answer is not None and answer.startswith("Echo:")
            assert ledger.balance(dvm.id) == 2000  # its quote, in advance, once
            assert ledger.balance(me.id) == 98_000
        else:
            assert ledger.balance(dvm.id) == 0 and ledger.balance(me.id) == 100_000


async def test_a_prepaid_provider_that_dissents_keeps_its_money_and_is_recorded(
    relay: Relay, tmp_path: Path
) -> None:
    ledger = Ledger(":memory:")
    me = LedgerWallet(ledger, ledger.create_account("me", msats=100_000).id)
    wallets = [LedgerWallet(ledger, ledger.create_account(f"p{i}").id) for i in range(3)]
    # Two honest providers paid after the quorum (the second slow, so the dissent is in first),
    # and one paid before it works that answers something else.
    backends = [
        MockBackend("a").with_response("Paris"),
        MockBackend("b").with_response("Paris").with_latency(1500),
        MockBackend("c").with_response("Lyon"),
    ]
    nodes = [
        ProviderNode(
            Keys.generate(), [relay.url], b.with_usage(7, 1), pricing=PRICING,
            payment="before" if i == 2 else "after", wallet=w, payment_poll_s=0.01,
            connect_timeout=3.0,
        )
        for i, (b, w) in enumerate(zip(backends, wallets, strict=True))
    ]  # fmt: skip
    reputation = ReputationLedger()
    async with contextlib.AsyncExitStack() as stack:
        for node in nodes:
            await stack.enter_async_context(node)
        swarm = await stack.enter_async_context(
            SwarmClient(
                Keys.generate(), [relay.url], wallet=me, reputation=reputation,
                payments_db=tmp_path / "payments.db",
            )
        )  # fmt: skip
        result = await swarm.complete(
            "Capital of France?", quorum=2, targets=[n.keys.public_key for n in nodes],
            bid_msats=5000, max_tokens=100, timeout=15.0, prepay=PrepayPolicy(),
        )  # fmt: skip
    honest, slow, liar = (n.keys.public_key for n in nodes)
    assert result.text == "Paris" and set(result.agreeing) == {honest, slow}
    assert result.dissenting == (liar,)
    # Paid in advance, once, and not refunded by dissenting; the agreeing two after the quorum.
    assert [ledger.balance(w.account_id) for w in wallets] == [2000, 2000, 2000]
    assert result.msats_paid == 6000
    record = reputation.get(liar)
    assert record is not None and record.dissented > 0 and record.agreed == 0
