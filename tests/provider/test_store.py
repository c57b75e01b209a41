"""JobStore: claims dedupe across reopen, states, earnings, pruning."""

from __future__ import annotations

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
