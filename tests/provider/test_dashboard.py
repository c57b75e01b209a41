"""A provider node's dashboard (provider/dashboard.py): the node's jobs as its page shows them,
from real nodes on a real relay paid through a real ledger; the address and key rules of
``swarm provider run --dashboard``. The page in a browser: tests/router/dashboard/test_browser.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from client.cli import main
from client.dvm.nip90 import JobSpec
from provider.dashboard import NodeWatch, node_dashboard, parse_address
from provider.errors import ConfigError
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from router.dashboard.hub import DashboardHub
from tests.support.customer import Customer
from tests.support.nodes import NodeFactory, mock_backend

PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)
KEY = "provider-dashboard-key-0123"


def watched() -> DashboardHub:
    hub = DashboardHub(title="node", role="provider")
    hub.join(lambda: None)  # one viewer: the hub is live
    return hub


def wallets(ledger: Ledger) -> tuple[LedgerWallet, LedgerWallet]:
    node = LedgerWallet(ledger, ledger.create_account("node").id)
    payer = LedgerWallet(ledger, ledger.create_account("customer", msats=10_000_000).id)
    return node, payer


def states(hub: DashboardHub, job_id: str) -> dict[str, str]:
    job = hub.job(job_id)
    assert job is not None, f"no job {job_id[:12]} on the page"
    return {p["key"]: p["state"] for p in job["providers"]}


async def test_a_paid_after_job_goes_from_taken_to_answered_to_paid(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    hub = watched()
    async with start_node(pricing=PRICING, payment="after", wallet=node_wallet) as node:
        node.observer = NodeWatch(hub, node)
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=300, bid_msats=10_000))
        result = await customer.result(job)
        await customer.feedback(job, "success")
        shown = hub.job(job.id)
        assert shown is not None
        assert shown["prompt"] == "hello" and shown["model"] == "m1"
        assert shown["outcome"] == "reached" and shown["text"] == "Echo: hello"
        assert states(hub, job.id) == {node.public_key: "answered"}
        # Its backend run is one request, by backend and model.
        assert hub.snapshot()["traffic"] == [
            {"backend": "mock", "model": "m1", "requests": 1, "errors": 0, "msats": 0}
        ]
        assert hub.snapshot()["cards"]["msats_in"] == 0
        assert result.amount is not None and result.amount.bolt11 is not None
        await payer.pay_invoice(result.amount.bolt11)
        assert await node.check_invoices() == 1
        assert states(hub, job.id) == {node.public_key: "paid"}
        cards = hub.snapshot()["cards"]
        assert cards["msats_in"] == result.amount.msats == 2000
        assert cards["reached"] == 1 and cards["in_flight"] == 0
        paid_job = hub.job(job.id)
        assert paid_job is not None and paid_job["paid_msats"] == 2000


async def test_a_job_paid_before_the_work_shows_paid_once_answered(
    start_node: NodeFactory, customer: Customer
) -> None:
    ledger = Ledger(":memory:")
    node_wallet, payer = wallets(ledger)
    hub = watched()
    async with start_node(
        pricing=PRICING, payment="before", wallet=node_wallet, payment_poll_s=0.01
    ) as node:
        node.observer = NodeWatch(hub, node)
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=300))
        asked = await customer.feedback(job, "payment-required")
        assert states(hub, job.id) == {node.public_key: "asked"}  # taken, waiting for the sats
        assert asked.amount is not None and asked.amount.bolt11 is not None
        await payer.pay_invoice(asked.amount.bolt11)
        await customer.result(job)
        await customer.feedback(job, "success")
        assert states(hub, job.id) == {node.public_key: "paid"}
        assert hub.snapshot()["cards"]["msats_in"] == asked.amount.msats == 3002
        done = hub.job(job.id)
        assert done is not None and done["outcome"] == "reached"


async def test_a_failed_backend_run_is_an_error_and_a_failed_request(
    start_node: NodeFactory, customer: Customer
) -> None:
    hub = watched()
    async with start_node(mock_backend().with_failure()) as node:
        node.observer = NodeWatch(hub, node)
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=30))
        await customer.feedback(job, "error")
        shown = hub.job(job.id)
        assert shown is not None and shown["outcome"] == "failed"
        (provider,) = shown["providers"]
        assert (provider["state"], provider["detail"]) == ("error", "backend")
        snap = hub.snapshot()
        assert snap["traffic"] == [
            {"backend": "mock", "model": "m1", "requests": 1, "errors": 1, "msats": 0}
        ]
        assert snap["errors"] == [{"error": "backend", "count": 1}]
        assert snap["cards"]["failed"] == 1


async def test_nobody_watching_the_node_tells_the_page_nothing(
    start_node: NodeFactory, customer: Customer
) -> None:
    hub = DashboardHub(title="node", role="provider")
    async with start_node() as node:
        watch = NodeWatch(hub, node)
        node.observer = watch
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=30))
        assert (await customer.result(job)).content == "Echo: hello"
        await customer.feedback(job, "success")
        assert hub.snapshot()["jobs"] == [] and hub.snapshot()["traffic"] == []
        # A viewer now sees the next job from its start.
        hub.join(lambda: None)
        second = await customer.submit(JobSpec(prompt="again", max_tokens=30))
        await customer.feedback(second, "success")
        assert [j["id"] for j in hub.snapshot()["jobs"]] == [second.id]


async def test_an_observer_that_fails_costs_the_node_nothing(
    start_node: NodeFactory, customer: Customer
) -> None:
    def broken(effects: object) -> None:
        raise RuntimeError("a bug in a live view")

    async with start_node() as node:
        node.observer = broken
        job = await customer.submit(JobSpec(prompt="hello", max_tokens=30))
        assert (await customer.result(job)).content == "Echo: hello"
        await customer.feedback(job, "success")
        assert node.stats.completed == 1


def test_dashboard_addresses() -> None:
    a = parse_address("127.0.0.1:8090")
    assert (a.host, a.port, a.loopback, str(a)) == ("127.0.0.1", 8090, True, "127.0.0.1:8090")
    b = parse_address("[::1]:0")
    assert (b.host, b.port, b.loopback, str(b)) == ("::1", 0, True, "[::1]:0")
    assert parse_address("localhost:1").loopback
    assert not parse_address("0.0.0.0:8090").loopback
    assert not parse_address("node.example:8090").loopback  # a name may resolve anywhere
    for bad in ("8090", "127.0.0.1", ":8090", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_address(bad)


async def test_the_dashboard_needs_a_key_off_loopback_and_then_only_that_key_reads(
    start_node: NodeFactory,
) -> None:
    async with start_node() as node:
        with pytest.raises(ConfigError, match="admin key"):
            async with node_dashboard(node, parse_address("0.0.0.0:0")):
                pass
        with pytest.raises(ConfigError, match="at least 16"):
            async with node_dashboard(node, parse_address("127.0.0.1:0"), "short"):
                pass
        async with node_dashboard(node, parse_address("127.0.0.1:0"), KEY) as (app, url):
            assert isinstance(node.observer, NodeWatch) and node.observer.hub is app.hub
            snapshot = url + "snapshot"
            async with aiohttp.ClientSession() as s:
                async with s.get(snapshot) as r:
                    assert r.status == 401
                async with s.get(snapshot, headers={"Authorization": f"Bearer {KEY}"}) as r:
                    assert r.status == 200
                    body = await r.json()
            assert body["role"] == "provider" and body["earnings"]["jobs_done"] == 0
        assert node.observer is None  # the page is gone: the node tells nobody
        async with node_dashboard(node, parse_address("127.0.0.1:0")) as (_, url):
            async with aiohttp.ClientSession() as s, s.get(url + "snapshot") as r:
                assert r.status == 200  # loopback without a key: open to read


@pytest.fixture
def provider_toml(tmp_path: Path) -> Path:
    path = tmp_path / "provider.toml"
    assert main(["provider", "init", "--config", str(path), "--backend", "mock"]) == 0
    return path


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--dashboard", "0.0.0.0:8090"], {}, "needs an admin key (--dashboard-key-env VAR)"),
        (["--dashboard", "8090"], {}, "--dashboard takes HOST:PORT"),
        (["--dashboard-key-env", "K"], {"K": KEY}, "--dashboard-key-env is for --dashboard"),
        (["--dashboard", "127.0.0.1:0", "--dashboard-key-env", "UNSET_KEY"], {}, "is not set"),
        (["--dashboard", "127.0.0.1:0", "--dashboard-key-env", "K"], {"K": "short"}, "16"),
    ],
)
def test_run_refuses_a_dashboard_it_cannot_serve_safely(
    provider_toml: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    error: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert "UNSET_KEY" not in os.environ
    capsys.readouterr()
    assert main(["provider", "run", "--config", str(provider_toml), *args]) == 2
    assert error in capsys.readouterr().err


async def test_run_says_so_when_the_dashboards_port_is_taken(tmp_path: Path, relay: Relay) -> None:
    path = tmp_path / "provider.toml"
    init = ["provider", "init", "--config", str(path), "--backend", "mock", "--relay", relay.url]
    assert main(init) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client.cli",
            "provider",
            "run",
            "--config",
            str(path),
            "--dashboard",
            f"127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 2, err.decode()
    assert f"error: --dashboard 127.0.0.1:{port}: " in err.decode()
    assert b"serving" not in out  # it never said it was up
