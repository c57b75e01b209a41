"""The provider's job store on PostgreSQL: a fleet's claim is exactly once, leases hand a dead
node's jobs to exactly one other node."""

from __future__ import annotations

import threading

import pytest

from provider.errors import StoreError
from provider.store import JobStore
from router.clock import ManualClock


def test_claim_is_once_across_nodes_racing(pg_url: str) -> None:
    stores = [JobStore(pg_url, owner=f"n{i}") for i in range(3)]
    won: dict[str, list[str]] = {}
    lock = threading.Lock()

    def race(store: JobStore) -> None:
        mine = [f"job{j}" for j in range(200) if store.claim(f"job{j}", "cust", 1)]
        with lock:
            won[store.owner] = mine

    # Three connections (one per thread) insert the same 200 ids at once.
    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [j for mine in won.values() for j in mine]
    assert sorted(claimed) == sorted(f"job{j}" for j in range(200))  # each once, none lost
    for s in stores:
        s.close()


def test_expired_lease_is_taken_over_by_one_node(pg_url: str) -> None:
    clock = ManualClock(1000.0)
    a, b, c = (JobStore(pg_url, owner=o, clock=clock, lease_s=10) for o in "abc")
    assert a.claim("j1", "cust", 1, request='{"id": "j1"}')
    clock.advance(8)
    assert a.renew(["j1"]) == {"j1"}
    clock.advance(8)  # 16 s after the claim, but renewed at 8: still a's
    assert b.orphans() == [] and not b.take_over("j1")
    clock.advance(5)  # a stopped renewing (died)
    assert [r.id for r in b.orphans()] == ["j1"]
    assert b.orphans()[0].request == '{"id": "j1"}'
    assert [b.take_over("j1"), c.take_over("j1")] == [True, False]
    assert a.renew(["j1"]) == set()  # a, back from the dead: the job is no longer its own
    b.update("j1", "done", amount_msats=5000, payment_hash="h")
    clock.advance(60)
    assert c.orphans() == [] and not c.take_over("j1")  # finished jobs are never taken over
    e = c.earnings()  # every node sees the fleet's earnings
    assert (e.jobs_done, e.billed_msats) == (1, 5000)
    for s in (a, b, c):
        s.close()


def test_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open job store") as err:
        JobStore("postgresql://u:secret@127.0.0.1:1/x")
    assert "secret" not in str(err.value) and "127.0.0.1:1/x" in str(err.value)


def test_bad_lease_is_refused() -> None:
    with pytest.raises(StoreError, match="lease_s"):
        JobStore(":memory:", lease_s=0)


def test_state_table_in_provider_toml() -> None:
    from client.nostr.keys import Keys
    from provider.config import parse_config
    from provider.errors import ConfigError

    base = {
        "node": {"secret_key": Keys.generate().secret_hex, "relays": ["ws://127.0.0.1:1"]},
        "backends": [{"type": "mock"}],
    }
    cfg = parse_config({**base, "state": {"url": "postgresql://u@127.0.0.1/p"}}, env={})
    assert cfg.state.url == "postgresql://u@127.0.0.1/p"
    assert parse_config(base, env={}).state.url is None  # SQLite by default
    with pytest.raises(ConfigError, match="postgresql://"):
        parse_config({**base, "state": {"url": "mysql://x"}}, env={})
