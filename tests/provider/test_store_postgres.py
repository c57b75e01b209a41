"""The provider's job store on PostgreSQL: a fleet's claim is exactly once, leases hand a dead
node's jobs to exactly one other node, a node that lost a job can no longer write about it or
record its result; provider.toml's [state] table (url, lease_s)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from provider.errors import StoreError
from provider.store import JobStore
from router.clock import ManualClock
from tests.support.servers import Postgres


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


def test_nodes_starting_at_once_create_the_schema_once(postgres: Postgres) -> None:
    """A fleet's nodes start together: their schema steps must not race (PostgreSQL's CREATE
    TABLE IF NOT EXISTS alone fails one of them with a unique violation)."""
    for _ in range(4):
        url = postgres.fresh_database()
        start = threading.Barrier(6)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=open_store, args=(url, start, errors)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []


def open_store(url: str, start: threading.Barrier, errors: list[BaseException]) -> None:
    start.wait()
    try:
        JobStore(url).close()
    except BaseException as exc:
        errors.append(exc)


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
    taken = b.take_over("j1")
    assert taken is not None and taken.owner == "b" and taken.request == '{"id": "j1"}'
    assert c.take_over("j1") is None
    assert a.renew(["j1"]) == set()  # a, back from the dead: the job is no longer its own
    b.update("j1", "done", amount_msats=5000, payment_hash="h")
    clock.advance(60)
    assert c.orphans() == [] and not c.take_over("j1")  # finished jobs are never taken over
    e = c.earnings()  # every node sees the fleet's earnings
    assert (e.jobs_done, e.billed_msats) == (1, 5000)
    for s in (a, b, c):
        s.close()


def test_a_node_that_lost_its_job_cannot_record_a_result(pg_url: str) -> None:
    clock = ManualClock(1000.0)
    stalled, taker = (JobStore(pg_url, owner=o, clock=clock, lease_s=10) for o in ("s", "t"))
    assert stalled.claim("j1", "cust", 1, request="{}")
    assert stalled.claim("j2", "cust", 1, request="{}")
    assert stalled.record_result("j2", '{"id": "first"}', "publishing")
    clock.advance(11)  # the stalled node's leases run out
    assert sorted(r.id for r in taker.orphans()) == ["j1", "j2"]
    assert taker.take_over("j1") and taker.take_over("j2")
    # The stalled node wakes: nothing it writes about the jobs counts.
    assert not stalled.record_result("j1", '{"id": "late"}', "publishing")
    assert not stalled.update("j1", "failed", reason="timeout")
    # The taker finds j2's result recorded (it publishes that one) and records j1's once.
    assert taker.get("j2").result_event == '{"id": "first"}'  # type: ignore[union-attr]
    assert taker.record_result("j1", '{"id": "taker"}', "publishing")
    assert not taker.record_result("j1", '{"id": "twice"}', "publishing")
    assert stalled.get("j1").result_event == '{"id": "taker"}'  # type: ignore[union-attr]
    for s in (stalled, taker):
        s.close()
    with JobStore(pg_url) as reopened:  # migration 2 again: nothing changes
        assert reopened.get("j1").state == "publishing"  # type: ignore[union-attr]


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
    # The lease: 30 s unless set, for a fleet only, within [1, 3600] s.
    assert parse_config(base, env={}).state.lease_s == 30.0
    fleet = {"url": "postgresql://u@127.0.0.1/p", "lease_s": 6}
    assert parse_config({**base, "state": fleet}, env={}).state.lease_s == 6.0
    with pytest.raises(ConfigError, match=r"state: lease_s applies to a fleet"):
        parse_config({**base, "state": {"lease_s": 6}}, env={})
    for bad in (0.5, 0, 7200, "soon"):
        with pytest.raises(ConfigError, match=r"state\.lease_s"):
            parse_config({**base, "state": {**fleet, "lease_s": bad}}, env={})
    env = {
        "SWARM_PROVIDER_STATE_URL": "postgresql://env@127.0.0.1/p",
        "SWARM_PROVIDER_STATE_LEASE_S": "9",
    }
    cfg = parse_config(base, env=env)
    assert (cfg.state.url, cfg.state.lease_s) == ("postgresql://env@127.0.0.1/p", 9.0)


def test_the_state_table_is_the_gateways_schema(tmp_path: Path) -> None:
    """provider.toml's [state] and config.yaml's state: are one schema: the same URLs mean the
    same store; only what a node has no use for (Redis) is refused, by name."""
    from client.nostr.keys import Keys
    from provider.config import parse_config
    from provider.errors import ConfigError
    from router.gateway.config import StateConfig as GatewayState

    base = {
        "node": {"secret_key": Keys.generate().secret_hex, "relays": ["ws://127.0.0.1:1"]},
        "backends": [{"type": "mock"}],
    }
    for url in ("postgresql://u@127.0.0.1/p", f"sqlite:///{tmp_path}/jobs.sqlite"):
        node = parse_config({**base, "state": {"url": url}}, env={})
        gateway = GatewayState(url=url)
        assert node.store_target == gateway.target()
    # A relative SQLite path is the config file's neighbour, as node.store is.
    cfg = parse_config({**base, "state": {"url": "sqlite:///jobs.sqlite"}}, env={}, base=tmp_path)
    assert cfg.store_target == str(tmp_path / "jobs.sqlite")
    # One store, named once.
    twice = {**base, "node": {**base["node"], "store": "a.sqlite"}, "state": {"url": "b.sqlite"}}
    with pytest.raises(ConfigError, match="named twice"):
        parse_config(twice, env={})
    with pytest.raises(ConfigError, match=r"state\.redis: a provider node keeps nothing in Redis"):
        parse_config({**base, "state": {"redis": "redis://127.0.0.1:6379/0"}}, env={})
    with pytest.raises(ConfigError, match=r"state\.bogus"):
        parse_config({**base, "state": {"bogus": 1}}, env={})
    # A lease needs a store other nodes share.
    with pytest.raises(ConfigError, match="lease_s applies to a fleet"):
        parse_config({**base, "state": {"url": "sqlite:///x.sqlite", "lease_s": 6}}, env={})
