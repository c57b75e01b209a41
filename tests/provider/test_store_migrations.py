"""The job store under versioned migrations: a store file written before versions existed
(tests/support/state_v1/jobs.sql) opens with its jobs and rows intact, gaining only step 2's
columns (the recorded result event and the invoice); one from before fleets gains the claim's
owner and lease; a newer database is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from client.storage import open_store, recorded_version
from provider.errors import StoreError
from provider.store import JobStore
from tests.support.state_files import tables, v1_file


def test_a_v1_job_store_opens_with_its_jobs_and_gains_step_2(tmp_path: Path) -> None:
    path = v1_file("jobs", tmp_path / "jobs.sqlite")
    before = tables(path)
    store = JobStore(path, clock=lambda: 1_700_000_100.0, owner="node-b")
    after = {k: v for k, v in tables(path).items() if k != "schema_migrations"}
    assert after.keys() == before.keys()
    # Step 2 appends its two columns to the v1 table and touches nothing else.
    assert (
        after["jobs"]
        == before["jobs"][: before["jobs"].rindex(")")] + ", result_event TEXT, bolt11 TEXT)"
    )
    done = store.get("job1")
    assert done is not None and (done.state, done.amount_msats, done.model) == ("done", 1000, "m")
    assert [j.id for j in store.open_jobs()] == ["job2"]
    assert not store.claim("job1", "cust", 1_700_000_000)  # seen: never worked twice
    assert store.take_over("job2")  # node-a's lease ran out long ago
    assert store.claim("job3", "cust", 1_700_000_050)
    store.close()
    db = open_store(path, lock="jobs")
    assert recorded_version(db, "jobs") == 2
    db.close()


def test_a_store_from_before_fleets_gains_owner_and_lease(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, customer TEXT NOT NULL,"
        " created_at INTEGER NOT NULL, received_at REAL NOT NULL, updated_at REAL NOT NULL,"
        " state TEXT NOT NULL, model TEXT, prompt_tokens INTEGER NOT NULL DEFAULT 0,"
        " completion_tokens INTEGER NOT NULL DEFAULT 0, quote_msats INTEGER,"
        " amount_msats INTEGER NOT NULL DEFAULT 0, payment_hash TEXT,"
        " paid INTEGER NOT NULL DEFAULT 0, reason TEXT, latency_ms REAL, request TEXT);"
        "INSERT INTO jobs (id, customer, created_at, received_at, updated_at, state)"
        " VALUES ('old', 'cust', 1, 1.0, 1.0, 'done');"
    )
    db.close()
    store = JobStore(path, clock=lambda: 100.0)
    assert "lease_until" in tables(path)["jobs"]
    assert store.claim("new", "cust", 90) and store.renew(["new"]) == {"new"}
    assert store.seen("old")
    store.close()


def test_a_newer_job_store_is_refused(store_target: str) -> None:
    JobStore(store_target).close()
    db = open_store(store_target, lock="jobs")
    db.execute(
        "INSERT INTO schema_migrations (component, version, name, applied_at)"
        " VALUES ('jobs', 3, 'from the future', 0)"
    )
    db.close()
    with pytest.raises(StoreError, match="schema version 3"):
        JobStore(store_target)
