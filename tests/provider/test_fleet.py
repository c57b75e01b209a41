"""Three provider nodes under one key on one PostgreSQL job store: every job is taken, answered
and recorded by exactly one of them."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack

from client.dvm.nip90 import JobSpec
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from provider.limits import Limits
from provider.node import ProviderNode
from provider.store import JobStore
from relay_mock import Relay
from tests.support.customer import Customer, Replies
from tests.support.nodes import mock_backend

JOBS = 500


async def test_three_nodes_one_key_answer_each_job_once(relay: Relay, pg_url: str) -> None:
    keys = Keys.generate()
    limits = Limits(max_concurrent=8, queue_size=JOBS, rate_per_minute=None)
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                ProviderNode(
                    keys,
                    [relay.url],
                    mock_backend(),
                    limits=limits,
                    store=pg_url,
                    announce=False,
                    connect_timeout=3.0,
                )
            )
            for _ in range(3)
        ]
        customer = await stack.enter_async_context(Customer([relay.url]))
        jobs = [
            await customer.submit(JobSpec(prompt=f"p{i}", model="m1", max_tokens=20))
            for i in range(JOBS)
        ]
        ids = {j.id for j in jobs}

        def results() -> list[str]:
            return [
                e.tag_value("e") or ""
                for e in relay.stored_events(Filter(kinds=[6050]))
                if e.tag_value("e") in ids
            ]

        await customer.wait_for(lambda: all(customer.replies(j).results for j in jobs), within=60)
        await customer.sync()
        per_job = Counter(results())
        assert set(per_job) == ids and set(per_job.values()) == {1}
        # Each node did a share, and together exactly the jobs there were.
        done = [n.stats.completed for n in nodes]
        assert sum(done) == JOBS
        assert sum(n.stats.duplicates for n in nodes) == 2 * (JOBS + 1)  # and the sync probe
    with JobStore(pg_url) as store:
        assert store.earnings().jobs_done == JOBS
        rows = [r for r in store.jobs(limit=JOBS + 10) if r.id in ids]
        assert len(rows) == JOBS and {r.state for r in rows} == {"done"}


async def test_jobs_of_a_dead_node_are_finished_once_by_the_others(
    relay: Relay, pg_url: str
) -> None:
    keys = Keys.generate()
    async with Customer([relay.url]) as customer:
        # A node claimed 20 jobs and died before working them: its rows stay open, unrenewed.
        dead = JobStore(pg_url, owner="dead", lease_s=0.2)
        orphans = [customer.build(JobSpec(prompt=f"o{i}", model="m1")) for i in range(20)]
        for job in orphans:
            ev = job.requests[0]
            customer.jobs[ev.id] = Replies(job)
            assert dead.claim(ev.id, ev.pubkey, ev.created_at, request=ev.to_json())
        dead.close()
        async with AsyncExitStack() as stack:
            nodes = [
                await stack.enter_async_context(
                    ProviderNode(
                        keys,
                        [relay.url],
                        mock_backend(),
                        store=JobStore(pg_url, lease_s=0.2),
                        limits=Limits(rate_per_minute=None),
                        announce=False,
                        connect_timeout=3.0,
                    )
                )
                for _ in range(2)
            ]
            await customer.wait_for(
                lambda: all(customer.replies(j.id).results for j in orphans), within=30
            )
        ids = {j.id for j in orphans}
        per_job = Counter(e.tag_value("e") for e in relay.stored_events(Filter(kinds=[6050])))
        assert all(per_job[i] == 1 for i in ids)
        assert sum(n.stats.completed for n in nodes) == len(ids)
