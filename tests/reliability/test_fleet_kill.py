"""A provider fleet under fire: three `swarm provider run` processes under one key on one
PostgreSQL job store, a customer sending a burst of paid jobs, and one node killed with SIGKILL
while it holds jobs (seen in the store: open rows with its owner id). Every job is answered once
(one result event id per job on the relay), billed once (one invoice shown per job, paid once;
the killed node's half-made invoices are never shown and stay unpaid), and the killed node's
jobs are finished by the other two.

The model is the provider.toml ``mock`` backend with a delay, so the kill lands mid-job; the
lease is 2 s, so the others take the dead node's jobs over two or three seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg

from client.dvm.nip90 import Job, JobSpec
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from client.wallet import decode_invoice
from client.wallet.interface import Transaction
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from tests.support.customer import Customer, Replies

SWARM = str(Path(sys.executable).parent / "swarm")
OPEN = ("received", "awaiting_payment", "queued", "processing", "held", "publishing")
CUSTOMER_MSATS = 100_000_000


@dataclass
class Fleet:
    keys: Keys
    pg_url: str
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def owner_prefix(self, proc: asyncio.subprocess.Process) -> str:
        """The store's owner id of a node starts with its host and process id."""
        return f"{socket.gethostname()}/{proc.pid}/"

    def rows(self, where: str = "TRUE", *params: object) -> list[dict[str, object]]:
        with psycopg.connect(self.pg_url, row_factory=psycopg.rows.dict_row) as db:
            return list(db.execute(f"SELECT * FROM jobs WHERE {where}", params))

    def held_by(self, proc: asyncio.subprocess.Process, states: tuple[str, ...] = OPEN) -> set[str]:
        """The jobs the node holds now (open ones, by default)."""
        rows = self.rows(
            "state = ANY(%s) AND owner LIKE %s", list(states), self.owner_prefix(proc) + "%"
        )
        return {str(r["id"]) for r in rows}

    def wait_until_busy(self, within: float) -> asyncio.subprocess.Process:
        """Poll the store (another process's state: nothing to await) until a node is in full
        swing: some jobs done, at least three open; that node. Run in a thread, so the relay
        in this process keeps serving."""
        deadline = time.monotonic() + within
        while True:
            for proc in self.procs:
                if len(self.held_by(proc, ("done",))) >= 2 and len(self.held_by(proc)) >= 3:
                    return proc
            assert time.monotonic() < deadline, "no node got busy"
            time.sleep(0.02)


def provider_toml(
    tmp: Path, keys: Keys, relay: Relay, pg_url: str, payment: str, account: int
) -> Path:
    path = tmp / f"provider-{payment}.toml"
    path.write_text(
        f"""
[node]
secret_key = "{keys.secret_hex}"
relays = ["{relay.url}"]
announce = false
connect_timeout = 3

[pricing]
msats_per_1k_prompt = 1000
msats_per_1k_completion = 10000
min_msats = 2000

[payment]
policy = "{payment}"
ledger = "lightning.db"
ledger_account = {account}
poll_s = 0.05
poll_max_s = 0.2

[limits]
max_concurrent = 2
queue_size = 500
max_unpaid = 500
rate_per_minute = 0

[state]
url = "{pg_url}"
lease_s = 2

[[backends]]
type = "mock"
models = ["m1"]
response = "4"
usage = [5, 3]
latency_ms = 150
"""
    )
    return path


@contextlib.asynccontextmanager
async def fleet(config: Path, keys: Keys, pg_url: str, n: int = 3) -> AsyncIterator[Fleet]:
    running = Fleet(keys, pg_url)
    logs = contextlib.ExitStack()
    try:
        for i in range(n):
            proc = await asyncio.create_subprocess_exec(
                SWARM, "provider", "run", "--config", str(config),
                cwd=config.parent, stdout=asyncio.subprocess.PIPE,
                stderr=logs.enter_context(log_file(config.parent / f"node{i}.log")),
                env={k: v for k, v in os.environ.items() if not k.startswith("SWARM_")},
            )  # fmt: skip
            running.procs.append(proc)
        for proc in running.procs:
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                line = (await proc.stdout.readline()).decode()
            assert f"provider {keys.npub} serving m1" in line, line
        yield running
    finally:
        for proc in running.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in running.procs:
            async with asyncio.timeout(30):
                await proc.wait()
        logs.close()


def log_file(path: Path) -> BinaryIO:
    """A node's stderr (its log), kept in the test's folder for a failure's post-mortem."""
    return path.open("wb")


async def kill_one_while_busy(running: Fleet) -> tuple[str, set[str]]:
    """SIGKILL a node once the store shows it in full swing (jobs done, jobs open, so some are
    past their model call); its owner id prefix and the open jobs it held when it died."""
    proc = await asyncio.to_thread(running.wait_until_busy, 30.0)
    proc.kill()
    assert await proc.wait() == -signal.SIGKILL
    return running.owner_prefix(proc), running.held_by(proc)


def invoices_shown(replies: Replies) -> set[str]:
    amounts = [r.amount for r in replies.results] + [f.amount for f in replies.feedback]
    return {a.bolt11 for a in amounts if a is not None and a.bolt11 is not None}


def check_answered_once(relay: Relay, jobs: list[Job]) -> None:
    ids = {j.id for j in jobs}
    per_job: dict[str, set[str]] = {i: set() for i in ids}
    for e in relay.stored_events(Filter(kinds=[6050])):
        if e.tag_value("e") in ids:
            per_job[e.tag_value("e") or ""].add(e.id)
    assert {len(v) for v in per_job.values()} == {1}, per_job


def settled(ledger: Ledger, account: int) -> list[Transaction]:
    return [t for t in ledger.transactions(account, type="incoming") if t.settled]


async def test_a_killed_fleet_node_payment_after(relay: Relay, pg_url: str, tmp_path: Path) -> None:
    jobs_n = 90
    keys = Keys.generate()
    ledger = Ledger(tmp_path / "lightning.db")
    account = ledger.create_account("fleet").id
    payer = LedgerWallet(ledger, ledger.create_account("customer", msats=CUSTOMER_MSATS).id)
    config = provider_toml(tmp_path, keys, relay, pg_url, "after", account)
    async with Customer([relay.url]) as customer, fleet(config, keys, pg_url) as running:
        jobs = [
            await customer.submit(JobSpec(prompt=f"p{i}", model="m1", bid_msats=100_000))
            for i in range(jobs_n)
        ]
        dead, orphaned = await kill_one_while_busy(running)
        assert orphaned
        await customer.wait_for(lambda: all(customer.replies(j).results for j in jobs), within=60)
        await customer.sync()
        paid_msats = 0
        for job in jobs:
            [invoice] = invoices_shown(customer.replies(job))  # one invoice per job
            await payer.pay_invoice(invoice)
            paid_msats += decode_invoice(invoice).amount_msats or 0
        check_answered_once(relay, jobs)
        rows = {str(r["id"]): r for r in running.rows()}
        assert {rows[j.id]["state"] for j in jobs} == {"done"}
        # The dead node's jobs were finished by the others.
        assert all(not str(rows[i]["owner"]).startswith(dead) for i in orphaned)
    # Billed once: one settled invoice per job. What a node made and never showed stays
    # unpaid: only the killed node's jobs holding a backend slot (max_concurrent) can leave
    # one, and those of a node that stalled past its lease (the machine is loaded).
    assert len(settled(ledger, account)) == jobs_n
    assert ledger.balance(account) == paid_msats
    assert CUSTOMER_MSATS - ledger.balance(payer.account_id) == paid_msats
    ledger.close()


async def test_a_killed_fleet_node_payment_before(
    relay: Relay, pg_url: str, tmp_path: Path
) -> None:
    jobs_n = 45
    keys = Keys.generate()
    ledger = Ledger(tmp_path / "lightning.db")
    account = ledger.create_account("fleet").id
    payer = LedgerWallet(ledger, ledger.create_account("customer", msats=CUSTOMER_MSATS).id)
    config = provider_toml(tmp_path, keys, relay, pg_url, "before", account)
    paid: dict[str, list[str]] = {}

    def asked() -> list[tuple[str, str]]:
        """Payment-required invoices the customer has not paid yet."""
        return [
            (job_id, f.amount.bolt11)
            for job_id, replies in customer.jobs.items()
            for f in replies.feedback
            if f.status == "payment-required" and f.amount is not None and f.amount.bolt11
            if f.amount.bolt11 not in paid.get(job_id, [])
        ]

    async def pay_what_is_asked() -> None:
        while True:
            await customer.wait_for(lambda: bool(asked()), within=3600)
            for job_id, bolt11 in asked():
                await payer.pay_invoice(bolt11)
                paid.setdefault(job_id, []).append(bolt11)

    async with Customer([relay.url]) as customer, fleet(config, keys, pg_url) as running:
        paying = asyncio.create_task(pay_what_is_asked())
        try:
            jobs = [
                await customer.submit(JobSpec(prompt=f"p{i}", model="m1", bid_msats=100_000))
                for i in range(jobs_n)
            ]
            dead, orphaned = await kill_one_while_busy(running)
            assert orphaned
            await customer.wait_for(
                lambda: all(customer.replies(j).results for j in jobs), within=60
            )
            await customer.sync()
        finally:
            paying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await paying
        check_answered_once(relay, jobs)
        for job in jobs:  # one invoice asked per job, paid once
            assert len(invoices_shown(customer.replies(job))) == 1
            assert len(paid[job.id]) == 1
        rows = {str(r["id"]): r for r in running.rows()}
        assert {rows[j.id]["state"] for j in jobs} == {"done"}
        assert all(not str(rows[i]["owner"]).startswith(dead) for i in orphaned)
    paid_msats = sum(decode_invoice(b).amount_msats or 0 for bs in paid.values() for b in bs)
    assert len(settled(ledger, account)) == jobs_n
    assert ledger.balance(account) == paid_msats
    ledger.close()
