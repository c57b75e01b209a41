"""Our customer side against a real nostrdvm DVM (PyPI ``nostr-dvm``, its GenericDVM task and
DVM engine, run by ``nostrdvm_dvm.py`` in nostrdvm's own virtual environment).

Before the fixes: its kind-11998 heartbeat meant nothing to us, so a DVM announced long ago
was never alive (hidden by ``swarm providers``, never picked by ``--policy``); its feedback to
an encrypted job carries every tag (the status too) encrypted in ``content``, which we counted
as malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from client.cli import main
from client.customer.directory import DirectoryWatcher, ProviderDirectory
from client.customer.selection import Selector
from client.dvm.nip90 import (
    JobFeedback,
    JobResult,
    JobSpec,
    build_job,
    parse_feedback,
    parse_result,
)
from client.net.pool import RelayPool
from client.nostr.errors import JobRejected
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.interop.peers import NodePeer, require_nostrdvm, run_nostrdvm

DRIVER = Path(__file__).with_name("nostrdvm_dvm.py")
WAIT = 30.0
PING_EVERY = 2.0  # a ping unanswered this long was dropped: send another


@pytest.fixture(autouse=True)
def _installed() -> None:
    require_nostrdvm()


@contextlib.asynccontextmanager
async def nostrdvm(
    relay: Relay,
    tmp_path: Path,
    *,
    cost: int = 0,
    announce: bool = True,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Keys, NodePeer]]:
    """A nostrdvm DVM on the relay, returned once it answers a ping (kind 7007) with a pong.

    Its heartbeat alone is not enough: nostrdvm beats, then subscribes, then starts reading its
    notification stream, and an event the relay hands it in between is dropped. A pong proves
    the reader runs; a ping lost in that window is sent again. ``env``: see nostrdvm_dvm.py
    (LNbits for its invoices, a fixed answer)."""
    keys = Keys.generate()
    async with RelayPool([relay.url]) as pool:
        beats = pool.subscribe(Filter(kinds=[11998], authors=[keys.public_key]))
        await beats.wait_eose()
        async with run_nostrdvm(
            DRIVER,
            relay.url,
            keys.secret_hex,
            str(cost),
            "announce" if announce else "quiet",
            cwd=tmp_path,
            env=env,
        ) as dvm:
            await dvm.expect("started", WAIT)
            await asyncio.wait_for(anext(aiter(beats)), WAIT)
            beats.close()
            await asyncio.wait_for(_until_pong(pool, keys), WAIT)
            yield keys, dvm


async def _until_pong(pool: RelayPool, dvm: Keys) -> None:
    me = Keys.generate()
    pongs = pool.subscribe(
        Filter(kinds=[7000], authors=[dvm.public_key], tags={"p": [me.public_key]})
    )
    await pongs.wait_eose()
    try:
        while True:
            ping = Event.create(me, 7007, "", [["p", dvm.public_key]])
            await pool.publish(ping)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PING_EVERY):
                    async for event in pongs:
                        if event.tag_value("e") == ping.id and event.tag_value("status") == "pong":
                            return
    finally:
        pongs.close()


async def test_a_nostrdvm_dvm_announced_long_ago_is_alive_by_its_heartbeat(
    relay: Relay, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with nostrdvm(relay, tmp_path, announce=False) as (keys, _):
        # Its announcement from a day ago (as deployed DVMs announce once, then only beat).
        content = {"name": "nostrdvm interop", "supportsEncryption": True, "amount": "0"}
        old = Event.create(
            keys,
            31990,
            json.dumps(content),
            [["k", "5050"], ["d", "interop-dvm"]],
            created_at=int(time.time()) - 86_400,
        )
        assert relay.inject(old)[0]
        directory = ProviderDirectory()
        async with RelayPool([relay.url]) as pool, DirectoryWatcher(pool, directory) as watcher:
            await asyncio.wait_for(
                watcher.wait_for(
                    lambda d: (i := d.get(keys.public_key)) is not None and i.beat_at is not None
                ),
                WAIT,
            )
        info = directory.get(keys.public_key)
        assert info is not None and info.foreign
        assert info.status(time.time()) == "online" and info.last_seen >= old.created_at + 86_000
        assert info.encryption == ("nip44", "nip04")
        # Its beat says "until expiration" (nostrdvm: 300 s): past that it is stale, not alive.
        assert info.beat_until is not None and info.status(info.beat_until) == "stale"
        # Selectable: with nobody else around, the policy picks it.
        assert Selector(directory=directory, spare=0).select(1).targets == (keys.public_key,)
        # And `swarm providers` lists it (alive providers only, by default).
        argv = ["providers", "--relay", relay.url, "--json", "--timeout", "5"]
        assert await asyncio.to_thread(main, argv) == 0
        listed = json.loads(capsys.readouterr().out)
        rows = listed if isinstance(listed, list) else listed.get("providers", [])
        assert [r["pubkey"] for r in rows] == [keys.public_key]
        assert rows[0]["alive"] and rows[0]["foreign"]


async def _ask(
    relay: Relay, dvm: Keys, prompt: str, *, encrypt: bool
) -> tuple[list[JobFeedback], list[JobResult], list[str]]:
    """One job to the DVM with our nip90 builders; its replies parsed by our strict parsers."""
    me = Keys.generate()
    spec = JobSpec(
        prompt=prompt,
        targets=(dvm.public_key,),
        relays=(relay.url,),
        encryption="nip44" if encrypt else None,
    )
    job = build_job(me, spec)
    feedback: list[JobFeedback] = []
    results: list[JobResult] = []
    rejected: list[str] = []
    async with RelayPool([relay.url]) as pool:
        sub = pool.subscribe(Filter(kinds=[6050, 7000], tags={"e": list(job.ids)}))
        await sub.wait_eose()
        await pool.publish(job.requests[0])
        async with asyncio.timeout(WAIT):
            async for event in sub:
                try:
                    if event.kind == 7000:
                        feedback.append(parse_feedback(event, job, me))
                    else:
                        results.append(parse_result(event, job, me))
                except JobRejected as exc:
                    rejected.append(exc.reason)
                if results and feedback:  # nostrdvm: processing, then the result (no success)
                    break
    return feedback, results, rejected


async def test_nostrdvm_feedback_and_result_to_an_encrypted_job_are_read(
    relay: Relay, tmp_path: Path
) -> None:
    async with nostrdvm(relay, tmp_path) as (keys, _):
        feedback, results, rejected = await _ask(relay, keys, "hello", encrypt=True)
    assert rejected == []
    assert [f.status for f in feedback] == ["processing"]
    assert all(f.encrypted for f in feedback)
    # nostrdvm hides everything but encrypted/p/e/expiration: the status was sealed.
    assert all(f.event.tag_value("status") is None for f in feedback)
    assert results[0].content == "nostrdvm says: hello" and results[0].encrypted


async def test_nostrdvm_serves_a_cleartext_job(relay: Relay, tmp_path: Path) -> None:
    async with nostrdvm(relay, tmp_path) as (keys, _):
        feedback, results, rejected = await _ask(relay, keys, "hi there", encrypt=False)
    assert rejected == [] and results[0].content == "nostrdvm says: hi there"
    assert [f.status for f in feedback] == ["processing"]


async def test_our_customer_buys_a_summary_from_a_nostrdvm_dvm_of_kind_5001(
    relay: Relay, tmp_path: Path
) -> None:
    """More than 5050: nostrdvm's engine serving kind 5001 (its LLM call replaced by the
    driver's fixed answer) answers our SwarmClient's kind-5001 job with a kind-6001 result."""
    from client.customer.swarm import SwarmClient
    from client.nostr.keys import Keys as OurKeys

    async with nostrdvm(relay, tmp_path, env={"NOSTRDVM_KIND": "5001"}) as (keys, _):
        async with SwarmClient(OurKeys.generate(), [relay.url]) as swarm:
            result = await swarm.complete(
                "A long text to summarize.",
                kind=5001,
                quorum=1,
                targets=[keys.public_key],
                timeout=30,
            )
    assert result.reached and result.job.kind == 5001
    assert [r.event.kind for r in result.results] == [6001]
    assert result.text == "nostrdvm says: A long text to summarize."
