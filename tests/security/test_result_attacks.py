"""Attacks on the customer's jobs and money, end to end: two honest ProviderNodes and an attacker
on a real relay, a SwarmClient paying from a ledger. Honest nodes hold their answers until the
attacker has spoken, so every attack reaches the customer before the quorum can be decided.

Each attack is rejected (the quorum and the payments ignore it), counted (``result.rejected``,
payment outcomes, relay refusals) and logged; the services still answer afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from client.customer.swarm import SwarmClient
from client.dvm.nip90 import KIND_TEXT_RESULT, JobRequest, build_feedback, build_result
from client.nostr.event import Event
from client.nostr.filter import Filter
from client.nostr.keys import Keys
from relay_mock import Relay
from tests.support.market import MODEL, Market, mock
from tests.support.scripted import ScriptedRelay

from .attacker import Attacker


async def _market_with(tmp_path: Path, relay: Relay, attacker: Attacker, **kw: object) -> Market:
    market = Market(tmp_path, [relay.url])
    await market.__aenter__()
    for _ in range(2):  # honest nodes answer "4" once the attacker is done
        await market.add_provider(mock("4").with_gate(attacker.done))
    await market.open_customer(**kw)  # type: ignore[arg-type]
    return market


async def test_invoice_above_the_quote_is_not_paid(
    relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    invoices: list[str] = []

    async def overcharge(a: Attacker, req: JobRequest) -> list[Event]:
        # Quotes 2 sats, answers right, and bills 50 sats (within the customer's bid).
        bolt11 = await wallet.make_invoice(50_000, "job", 600)
        invoices.append(bolt11)
        return [
            build_feedback(a.keys, req, "processing", amount_msats=2_000),
            build_result(a.keys, req, "4", amount_msats=50_000, bolt11=bolt11),
        ]

    async with Attacker([relay.url], overcharge) as evil:
        market = await _market_with(tmp_path, relay, evil)
        account, wallet = market.wallet("attacker")
        try:
            caplog.set_level(logging.WARNING, "client.wallet.payments")
            result = await market.ask("2+2?", max_sats=100, providers_expected=3)
            assert result.text == "4" and evil.pubkey in result.agreeing
            outcome = market.hook.outcomes[result.job_id].outcomes[evil.pubkey]
            assert outcome.status == "refused" and "above the quote" in (outcome.reason or "")
            assert any("above the quote" in r.getMessage() for r in caplog.records)
            assert market.balance(account) == 0
            money = market.audit()
            assert money["payments"] == 1 and money["spent"] == result.msats_paid
            await market.still_serving()
        finally:
            await market.__aexit__(None, None, None)


async def test_one_provider_voting_under_many_events(relay: Relay, tmp_path: Path) -> None:
    def stuff_the_ballot(a: Attacker, req: JobRequest) -> list[Event]:
        now = req.event.created_at
        return [build_result(a.keys, req, "5", created_at=now + i) for i in range(5)]

    async with Attacker([relay.url], stuff_the_ballot) as evil:
        market = await _market_with(tmp_path, relay, evil)
        try:
            result = await market.ask("2+2?", providers_expected=3)
            assert result.text == "4"
            assert set(result.agreeing) == {s.pubkey for s in market.sellers}
            assert result.dissenting == (evil.pubkey,)
            assert result.rejected["second_vote"] == 4  # one vote counted, four refused
            assert len(evil.sent) == 5
            money = market.audit()
            assert money["spent"] == money["owed"] and money["payments"] == 2
            await market.still_serving()
        finally:
            await market.__aexit__(None, None, None)


async def test_replays_from_another_job(relay: Relay, tmp_path: Path) -> None:
    """The attacker copies an honest provider's paid invoice from job A into its own result for
    job B, and re-publishes job A's results during job B: neither gets anything."""
    first_job: list[Event] = []

    def replay(a: Attacker, req: JobRequest) -> list[Event]:
        if not first_job:
            return []
        old_result = first_job[0]
        (amount,) = old_result.tags_named("amount")
        return [
            old_result,  # the very same event again: the relay answers "duplicate"
            build_result(a.keys, req, "4", amount_msats=int(amount[1]), bolt11=amount[2]),
        ]

    async with Attacker([relay.url], replay) as evil:
        market = await _market_with(tmp_path, relay, evil)
        try:
            job_a = await market.ask("2+2?", providers_expected=3)
            first_job.extend(r.event for r in job_a.results if r.provider in job_a.agreeing)
            victim = first_job[0].pubkey
            evil.done.clear()
            job_b = await market.ask("2+2?", providers_expected=3)
            assert evil.pubkey in job_b.agreeing
            outcome = market.hook.outcomes[job_b.job_id].outcomes[evil.pubkey]
            assert outcome.status == "refused"
            assert "already presented for job" in (outcome.reason or "")
            # Job A's result never counted for job B.
            assert all(r.event.id != first_job[0].id for r in job_b.results)
            paid = [r for r in market.payments.history() if r.state == "paid"]
            assert sum(r.provider == victim for r in paid) == 1 + (victim in job_b.agreeing)
            money = market.audit()
            assert money["payments"] == 3
            await market.still_serving()
        finally:
            await market.__aexit__(None, None, None)


async def test_result_signed_by_one_key_naming_another(relay: Relay, tmp_path: Path) -> None:
    """An honest node's public key on the attacker's signature: the relay refuses it (counted),
    and when a relay that checks nothing hands it to the customer, the customer drops it as
    forged."""
    victims: list[str] = []

    def impersonate(a: Attacker, req: JobRequest) -> list[Event]:
        real = build_result(a.keys, req, "5")
        return [
            Event(
                real.id, victims[0], real.created_at, real.kind, real.tags, real.content, real.sig
            )
        ]

    async with Attacker([relay.url], impersonate) as evil:
        market = await _market_with(tmp_path, relay, evil)
        try:
            victims.append(market.sellers[0].pubkey)
            result = await market.ask("2+2?", providers_expected=3)
            assert result.text == "4" and evil.pubkey not in result.providers
            assert evil.refused and "invalid" in evil.refused[0][1]
            assert relay.stats().refused["invalid"] >= 1
            forged = evil.refused[0][0]

            def hand_over(sub: str, filters: list[dict[str, object]]) -> list[str]:
                return [json.dumps(["EVENT", sub, _retarget(forged, filters)])]

            async with (
                ScriptedRelay(hand_over) as sneaky,
                SwarmClient(market.keys, [relay.url, sneaky.url], pay=market.hook) as swarm,
            ):
                evil.done.clear()
                again = await swarm.complete(
                    "2+2?", quorum=2, timeout=15, max_sats=100, model=MODEL, providers_expected=3
                )
                market.results.append(again)
            assert again.text == "4" and again.rejected["forged"] == 1
            assert victims[0] in again.agreeing  # the real one still counts
            money = market.audit()
            assert money["spent"] == money["owed"] and money["payments"] == 4
        finally:
            await market.__aexit__(None, None, None)


def _retarget(forged: Event, filters: list[dict[str, object]]) -> dict[str, object]:
    """The forged event as a malicious relay would hand it over for the current job."""
    obj = forged.to_dict()
    job_id = filters[0]["#e"][0]  # type: ignore[index]
    obj["tags"] = [["e", job_id] if t[0] == "e" else t for t in forged.tags]
    return obj


async def test_someone_elses_invoice_in_my_result(
    relay: Relay, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The attacker waits for an honest result, then sends the same answer with the honest
    node's invoice in its own amount tag. With all three in the quorum, the invoice is paid
    once, to its owner; the attacker's presentation of it is refused."""

    async def free_ride(a: Attacker, req: JobRequest) -> list[Event]:
        sub = a.pool.subscribe(Filter(kinds=[KIND_TEXT_RESULT], tags={"e": [req.id]}))
        honest = await asyncio.wait_for(sub.__anext__(), 10)
        sub.close()
        (amount,) = honest.tags_named("amount")
        return [build_result(a.keys, req, "4", amount_msats=int(amount[1]), bolt11=amount[2])]

    async with Attacker([relay.url], free_ride) as evil, Market(tmp_path, [relay.url]) as market:
        for _ in range(2):
            await market.add_provider(mock("4"))
        await market.open_customer()
        result = await market.ask("2+2?", quorum=3, providers_expected=3)
        assert evil.pubkey in result.agreeing and len(result.agreeing) == 3
        outcomes = market.hook.outcomes[result.job_id].outcomes
        assert outcomes[evil.pubkey].status == "refused"
        assert "same invoice as provider" in (outcomes[evil.pubkey].reason or "")
        assert any("same invoice as provider" in r.getMessage() for r in caplog.records)
        assert sorted(o.status for o in outcomes.values()) == ["paid", "paid", "refused"]
        money = market.audit()
        assert money["payments"] == 2 and money["spent"] == result.msats_paid
        await market.still_serving()


async def test_malformed_results_and_a_relay_sending_garbage(relay: Relay, tmp_path: Path) -> None:
    def malformed(a: Attacker, req: JobRequest) -> list[Event]:
        job_id, customer = req.id, req.customer
        base = [["e", job_id], ["p", customer]]
        return [
            Event.create(a.keys, 6050, "4", [["request", "[" * 5000 + "]" * 5000], *base]),
            Event.create(a.keys, 6050, "4" * 2000, base),  # above the customer's cap below
            Event.create(a.keys, 6050, "4", [*base, ["amount", "²"]]),
            Event.create(a.keys, 7000, "", base),  # feedback without a status
            Event.create(a.keys, 6050, "4", [["e", job_id], ["p", Keys.generate().public_key]]),
        ]

    garbage = [
        "[" * 100_000 + "]" * 100_000,  # nesting deeper than any JSON parser's recursion
        "not json",
        '["EVENT"]',
        '["OK", 1, 2, 3]',
        json.dumps(["EVENT", "sub", {"id": "x"}]),
    ]
    async with ScriptedRelay(greeting=garbage) as noisy, Attacker([relay.url], malformed) as evil:
        market = await _market_with(tmp_path, relay, evil)
        try:
            swarm_relays = [relay.url, noisy.url]
            async with SwarmClient(market.keys, swarm_relays, pay=market.hook) as swarm:
                result = await swarm.complete(
                    "2+2?",
                    quorum=2,
                    timeout=15,
                    max_sats=100,
                    model=MODEL,
                    providers_expected=3,
                    max_result_bytes=1000,
                )
                market.results.append(result)
                noisy_conn = swarm.pool.relays[1]
                assert noisy_conn.bad_messages == len(garbage)
                assert noisy_conn.connects == 1 and noisy_conn.connected.is_set()
            assert result.text == "4" and evil.pubkey not in result.agreeing
            rej = result.rejected
            assert rej["bad_request_tag"] == 1 and rej["oversized"] == 1
            assert rej["malformed"] == 2 and rej["other_customer"] == 1
            money = market.audit()
            assert money["spent"] == money["owed"] and money["payments"] == 2
            await market.still_serving()
        finally:
            await market.__aexit__(None, None, None)
