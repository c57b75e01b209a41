"""Each way money went wrong, end to end with real processes: ``swarm serve`` and ``swarm ask``
run as subprocesses against a relay, an NWC wallet service over a SQLite Lightning ledger, and
real provider nodes (two honest at 2 sats, two colluding at 100,000 sats for the same answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from client.nostr.keys import Keys
from client.wallet import PaymentLedger
from provider import Limits, Pricing, ProviderNode
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from tests.support.scripted import ScriptedProvider

from .test_money_paths import FaultyWalletService

SWARM = str(Path(sys.executable).parent / "swarm")
CUSTOMER_MSATS = 1_000_000_000  # a million sats: enough to pay any colluding price
HONEST = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=2_000)
COLLUDING = Pricing(msats_per_1k_prompt=0, msats_per_1k_completion=0, min_msats=100_000_000)


@dataclass
class Market:
    tmp: Path
    relay: Relay
    ledger: Ledger
    service: FaultyWalletService
    customer: int
    honest: list[ProviderNode]
    colluding: list[ProviderNode]

    @property
    def out_msats(self) -> int:
        return CUSTOMER_MSATS - self.ledger.balance(self.customer)

    def nwc(self) -> str:
        return self.service.connection_uri(self.customer)


@pytest.fixture
async def market(tmp_path: Path) -> AsyncIterator[Market]:
    async with contextlib.AsyncExitStack() as stack:
        relay = await stack.enter_async_context(Relay(seed=0))
        ledger = Ledger(tmp_path / "network.db")
        stack.callback(ledger.close)
        service = await stack.enter_async_context(FaultyWalletService(ledger, [relay.url]))
        customer = ledger.create_account("customer", msats=CUSTOMER_MSATS).id
        nodes: dict[str, list[ProviderNode]] = {"honest": [], "colluding": []}
        kinds = [("honest", HONEST)] * 2 + [("colluding", COLLUDING)] * 2
        for i, (kind, pricing) in enumerate(kinds):
            account = ledger.create_account(f"p{i}").id
            node = ProviderNode(
                Keys.generate(),
                [relay.url],
                MockBackend("mock").with_model("m1").with_response("4").with_usage(5, 1),
                pricing=pricing,
                payment="after",
                wallet=LedgerWallet(ledger, account),
                limits=Limits(rate_per_minute=None, max_concurrent=16, queue_size=64),
                store=tmp_path / f"p{i}.db",
                announce=False,
            )
            await node.start()
            stack.push_async_callback(node.close)
            nodes[kind].append(node)
        yield Market(
            tmp_path, relay, ledger, service, customer, nodes["honest"], nodes["colluding"]
        )


class Served:
    """``swarm serve --config FILE`` as a subprocess on a free port."""

    def __init__(self, config: dict[str, Any], path: Path, env: dict[str, str]) -> None:
        self.path = path
        path.write_text(yaml.safe_dump(config))
        self.env = {**os.environ, **env}
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            SWARM,
            "serve",
            "--config",
            str(self.path),
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            line = (await self.proc.stdout.readline()).decode()
        assert "listening on" in line, line
        self.url = line.split("listening on ")[1].split()[0]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            async with asyncio.timeout(30):
                await self.proc.wait()
        self.proc = None

    async def post(
        self, body: dict[str, Any], key: str | None = None
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as s:
            async with s.post(self.url + "/v1/chat/completions", json=body, headers=headers) as r:
                return r.status, dict(r.headers), await r.json()

    async def usage(self, key: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with aiohttp.ClientSession() as s:
            async with s.get(self.url + "/v1/usage", headers=headers) as r:
                assert r.status == 200
                return dict(await r.json())


@contextlib.asynccontextmanager
async def serving(market: Market, config: dict[str, Any], **env: str) -> AsyncIterator[Served]:
    served = Served(config, market.tmp / "gateway.yaml", env)
    await served.start()
    try:
        yield served
    finally:
        await served.stop()


def swarm_section(market: Market, **over: Any) -> dict[str, Any]:
    return {
        "relays": [market.relay.url],
        "quorum": 2,
        "bid_sats": 10,
        "nwc_uri_env": "SWARM_NWC",
        "models": ["m1"],
        "job_timeout_s": 5,
        **over,
    }


def ask(quorum: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "model": "swarm/m1",
        "messages": [{"role": "user", "content": "2+2?"}],
        "quorum": quorum,
        **extra,
    }


async def test_readme_config_refuses_a_caller_bid_above_the_operators(market: Market) -> None:
    # The README's gateway config: no keys, no max_bid_sats.
    async with serving(market, {"swarm": swarm_section(market)}, SWARM_NWC=market.nwc()) as gw:
        status, _, body = await gw.post(ask(bid_sats=5000))
        assert status == 400 and body["error"]["param"] == "bid_sats"
        assert "max_bid_sats: 10" in body["error"]["message"]
        status, _, body = await gw.post(ask(quorum=9))
        assert status == 400 and "max_quorum: 5" in body["error"]["message"]
        assert market.out_msats == 0
        # within the limits it works, and only the honest pair is paid: 2 x 2 sats
        status, headers, body = await gw.post(ask(bid_sats=10))
        assert status == 200 and body["choices"][0]["message"]["content"] == "4"
        assert market.out_msats == int(headers["x-swarm-cost-msats"]) <= 2 * 10_000


async def test_a_payment_in_flight_at_the_router_timeout_is_one_job_paid_once(
    market: Market,
) -> None:
    market.service.delay_s = 0.4  # the wallet is slow, still within its timeout
    # A router timer per attempt (0.2 s) far shorter than the job and its payment take.
    swarm = {"type": "swarm", "name": "swarm", "timeout_s": 0.2, **swarm_section(market)}
    config = {
        "backends": [{**swarm, "wallet_timeout_s": 5}],
        "resilience": {"retry": {"max_attempts": 3}},
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 100}],
    }
    async with serving(market, config, SWARM_NWC=market.nwc()) as gw:
        status, headers, _ = await gw.post(ask(), "sk-alice")
        assert status == 200
        out = market.out_msats
        assert out == 2 * 2_000  # one job: its two honest providers, once each
        assert int(headers["x-swarm-cost-msats"]) == out
        home = Path(os.environ["NOSTR_SWARM_HOME"])
        with PaymentLedger(home / "payments.db") as book:
            jobs = {r.job_id for r in book.history() if r.state == "paid"}
        assert jobs == {headers["x-swarm-job-id"]}
        usage = await gw.usage("sk-alice")
        assert usage["key"]["spent_msats"] == out
        assert usage["swarm"]["swarm"]["spent_msats"] == out


async def test_an_unknown_outcome_stays_held_then_is_charged(market: Market) -> None:
    market.service.lose = True  # the wallet pays, its answer never comes
    config = {
        "swarm": swarm_section(market, wallet_timeout_s=0.3, resolve_interval_s=0.1),
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 100}],
    }
    async with serving(market, config, SWARM_NWC=market.nwc()) as gw:
        status, headers, _ = await gw.post(ask(), "sk-alice")
        assert status == 200
        out = market.out_msats
        assert out > 0
        assert headers["x-swarm-cost-sats"] == "0"
        assert int(headers["x-swarm-pending-msats"]) == out
        usage = await gw.usage("sk-alice")
        assert usage["key"]["pending_sats"] * 1000 == out and usage["key"]["spent_msats"] == 0
        market.service.lose = False
        # the gateway looks the payments up by itself (resolve_interval_s)
        deadline = time.monotonic() + 20
        while (await gw.usage("sk-alice"))["key"]["spent_msats"] != out:
            assert time.monotonic() < deadline, "the unknown payment was never resolved"
            await asyncio.sleep(0.1)
        usage = await gw.usage("sk-alice")
        assert usage["key"]["pending_sats"] == 0
        assert usage["swarm"]["swarm"]["spent_msats"] == out


async def test_concurrent_requests_cannot_overspend_sats_or_usd_budgets(market: Market) -> None:
    config = {
        "backends": [
            {"name": "paid", "type": "mock", "models": ["m-sats"], "cost_sats": 5},
            {
                "name": "priced",
                "type": "mock",
                "models": ["m-usd"],
                "usage": [100, 100],
                "cost_per_1k_tokens_usd": 0.05,  # 200 tokens: $0.01 a request
            },
        ],
        "keys": [
            {"name": "alice", "key": "sk-alice", "budget_sats": 20},
            {"name": "bob", "key": "sk-bob", "budget_usd": 0.02},
        ],
    }
    async with serving(market, config) as gw:

        async def one(model: str, key: str) -> int:
            body = {"model": model, "messages": [{"role": "user", "content": "x"}]}
            return (await gw.post({**body, "max_tokens": 100}, key))[0]

        sats = await asyncio.gather(*(one("m-sats", "sk-alice") for _ in range(20)))
        usd = await asyncio.gather(*(one("m-usd", "sk-bob") for _ in range(20)))
        assert sats.count(200) == 4 and set(sats) == {200, 429}
        assert usd.count(200) == 2 and set(usd) == {200, 429}
        alice = (await gw.usage("sk-alice"))["key"]
        bob = (await gw.usage("sk-bob"))["key"]
        assert alice["spent_sats"] == 20 and alice["reserved_sats"] == 0
        assert bob["spent_usd"] == pytest.approx(0.02)


async def test_spend_survives_a_gateway_restart(market: Market) -> None:
    config = {
        "backends": [{"name": "paid", "type": "mock", "models": ["m"], "cost_sats": 4}],
        "keys": [{"name": "alice", "key": "sk-alice", "budget_sats": 10}],
    }
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    async with serving(market, config) as gw:
        assert (await gw.post(body, "sk-alice"))[0] == 200
        assert (await gw.post(body, "sk-alice"))[0] == 200
    async with serving(market, config) as gw:
        assert (await gw.usage("sk-alice"))["key"]["spent_sats"] == 8
        status, _, err = await gw.post(body, "sk-alice")
        assert status == 429 and "2 of its 10 sats left" in err["error"]["message"]


async def test_swarm_ask_with_a_wallet_and_no_cap_never_pays_a_colluding_price(
    market: Market,
) -> None:
    # Two colluding keys that ignore the bid and invoice 100,000 sats each for the right answer.
    colluders = []
    for i in range(2):
        account = market.ledger.create_account(f"colluder{i}").id
        tx = market.ledger.make_invoice(account, 100_000_000, description="4")
        colluders.append(
            ScriptedProvider([market.relay.url], "4", amount_msats=100_000_000, bolt11=tx.invoice)
        )
    async with contextlib.AsyncExitStack() as stack:
        for c in colluders:
            await stack.enter_async_context(c)
        args = [SWARM, "ask", "2+2?", "--relay", market.relay.url, "--quorum", "2", "--json"]
        for c in colluders:
            args += ["--target", c.pubkey]
        env = {**os.environ, "SWARM_NWC": market.nwc()}
        env.pop("SWARM_MAX_SATS", None)
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["reached"] and result["text"] == "4"
    assert colluders[0].seen[0].bid_msats == 25_000  # the default cap, split over the quorum
    assert result["msats_paid"] == 0 and market.out_msats == 0
    assert {p["status"] for p in result["payments"].values()} == {"refused"}
    assert all("above our bid" in p["reason"] for p in result["payments"].values())
    assert "paying at most 50 sats" in err.decode()
