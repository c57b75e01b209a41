"""SwarmClient end to end over real websockets against relay_mock, with scripted providers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from client.customer.quorum import numeric
from client.customer.swarm import JobCollector, Progress, SwarmClient, SwarmResult
from client.dvm.nip90 import build_result
from client.nostr.errors import PublishError, QuorumNotReached
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.scripted import ScriptedProvider, ScriptedRelay, dead_url

CUSTOMER = Keys.generate()


@contextlib.asynccontextmanager
async def providers(*made: ScriptedProvider) -> AsyncIterator[list[ScriptedProvider]]:
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        yield list(made)


async def test_quorum_with_honest_providers(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "Paris") for _ in range(3)]
    async with providers(*made) as ps, SwarmClient(CUSTOMER, [relay.url]) as swarm:
        result = await swarm.complete("Capital of France?", quorum=2, timeout=10, model="m1")
        assert result.reached and result.text == "Paris"
        assert len(result.agreeing) == 2
        assert set(result.agreeing) <= {p.pubkey for p in ps}
        assert result.dissenting == ()
        assert result.sats_paid == 0
        assert result.timings.quorum_ms is not None
        assert result.timings.total_ms >= result.timings.quorum_ms >= result.timings.published_ms
        for pk in result.agreeing:
            assert result.statuses[pk] == "agreed"
        # The request went out as we built it.
        req = ps[0].seen[0]
        assert req.prompt == "Capital of France?" and req.model == "m1"
        assert req.relays == (relay.url,) and req.expiration is not None
        # The job is cancelled once the quorum is reached.
        await asyncio.wait_for(ps[0].got_deletion.wait(), 5)
        assert ps[0].deletions[0].tag_value("e") == result.job_id


async def test_lying_minority_is_outvoted_and_reported(relay: Relay) -> None:
    liar = ScriptedProvider([relay.url], "Lyon")
    honest = [ScriptedProvider([relay.url], "Paris", gate=liar.answered) for _ in range(2)]
    async with providers(liar, *honest), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        result = await swarm.complete("Capital of France?", quorum=2, timeout=10)
        assert result.text == "Paris"
        assert set(result.agreeing) == {p.pubkey for p in honest}
        assert result.dissenting == (liar.pubkey,)
        assert result.statuses[liar.pubkey] == "dissented"
        assert len(result.results) == 3


async def test_normalized_comparison_is_the_default(relay: Relay) -> None:
    a = ScriptedProvider([relay.url], "Paris.")
    b = ScriptedProvider([relay.url], "  paris", gate=a.answered)
    async with providers(a, b), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        result = await swarm.complete("?", quorum=2, timeout=10)
        assert result.text == "Paris."


async def test_custom_comparator(relay: Relay) -> None:
    a = ScriptedProvider([relay.url], "3.14159")
    b = ScriptedProvider([relay.url], "The answer is 3.1416", gate=a.answered)
    async with providers(a, b), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        result = await swarm.complete("pi?", quorum=2, timeout=10, comparator=numeric(1e-3))
        assert result.text == "3.14159" and result.decision.comparator == "numeric"


async def test_timeout_raises_with_what_was_received(relay: Relay) -> None:
    a = ScriptedProvider([relay.url], "Paris")
    silent = ScriptedProvider([relay.url], lambda r: None)
    async with providers(a, silent), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        with pytest.raises(QuorumNotReached) as exc:
            await swarm.complete("?", quorum=2, timeout=0.5)
        received = exc.value.received
        assert isinstance(received, SwarmResult) and not received.reached
        assert [r.content for r in received.results] == ["Paris"]
        assert received.agreeing == ()
        assert exc.value.decision.leading == 1
        assert "timed out" in str(exc.value)
        assert received.statuses[silent.pubkey] == "processing"


async def test_gives_up_early_when_agreement_is_impossible(relay: Relay) -> None:
    a = ScriptedProvider([relay.url], "yes")
    b = ScriptedProvider([relay.url], "no")
    c = ScriptedProvider([relay.url], "maybe", fail=True)
    async with providers(a, b, c), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        with pytest.raises(QuorumNotReached) as exc:
            await swarm.complete("?", quorum=2, timeout=30, targets=[a.pubkey, b.pubkey, c.pubkey])
        d = exc.value.decision
        assert d.exhausted and not d.reached
        assert exc.value.received.statuses[c.pubkey] == "error"
        assert "no agreement possible" in str(exc.value)


async def test_progress_callback_sees_each_step(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "ok") for _ in range(2)]
    steps: list[Progress] = []
    async with providers(*made), SwarmClient(CUSTOMER, [relay.url]) as swarm:
        await swarm.complete("?", quorum=2, timeout=10, on_progress=steps.append)
    kinds = [s.kind for s in steps]
    assert kinds[0] == "published" and kinds[-1] == "reached"
    assert kinds.count("result") == 2 and "feedback" in kinds
    assert {s.provider for s in steps if s.kind == "result"} == {p.pubkey for p in made}


async def test_broken_progress_callback_does_not_lose_the_job(relay: Relay) -> None:
    def boom(p: Progress) -> None:
        raise RuntimeError("display broke")

    async with (
        providers(ScriptedProvider([relay.url], "ok")),
        SwarmClient(CUSTOMER, [relay.url]) as swarm,
    ):
        result = await swarm.complete("?", quorum=1, timeout=10, on_progress=boom)
        assert result.text == "ok"


async def test_invoices_and_quotes_are_kept_and_pay_hook_is_called(relay: Relay) -> None:
    made = [
        ScriptedProvider([relay.url], "ok", amount_msats=3000, bolt11=f"lnbcrt30n1fake{i}")
        for i in range(2)
    ]
    calls: list[tuple[SwarmResult, int | None]] = []

    async def pay(result: SwarmResult, max_sats: int | None, gate: object = None) -> int:
        calls.append((result, max_sats))
        return sum(result.invoices[p].msats for p in result.agreeing)

    async with providers(*made), SwarmClient(CUSTOMER, [relay.url], pay=pay) as swarm:
        result = await swarm.complete("?", quorum=2, timeout=10, max_sats=10)
        assert result.sats_paid == 6 and result.msats_paid == 6000
        assert len(calls) == 1 and calls[0][1] == 10
        seen = calls[0][0]
        assert {p: a.bolt11 for p, a in seen.invoices.items()} == {
            p.pubkey: f"lnbcrt30n1fake{i}" for i, p in enumerate(made)
        }
        assert seen.quotes == {p.pubkey: 3000 for p in made}
        # The bid is the budget split over the quorum.
        assert made[0].seen[0].bid_msats == 5000


async def test_bad_inputs_are_rejected_and_counted(relay: Relay) -> None:
    me = CUSTOMER.public_key
    honest_keys = [Keys.generate(), Keys.generate()]
    bad = Keys.generate()
    other = Keys.generate()
    done_bad = asyncio.Event()
    sent_bad: list[str] = []

    def evil_req(sub_id: str, filters: list[dict[str, object]]) -> list[str]:
        """A relay that forwards what a correct relay would refuse."""
        job_id = filters[0]["#e"][0]  # type: ignore[index]
        real = Event.create(bad, 6050, "Lyon", [["e", job_id], ["p", me]])
        forged = {**real.to_dict(), "content": "Paris"}
        unsigned = {**real.to_dict(), "sig": "0" * 128}
        other_job = Event.create(bad, 6050, "Paris", [["e", "f" * 64], ["p", me]])
        sent_bad.append(job_id)
        return [
            json.dumps(["EVENT", sub_id, forged]),
            json.dumps(["EVENT", sub_id, unsigned]),
            json.dumps(["EVENT", sub_id, other_job.to_dict()]),
        ]

    async def misbehave(job_id: str) -> None:
        """A provider-shaped attacker publishing through the real relay."""
        from client.net.pool import RelayPool

        def res(
            keys: Keys, content: str, tags: list[list[str]], created_at: int | None = None
        ) -> Event:
            return Event.create(keys, 6050, content, tags, created_at=created_at)

        evs = [
            res(bad, "Lyon", [["e", job_id], ["p", other.public_key]]),  # other customer
            res(bad, "Lyon", [["e", job_id]]),  # no customer at all
            res(bad, "x" * 2000, [["e", job_id], ["p", me]]),  # oversized (cap 1000 below)
            res(bad, "Lyon", [["e", job_id], ["p", me], ["amount", "lots"]]),  # malformed
            res(bad, "Lyon", [["e", job_id], ["p", me]], created_at=1_000_000),  # stale
            res(bad, "Lyon", [["e", job_id], ["p", me], ["request", "{}"]]),  # bad request tag
            Event.create(bad, 7000, "", [["e", job_id], ["p", me]]),  # feedback w/o status
            res(bad, "Lyon", [["e", job_id], ["p", me]]),  # a real (lying) vote ...
            res(bad, "Paris", [["e", job_id], ["p", me]], created_at=2_000_000_000),  # ... twice
        ]
        async with RelayPool([relay.url]) as pool:
            for ev in evs:
                await pool.publish(ev)
            # A replay: the same event again (the relay answers duplicate; nothing new arrives).
            await pool.publish(evs[-2])
        done_bad.set()

    async def answer_after_bad(keys: Keys, job_id: str) -> None:
        await done_bad.wait()
        from client.dvm.nip90 import parse_request
        from client.net.pool import RelayPool

        async with RelayPool([relay.url]) as pool:
            (req_ev,) = relay.stored_events(Filter(ids=[job_id]))
            req = parse_request(req_ev)
            await pool.publish(build_result(keys, req, "Paris"))

    steps: list[Progress] = []

    def watch(p: Progress) -> None:
        steps.append(p)
        if p.kind == "published":
            job_id = p.detail
            asyncio.get_running_loop().create_task(misbehave(job_id))
            for k in honest_keys:
                asyncio.get_running_loop().create_task(answer_after_bad(k, job_id))

    async with ScriptedRelay(evil_req) as evil, SwarmClient(CUSTOMER, [relay.url, evil.url]) as s:
        result = await s.complete(
            "Capital of France?", quorum=2, timeout=10, max_result_bytes=1000, on_progress=watch
        )
    assert result.text == "Paris"
    assert set(result.agreeing) == {k.public_key for k in honest_keys}
    assert result.dissenting == (bad.public_key,)  # its one counted vote was "Lyon"
    assert sent_bad  # the evil relay did its part
    rej = result.rejected
    assert rej["forged"] == 3  # tampered, unsigned, and the other job's result (filter)
    assert rej["other_customer"] == 2
    assert rej["oversized"] == 1
    assert rej["malformed"] == 2
    assert rej["stale"] == 1
    assert rej["bad_request_tag"] == 1
    assert rej["second_vote"] == 1
    assert result.providers[bad.public_key].rejected >= 1
    assert any(s.kind == "rejected" and s.status == "stale" for s in steps)


async def test_relay_restart_mid_job_loses_nothing(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], lambda r: None) for _ in range(2)]
    async with providers(*made) as ps, SwarmClient(CUSTOMER, [relay.url]) as swarm:
        conn = swarm.pool.relays[0]
        # Fast reconnects for the test.
        conn.backoff_min, conn.backoff_max = 0.05, 0.1
        task = asyncio.create_task(swarm.complete("Capital?", quorum=2, timeout=20))
        for p in ps:
            await asyncio.wait_for(p.saw.wait(), 5)
        await relay.stop()
        await asyncio.wait_for(conn.disconnected.wait(), 5)
        # The providers answer while the customer is away: only the stored copies remain.
        for p in ps:
            assert relay.inject(build_result(p.keys, p.seen[0], "Paris"))[0]
        await relay.start()
        result = await asyncio.wait_for(task, 20)
        assert result.text == "Paris" and len(result.agreeing) == 2
        assert conn.connects >= 2


async def test_one_dead_relay_of_two(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "Paris") for _ in range(2)]
    dead = dead_url()
    async with (
        providers(*made),
        SwarmClient(CUSTOMER, [dead, relay.url], connect_timeout=1.0) as swarm,
    ):
        result = await swarm.complete("?", quorum=2, timeout=10)
        assert result.text == "Paris"
        assert swarm.pool.status()[dead].state != "connected"


async def test_no_relay_at_all_is_a_publish_error() -> None:
    async with SwarmClient(
        CUSTOMER, [dead_url()], connect_timeout=0.5, publish_timeout=0.3
    ) as swarm:
        with pytest.raises(PublishError):
            await swarm.complete("?", quorum=1, timeout=1)


@pytest.mark.parametrize("scheme", ["nip44", "nip04"])
async def test_encrypted_job_end_to_end(relay: Relay, scheme: str) -> None:
    made = [ScriptedProvider([relay.url], lambda r: f"echo {r.prompt}") for _ in range(3)]
    bystander = ScriptedProvider([relay.url], "should not see it")
    async with providers(*made, bystander) as ps, SwarmClient(CUSTOMER, [relay.url]) as swarm:
        targets = [p.pubkey for p in ps[:3]]
        result = await swarm.complete(
            "secret prompt", quorum=3, timeout=10, targets=targets, encrypt=scheme
        )
        assert result.text == "echo secret prompt" and len(result.agreeing) == 3
        assert all(r.encrypted for r in result.results)
        assert result.decision.votes[0].protection == "sealed"
        assert len(result.job.requests) == 3
        # Nothing on the relay shows the prompt or the answers in clear.
        for ev in relay.stored_events(Filter(kinds=[5050, 6050])):
            assert "secret" not in ev.content and "echo" not in ev.content
            assert not ev.tags_named("i") and ["encrypted"] in ev.tags
        assert bystander.seen == []
        assert all(p.seen[0].encryption == scheme for p in ps[:3])


async def test_inbox_mode_runs_many_jobs_on_one_subscription(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], lambda r: r.prompt.upper()) for _ in range(2)]
    async with providers(*made), SwarmClient(CUSTOMER, [relay.url], inbox=True) as swarm:
        prompts = [f"job {i}" for i in range(8)]
        results = await asyncio.gather(*(swarm.complete(p, quorum=2, timeout=10) for p in prompts))
        assert [r.text for r in results] == [p.upper() for p in prompts]
        assert len(swarm.pool.relays[0].subs) == 1  # the inbox only


def test_collector_is_pure() -> None:
    """The collector needs no sockets: events and times in, a decision out."""
    from client.customer.quorum import Quorum
    from client.dvm.nip90 import JobSpec, build_job, parse_request

    job = build_job(CUSTOMER, JobSpec(prompt="2+2?"))
    req = parse_request(job.requests[0])
    ks = [Keys.generate() for _ in range(3)]
    c = JobCollector(job, CUSTOMER, Quorum(2, 3), started=100.0)
    first = build_result(ks[0], req, "4")
    assert not c.offer(first, 100.1)
    assert not c.offer(first, 100.12)  # the very same event again: a duplicate
    assert not c.offer(build_result(ks[0], req, "5"), 100.15)  # a second vote
    assert not c.offer(build_result(ks[1], req, "5"), 100.2)
    assert c.offer(build_result(ks[2], req, "4"), 100.3)
    out = c.outcome(100.4)
    assert out.text == "4" and out.agreeing == (ks[0].public_key, ks[2].public_key)
    assert out.dissenting == (ks[1].public_key,)
    assert out.rejected == {"duplicate": 1, "second_vote": 1}
    assert out.timings.first_result_ms == pytest.approx(100.0)
    assert out.timings.quorum_ms == pytest.approx(300.0)


async def test_relay_restart_switch_while_providers_work(relay: Relay) -> None:
    go = asyncio.Event()
    made = [ScriptedProvider([relay.url], "Paris", gate=go) for _ in range(3)]
    async with providers(*made) as ps, SwarmClient(CUSTOMER, [relay.url]) as swarm:
        for p in [swarm.pool, *(p.pool for p in ps)]:
            assert p is not None
            for conn in p.relays:
                conn.backoff_min, conn.backoff_max = 0.05, 0.1
        task = asyncio.create_task(swarm.complete("Capital?", quorum=2, timeout=20))
        for p in ps:
            await asyncio.wait_for(p.saw.wait(), 5)
        await relay.restart()  # the fault switch: every connection dropped, same port
        go.set()  # providers publish now; their pools wait for the reconnect
        result = await asyncio.wait_for(task, 20)
        assert result.text == "Paris" and len(result.agreeing) == 2
        assert swarm.pool.relays[0].connects >= 2


async def test_flapping_connections_still_reach_quorum(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "Paris") for _ in range(3)]
    async with providers(*made) as ps, SwarmClient(CUSTOMER, [relay.url]) as swarm:
        for p in [swarm.pool, *(p.pool for p in ps)]:
            assert p is not None
            for conn in p.relays:
                conn.backoff_min, conn.backoff_max = 0.02, 0.05
        relay.faults.disconnect_after = 3  # every connection is cut after 3 messages
        result = await swarm.complete("Capital?", quorum=2, timeout=20)
        assert result.text == "Paris"
        assert relay.stats().disconnects_forced >= 1
