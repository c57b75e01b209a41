"""The spend book on PostgreSQL: the same accounting as on SQLite, shared by several books (as
several gateway processes would share it), with no overspend under concurrent reservations and
one authorization per invoice across all of them."""

from __future__ import annotations

import threading

import pytest

from router.spend import OverBudget, SpendBook
from router.state_db import StateUnavailable
from tests.support.servers import Postgres


def test_holds_payments_and_budgets_on_postgres(pg_url: str) -> None:
    book = SpendBook(pg_url)
    assert book.shared
    book.ensure("key:a", budget_msats=25_000)
    first = book.reserve(["key:a"], msats=20_000)
    with pytest.raises(OverBudget):
        book.reserve(["key:a"], msats=6_000)
    assert first.authorize("h1", 6_000) and first.authorize("h1", 6_000)  # idempotent
    assert not first.authorize("h2", 15_000)  # more than the hold has left
    first.outcome("h1", "paid")
    assert first.authorize("h3", 4_000)  # unknown outcome: stays pending
    first.close()
    st = book.status("key:a")
    assert (st.spent_msats, st.pending_msats, st.reserved_msats) == (6_000, 4_000, 0)
    assert book.resolve("h3", True) and not book.resolve("h3", True)
    assert book.status("key:a").spent_msats == 10_000
    assert book.audit() == []
    book.close()


def test_many_books_on_one_database_never_overspend(pg_url: str) -> None:
    """Eight books (eight gateways) reserve and pay against one 100-sat budget at once."""
    SpendBook(pg_url).ensure("key:shared", budget_msats=100_000)
    books = [SpendBook(pg_url) for _ in range(8)]
    paid: list[str] = []
    lock = threading.Lock()

    def work(i: int, book: SpendBook) -> None:
        for j in range(10):
            try:
                hold = book.reserve(["key:shared"], msats=4_000)
            except OverBudget:
                continue
            h = f"inv-{i}-{j}"
            # Every book also tries one invoice another book authorized: only one may pay it.
            for candidate in (h, f"inv-{(i + 1) % 8}-{j}"):
                if hold.authorize(candidate, 4_000):
                    hold.outcome(candidate, "paid")
                    with lock:
                        paid.append(candidate)
                    break
            hold.close()

    threads = [threading.Thread(target=work, args=(i, b)) for i, b in enumerate(books)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = books[0].status("key:shared")
    assert st.spent_msats == 4_000 * len(paid) <= 100_000
    assert len(paid) == len(set(paid))  # no invoice authorized twice
    assert st.reserved_msats == 0 and books[0].audit() == []
    for b in books:
        b.close()


def test_postgres_away_is_a_clear_error_and_recovers(postgres: Postgres, pg_url: str) -> None:
    book = SpendBook(pg_url)
    book.ensure("key:a", budget_msats=10_000)
    postgres.kill()
    try:
        with pytest.raises(StateUnavailable):
            book.reserve(["key:a"], msats=1_000)
    finally:
        postgres.start()
    with book.reserve(["key:a"], msats=1_000) as hold:  # reconnected by itself
        assert hold.authorize("h", 1_000)
    book.close()
