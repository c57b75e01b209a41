"""JobStore: claims dedupe across reopen, states, earnings, pruning; writes fenced by the job's
owner, the result recorded once, a lone node adopting its last run's jobs, migration 2."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path

import pytest

from provider.errors import StoreError
from provider.store import JobStore
from router.clock import ManualClock


def test_claim_is_once_even_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with JobStore(path) as store:
        assert store.claim("j1", "c1", 100)
        assert not store.claim("j1", "c1", 100)
    with JobStore(path) as store:
        assert not store.claim("j1", "c1", 100)
        assert store.seen("j1") and not store.seen("j2")


def test_states_earnings_and_invoices() -> None:
    with JobStore(":memory:") as store:
        for j in ("a", "b", "c"):
            store.claim(j, "cust", 1)
        store.update("a", "done", amount_msats=5000, payment_hash="h1", prompt_tokens=3)
        store.update("b", "done")  # free job
        store.update("c", "awaiting_payment", amount_msats=7000, payment_hash="h2")
        e = store.earnings()
        assert (e.jobs_done, e.billed_msats, e.paid_msats) == (2, 5000, 0)
        assert sorted(store.unpaid_invoices()) == [("a", "h1"), ("c", "h2")]
        store.mark_paid("a")
        store.mark_expired("c")
        assert store.unpaid_invoices() == []
        e = store.earnings()
        assert (e.billed_msats, e.paid_msats) == (5000, 5000)
        row = store.get("a")
        assert row is not None and row.paid and row.prompt_tokens == 3
        assert [r.id for r in store.open_jobs()] == ["c"]  # still awaiting payment
        with pytest.raises(StoreError):
            store.update("a", "bogus")
        with pytest.raises(StoreError):
            store.update("a", "done", nonsense=1)


def test_prune_keeps_open_and_unpaid_jobs() -> None:
    clock = ManualClock(1000.0)
    with JobStore(":memory:", clock=clock) as store:
        for j in ("done", "open", "unpaid"):
            store.claim(j, "c", 1)
        store.update("done", "done")
        store.update("unpaid", "done", payment_hash="h", amount_msats=1)
        clock.advance(100)
        assert store.prune(50) == 1
        assert not store.seen("done")
        assert store.seen("open") and store.seen("unpaid")
        assert [r.id for r in store.open_jobs()] == ["open"]


def test_unwritable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError):
        JobStore(blocker / "sub" / "jobs.sqlite")


def test_deferred_commits_batch_writes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    opened: list[int] = []
    store = JobStore(path, on_write=lambda: opened.append(1))
    reader = JobStore(path)
    store.claim("a", "c", 1)
    store.claim("b", "c", 1)
    store.update("a", "done")
    assert opened == [1]  # one transaction for the three writes
    assert store.seen("b") and not reader.seen("b")  # not visible elsewhere until committed
    store.commit()
    assert reader.seen("b")
    store.claim("c", "c", 1)
    assert opened == [1, 1]
    store.close()  # commits what is pending
    assert reader.seen("c")
    reader.close()


def test_renew_returns_the_jobs_still_owned() -> None:
    clock = ManualClock(1000.0)
    with JobStore(":memory:", owner="a", clock=clock, lease_s=10) as store:
        store.claim("j1", "cust", 1)
        store.claim("j2", "cust", 1)
        assert store.renew(["j1", "j2", "unknown"]) == {"j1", "j2"}
        assert store.renew([]) == set()


def test_writes_are_fenced_by_the_owner(tmp_path: Path) -> None:
    """Two nodes' connections on one file: only the job's owner writes about it; the signed
    result is recorded once."""
    path = tmp_path / "jobs.sqlite"
    with JobStore(path, owner="a") as a, JobStore(path, owner="b") as b:
        assert a.claim("j1", "cust", 1)
        assert not b.update("j1", "failed", reason="not mine")
        assert a.get("j1").state == "received"  # type: ignore[union-attr]
        assert not b.record_result("j1", '{"id": "b"}', "publishing")
        assert a.record_result("j1", '{"id": "a"}', "publishing", model="m1", prompt_tokens=3)
        assert not a.record_result("j1", '{"id": "again"}', "publishing")  # one per job
        row = b.get("j1")
        assert row is not None and row.result_event == '{"id": "a"}' and row.owner == "a"
        assert (row.state, row.model, row.prompt_tokens) == ("publishing", "m1", 3)
        assert a.update("j1", "done", latency_ms=1.0)
        with pytest.raises(StoreError, match="publishing or held"):
            a.record_result("j1", "{}", "done")
        with pytest.raises(StoreError, match="unknown job fields"):
            a.record_result("j1", "{}", "held", owner="b")
        with pytest.raises(StoreError, match="unknown job fields"):
            a.update("j1", "done", result_event="{}")


def test_a_lone_node_adopts_what_its_last_run_left_open(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with JobStore(path) as last_run:
        for j in ("open", "held", "done"):
            last_run.claim(j, "cust", 1)
        last_run.record_result("held", "{}", "held")
        last_run.update("done", "done")
    with JobStore(path) as this_run:
        assert not this_run.update("open", "failed")  # the last run's, until adopted
        assert [(r.id, r.state) for r in this_run.adopt()] == [
            ("open", "received"),
            ("held", "held"),
        ]
        assert this_run.update("open", "failed", reason="interrupted")
        assert this_run.get("held").owner == this_run.owner  # type: ignore[union-attr]


def test_migration_2_adds_the_result_event_to_an_older_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, customer TEXT NOT NULL, created_at INTEGER"
        " NOT NULL, received_at REAL NOT NULL, updated_at REAL NOT NULL, state TEXT NOT NULL,"
        " model TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT"
        " NULL DEFAULT 0, quote_msats INTEGER, amount_msats INTEGER NOT NULL DEFAULT 0,"
        " payment_hash TEXT, paid INTEGER NOT NULL DEFAULT 0, reason TEXT, latency_ms REAL,"
        " request TEXT)"
    )
    db.execute("INSERT INTO jobs (id, customer, created_at, received_at, updated_at, state)"
               " VALUES ('old', 'c', 1, 1, 1, 'queued')")  # fmt: skip
    db.commit()
    db.close()
    with JobStore(path) as store:
        [row] = store.adopt()
        assert row.id == "old" and row.result_event is None
        assert store.record_result("old", '{"id": "r"}', "publishing")
    with JobStore(path) as again:  # migrated once: opening again changes nothing
        assert again.get("old").result_event == '{"id": "r"}'  # type: ignore[union-attr]


def test_the_default_owner_names_the_host_and_process() -> None:
    with JobStore(":memory:") as a, JobStore(":memory:") as b:
        assert a.owner.split("/")[:2] == [socket.gethostname(), str(os.getpid())]
        assert a.owner != b.owner
