"""What a request reads of the spend book does not grow with the book's history: holds and
payments are kept for the record, so a key that served a million requests must reserve as
cheaply as a new one."""

from __future__ import annotations

from pathlib import Path

from client.storage import SqliteStore
from router.spend import SpendBook


def _steps(book: SpendBook, account: str) -> int:
    """SQLite virtual-machine steps (in hundreds) of one status read and one reservation: the
    work the statements do, whatever the machine's speed."""
    store = book._db
    assert isinstance(store, SqliteStore)
    count = 0

    def step() -> int:
        nonlocal count
        count += 1
        return 0

    store.connection.set_progress_handler(step, 100)
    try:
        book.status(account)
        book.reserve([account], msats=1_000).close()
    finally:
        store.connection.set_progress_handler(None, 0)
    return count


def _served(book: SpendBook, account: str, n: int) -> None:
    for i in range(n):
        with book.reserve([account], msats=1_000, who=account, model="m") as hold:
            assert hold.authorize(f"{account}-{i}", 500)
            hold.outcome(f"{account}-{i}", "paid")


def test_a_key_with_a_long_history_reserves_as_cheaply_as_a_new_one(tmp_path: Path) -> None:
    book = SpendBook(tmp_path / "gateway.sqlite")
    book.ensure("key:new")
    book.ensure("key:busy")
    _served(book, "key:new", 10)
    _served(book, "key:busy", 3_000)
    new, busy = _steps(book, "key:new"), _steps(book, "key:busy")
    # Reading every past hold of the busy key would cost about 300 times the new key's steps.
    assert busy <= 2 * new + 2, (new, busy)
    assert book.status("key:busy").spent_msats == 3_000 * 500 and book.audit() == []
    book.close()
