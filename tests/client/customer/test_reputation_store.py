"""The reputation ledger on SQLite and PostgreSQL: writers in several processes never lose each
other's counts, a shared ledger reads what others wrote, determinism flags keep their order, and
a file written before versioned schemas opens unchanged."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from client.customer.reputation import (
    DeterminismFlag,
    Observation,
    ProviderRecord,
    ReputationLedger,
)
from client.storage import open_store, recorded_version
from tests.support.state_files import tables, v1_file

PROVIDERS = ("a", "b", "c")
HALF_LIFE_S = 3600.0


def _writer(target: str, i: int, jobs: int, start: Any) -> None:
    """One process: ``jobs`` jobs, each observing the three providers in a rotating order."""
    ledger = ReputationLedger(target, customer="me", clock=lambda: 1000.0)
    start.wait()
    for j in range(jobs):
        order = PROVIDERS[(i + j) % 3 :] + PROVIDERS[: (i + j) % 3]
        ledger.record(
            [
                Observation(order[0], "agreed", 100.0, 1000, 1000),
                Observation(order[1], "dissented", 200.0, 1000),
                Observation(order[2], "timeout", 5000.0),
            ]
        )
    ledger.close()


def test_writers_in_many_processes_lose_no_counts(store_target: str) -> None:
    """Five processes record 20 jobs each about the same three providers at once; with the
    clock standing still nothing decays, so every count must be exact."""
    ReputationLedger(store_target).close()
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(5)
    procs = [ctx.Process(target=_writer, args=(store_target, i, 20, start)) for i in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 5
    ledger = ReputationLedger(store_target, customer="me", clock=lambda: 1000.0)
    recs = {p: ledger.get(p) for p in PROVIDERS}
    assert all(r is not None and r.jobs == 100 for r in recs.values())
    total = {
        kind: sum(getattr(r, kind) for r in recs.values() if r is not None)
        for kind in ("agreed", "dissented", "timeouts", "results", "paid_msats")
    }
    assert total == {
        "agreed": 100.0,
        "dissented": 100.0,
        "timeouts": 100.0,
        "results": 200.0,
        "paid_msats": 100_000,
    }
    ledger.close()


def test_the_store_computes_what_the_record_arithmetic_says(store_target: str) -> None:
    """Records written through the store (decay between jobs, averages) are the ones
    ProviderRecord.updated gives, on either database."""
    now = [1000.0]
    ledger = ReputationLedger(store_target, customer="me", clock=lambda: now[0], half_life_s=60)
    expected = ProviderRecord("p", decayed_at=now[0])
    for step, obs in enumerate(
        [
            Observation("p", "agreed", 120.0, 2000, 2000),
            Observation("p", "dissented", 300.0, 2500),
            Observation("p", "beaten", 900.0),
            Observation("p", "error"),
        ]
    ):
        now[0] = 1000.0 + 45 * step
        expected = expected.updated(obs, now[0], 60)
        assert ledger.record([obs]) == [expected]
    reopened = ReputationLedger(store_target, customer="me", clock=lambda: now[0], half_life_s=60)
    assert reopened.get("p") == expected
    reopened.close()
    ledger.close()


def test_a_shared_ledger_reads_what_other_processes_wrote(pg_url: str) -> None:
    mine = ReputationLedger(pg_url, customer="me", clock=lambda: 1000.0)
    theirs = ReputationLedger(pg_url, customer="me", clock=lambda: 1000.0)
    assert mine.shared and "p" not in mine
    theirs.record([Observation("p", "agreed", 100.0)])
    (rec,) = mine.record([Observation("p", "agreed", 50.0)])  # a write reads the row as it is
    assert rec.jobs == 2 and rec.agreed == 2
    theirs.record([Observation("q", "error")])
    version = mine.version
    mine.refresh()
    assert "q" in mine and mine.version > version
    assert len(mine) == 2 and mine.customers() == ["me"]
    mine.close()
    theirs.close()


def test_flags_come_back_in_the_order_they_were_written(store_target: str) -> None:
    ledger = ReputationLedger(store_target, customer="me", clock=lambda: 5.0)
    flags = [
        DeterminismFlag(p, "m", "sha256:" + "ab" * 32, "llama.cpp", ("x", "y")) for p in "zbqa"
    ]
    assert ledger.record_flags(flags) == 4
    assert ledger.flags() == flags
    assert ledger.flags("q") == [flags[2]]
    assert ledger.reset() == 0  # flags stay; records go
    ledger.close()


def test_a_v1_reputation_file_opens_unchanged(tmp_path: Path) -> None:
    path = v1_file("reputation", tmp_path / "reputation.sqlite")
    before = tables(path)
    ledger = ReputationLedger(path, customer="me", clock=lambda: 1_700_003_600.0)
    assert {k: v for k, v in tables(path).items() if k != "schema_migrations"} == before
    assert len(ledger) == 3 and ledger.customers() == ["me"]
    p1 = ledger.get("p1")
    assert p1 is not None and (p1.jobs, p1.paid_msats, p1.latency_ms) == (2, 2000, 108.0)
    assert p1.agreed == pytest.approx(1.9979391883568343)
    (flag,) = ledger.flags()
    assert (flag.provider, flag.peers) == ("p2", ("p1",))
    (p3,) = ledger.record([Observation("p3", "agreed", 10.0)])
    assert (p3.jobs, p3.agreed, p3.timeouts) == (2, 1.0, 1.0)
    ledger.close()
    store = open_store(path, lock="reputation")
    assert recorded_version(store, "reputation") == 1
    store.close()
