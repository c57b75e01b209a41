"""SwarmBackend over the real SwarmClient (relay_mock on 127.0.0.1, scripted providers signing
real events), plus its budget and how it maps typed swarm terms onto a stand-in client's
keywords (and refuses a client that cannot take them)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from client.customer.swarm import SwarmClient, SwarmResult
from client.nostr.errors import BudgetExceeded, QuorumNotReached
from client.nostr.keys import Keys
from relay_mock import Relay
from router import LmRouter
from router.backends import MockBackend
from router.backends.swarm import SwarmBackend
from router.errors import InvalidRequest
from router.request import Sampling, SwarmTerms
from router.types import SwarmOutcome
from tests.support.scripted import ScriptedProvider

CUSTOMER = Keys.generate()


@contextlib.asynccontextmanager
async def running(*made: ScriptedProvider) -> AsyncIterator[list[ScriptedProvider]]:
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        yield list(made)


async def test_router_completes_through_the_swarm_and_reports_sats(relay: Relay) -> None:
    paid: list[tuple[int, int | None]] = []

    async def pay(result: SwarmResult, max_sats: int | None, gate: object = None) -> int:
        paid.append((len(result.agreeing), max_sats))
        return 7000 * len(result.agreeing)  # msats

    made = [ScriptedProvider([relay.url], "Paris") for _ in range(3)]
    async with running(*made) as ps, SwarmClient(CUSTOMER, [relay.url], pay=pay) as client:
        swarm = SwarmBackend(client, quorum=2, max_sats=40, timeout_s=10)
        router = LmRouter.builder().add_backend(swarm).btc_usd(100_000).build()
        r = await router.complete(
            "swarm/m1", "Capital of France?", 30, sampling=Sampling(temperature=0.5)
        )
        assert (r.text, r.backend, r.model) == ("Paris", "swarm", "swarm/m1")
        assert r.usage.cost_sats == 14 and r.usage.cost_usd == pytest.approx(0.014)
        assert r.swarm is not None and len(r.swarm.agreeing) == 2
        assert set(r.swarm.agreeing) <= {p.pubkey for p in ps} and r.swarm.job_id
        assert r.swarm.msats_paid == 14_000 and r.swarm.dissenting == ()
        assert r.decision is not None and r.decision.backend == "swarm"
        assert paid == [(2, 40)]
        seen = ps[0].seen[0]
        assert seen.model == "m1" and seen.prompt == "Capital of France?"
        assert seen.bid_msats == 20_000  # max_sats split over the quorum
        assert seen.max_tokens == 30 and seen.temperature == 0.5
        rep = router.usage_report()
        assert rep.total_cost_sats == 14 and rep.by_backend["swarm"].call_count == 1
        assert swarm.spent_sats == 14
        assert await router.health_check() == {"swarm": True}


async def test_disagreement_fails_over_to_a_local_backend(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "Paris"), ScriptedProvider([relay.url], "Lyon")]
    async with running(*made), SwarmClient(CUSTOMER, [relay.url]) as client:
        swarm = SwarmBackend(client, quorum=2, timeout_s=10, providers_expected=2)
        with pytest.raises(QuorumNotReached) as err:
            await swarm.complete("swarm/any", "Capital of France?", 10)
        assert err.value.decision is not None and err.value.decision.exhausted
        local = MockBackend("local").with_any_model().with_response("Paris (local)")
        router = (
            LmRouter.builder()
            .add_backend(swarm, priority=0)
            .add_backend(local, priority=1)
            .strategy("priority")
            .build()
        )
        r = await router.complete("swarm/any", "Capital of France?", 10)
        assert r.backend == "local"
        assert (
            isinstance(router.metrics()["swarm"], object)
            and router.metrics()["swarm"].failures == 1
        )


@dataclass
class Verdict:
    note: str = ""
    scores: tuple[tuple[str, float], ...] = ()


@dataclass
class Took:
    total_ms: float = 12.0


@dataclass
class Answer:
    text: str
    agreeing: tuple[str, ...] = ("a", "b")
    dissenting: tuple[str, ...] = ()
    job_id: str = "job1"
    msats_paid: int = 0
    msats_unknown: int = 0
    decision: Verdict = field(default_factory=Verdict)
    timings: Took = field(default_factory=Took)


@dataclass
class StandIn:
    """A stand-in for SwarmClient with its whole ``complete`` signature, recording each call's
    keywords; it charges ``price_msats`` (never above ``max_sats``, as a client must not)."""

    price_msats: int = 9500
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None,
        quorum: int,
        max_sats: int | None,
        timeout: float,  # noqa: ASYNC109 - imitates SwarmClient.complete's signature
        bid_msats: int | None,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        top_k: int | None,
        seed: int | None,
        params: Mapping[str, str | int | float] | None,
        targets: Sequence[str] | None,
        encrypt: bool | str,
        comparator: Any,
        providers_expected: int | None,
        on_progress: Any,
        sealing: str,
        commit_reveal: bool,
        gate: Any,
        prepay: Any,
    ) -> Answer:
        call = dict(locals())
        del call["self"]
        self.calls.append(call)
        cap = self.price_msats if max_sats is None else min(self.price_msats, max_sats * 1000)
        return Answer(f"ok: {prompt}", msats_paid=cap, decision=Verdict("exact", (("a", 1.0),)))


class Minimal:
    """A client with an older, shorter ``complete``: it cannot take a payment gate, sampling,
    sealing, ..."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(
        self,
        prompt: str,
        *,
        model: str | None,
        quorum: int,
        max_sats: int | None,
        timeout: float,  # noqa: ASYNC109 - imitates SwarmClient.complete's signature
    ) -> Answer:
        self.calls += 1
        return Answer("never")


async def test_swarm_terms_reach_the_client_as_its_own_keywords() -> None:
    c = StandIn()
    b = SwarmBackend(c, quorum=3, max_sats=100, timeout_s=5, providers_expected=4)
    msgs = [{"role": "user", "content": "hi"}]
    target = "ab" * 32
    r = await b.complete(
        "swarm/llama3",
        msgs,
        16,
        sampling=Sampling(temperature=0.1, stop="x", seed=3),
        swarm=SwarmTerms(
            quorum=2,
            comparator="exact",
            targets=[target],
            sealing="prefer",
            job_params={"language": "de"},
        ),
        passthrough={"user": "alice"},  # accepted, sent nowhere
    )
    assert r.text == "ok: hi" and r.usage.cost_sats == 9
    assert r.swarm == SwarmOutcome(("a", "b"), (), "job1", 9500, 0, "exact", (("a", 1.0),))
    assert r.latency_ms == 12.0
    (call,) = c.calls
    comparator, gate = call.pop("comparator"), call.pop("gate")
    assert comparator.name == "exact" and gate is not None
    assert call == {
        "prompt": "hi",
        "model": "llama3",
        "quorum": 2,
        "max_sats": 100,
        "timeout": 5,
        "bid_msats": None,
        "max_tokens": 16,
        "temperature": 0.1,
        "top_p": None,
        "top_k": None,
        "seed": 3,
        "params": {"stop": "x", "language": "de"},
        "targets": (target,),
        "encrypt": False,
        "providers_expected": 4,
        "on_progress": None,
        "sealing": "prefer",
        "commit_reveal": False,
        "prepay": None,
    }
    assert b.supports_model("swarm/anything") and not b.supports_model("llama3")
    assert b.swarm_model("swarm/any") is None


async def test_a_misspelled_swarm_term_is_a_type_error_at_the_call_site() -> None:
    c = StandIn()
    router = LmRouter.builder().add_backend(SwarmBackend(c)).build()
    with pytest.raises(TypeError, match="quorom"):
        SwarmTerms(quorom=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="quorom"):
        await router.complete("swarm/m", "q", 8, quorom=2)  # type: ignore[call-arg]
    with pytest.raises(InvalidRequest, match="quorum must be a positive integer"):
        SwarmTerms(quorum=0)
    with pytest.raises(InvalidRequest, match="'quorum'"):  # a term passed as an upstream field
        await router.complete("swarm/m", "q", 8, passthrough={"quorum": 2})
    assert c.calls == []


async def test_what_a_job_cannot_carry_is_refused_before_anything_is_reserved() -> None:
    c = StandIn()
    b = SwarmBackend(c, max_sats=40, budget_sats=100)
    with pytest.raises(InvalidRequest, match="'tools'"):
        await b.complete("swarm/m", "q", 8, passthrough={"tools": []})
    with pytest.raises(InvalidRequest, match="'stop'"):
        await b.complete("swarm/m", "q", 8, sampling=Sampling(stop=["a", "b"]))
    with pytest.raises(InvalidRequest, match="above this backend's limit"):
        await b.complete("swarm/m", "q", 8, swarm=SwarmTerms(quorum=9))
    assert c.calls == [] and b.remaining_sats == 100


async def test_a_client_that_cannot_take_the_terms_fails_loudly() -> None:
    c = Minimal()
    b = SwarmBackend(c, max_sats=40, budget_sats=100)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Minimal\.complete does not take .*'bid_msats'"):
        await b.complete("swarm/m", "q", 8)
    assert c.calls == 0 and b.remaining_sats == 100  # never asked, nothing left reserved


async def test_budget_caps_spending_and_requests_in_flight() -> None:
    c = StandIn(price_msats=30_000)
    b = SwarmBackend(c, max_sats=40, budget_sats=70)
    await b.complete("swarm/m", "a", 5)
    assert (b.spent_sats, b.remaining_sats) == (30, 40)
    await b.complete("swarm/m", "b", 5)
    assert c.calls[-1]["max_sats"] == 40
    await b.complete("swarm/m", "c", 5)
    assert c.calls[-1]["max_sats"] == 10  # only what is left of the budget
    assert b.spent_sats == 70 and b.remaining_sats == 0
    with pytest.raises(BudgetExceeded, match="used up"):
        await b.complete("swarm/m", "d", 5)
    assert len(c.calls) == 3
    with pytest.raises(ValueError):
        SwarmBackend(c, quorum=0)


@dataclass
class _Prepaid:
    msats_paid: int = 4000
    msats_unknown: int = 0


class PrepaidThenNoQuorum:
    """A swarm client whose job paid two providers in advance and then did not agree."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, prompt: str, **kw: Any) -> Any:
        self.calls += 1
        raise QuorumNotReached("quorum 2 not reached", received=_Prepaid())


async def test_a_job_that_paid_and_failed_is_never_followed_by_another() -> None:
    from router.errors import PaidFailure

    client = PrepaidThenNoQuorum()
    swarm = SwarmBackend(client, quorum=2, max_sats=20, timeout_s=5)
    local = MockBackend("local").with_model("other").with_response("unverified")
    builder = LmRouter.builder().add_backend(swarm).add_backend(local).fallback_chain("local")
    router = builder.retry(max_attempts=3).build()
    with pytest.raises(PaidFailure) as e:
        await router.complete("swarm/m", "q", 8)
    assert e.value.msats_paid == 4000
    assert client.calls == 1 and local.calls == 0  # no retry, no failover
    assert swarm.spent_msats == 4000  # charged though it failed


async def test_a_job_that_paid_nothing_may_fail_over() -> None:
    class NothingPaid(PrepaidThenNoQuorum):
        async def complete(self, prompt: str, **kw: Any) -> Any:
            self.calls += 1
            raise QuorumNotReached("quorum 2 not reached", received=_Prepaid(0))

    swarm = SwarmBackend(NothingPaid(), quorum=2, max_sats=20, timeout_s=5)
    local = MockBackend("local").with_model("other").with_response("unverified")
    builder = LmRouter.builder().add_backend(swarm).add_backend(local).fallback_chain("local")
    router = builder.build()
    assert (await router.complete("swarm/m", "q", 8)).text == "unverified"
