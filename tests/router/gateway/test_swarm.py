"""The swarm behind the gateway: real provider nodes (and scripted providers where a test must see
what was asked) on relay_mock, reached with the openai client as ``swarm/<model>``; quorum and bid
per request; payment through a Nostr Wallet Connect wallet and per-key budgets in sats."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from client.nostr.keys import Keys
from provider.node import ProviderNode
from provider.pricing import Pricing
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.service import WalletService
from relay_mock.lightning.wallet import LedgerWallet
from router.backends import MockBackend
from router.backends.config import SwarmBackendConfig
from router.gateway.swarm import make_swarm_backend
from tests.support.gateway import client, gateway, user
from tests.support.scripted import ScriptedProvider


def answering(text: str) -> MockBackend:
    return MockBackend("local-model").with_model("m1").with_response(text).with_usage(5, 2)


@contextlib.asynccontextmanager
async def nodes(relay: Relay, *texts: str, **kw: Any) -> AsyncIterator[list[ProviderNode]]:
    async with contextlib.AsyncExitStack() as stack:
        made = []
        for text in texts:
            node = ProviderNode(Keys.generate(), [relay.url], answering(text), **kw)
            made.append(await stack.enter_async_context(node))
        yield made


def swarm_config(relay: Relay, **swarm: Any) -> dict[str, Any]:
    return {
        "backends": [{"name": "local", "type": "mock", "models": ["m1"], "response": "unverified"}],
        "default_backend": "local",
        "swarm": {
            "relays": [relay.url],
            "quorum": 2,
            "bid_sats": 5,
            "models": ["m1"],
            "job_timeout_s": 10,
            **swarm,
        },
    }


async def test_a_swarm_entry_without_a_name_serves_under_its_type() -> None:
    served = make_swarm_backend(SwarmBackendConfig(type="swarm", relays=["ws://127.0.0.1:9"]))
    try:
        assert served.name == "swarm" and served.inner.name == "swarm"
    finally:
        await served.close()


async def test_swarm_models_answer_with_quorum_headers(relay: Relay) -> None:
    async with nodes(relay, "Paris", "Paris", "Paris") as ns, gateway(swarm_config(relay)) as gw:
        c = client(gw)
        ids = {m.id: m.owned_by for m in (await c.models.list()).data}
        assert ids["swarm/m1"] == "swarm" and ids["m1"] == "local"
        raw = await c.chat.completions.with_raw_response.create(
            model="swarm/m1", messages=user("Capital of France?")
        )
        assert raw.parse().choices[0].message.content == "Paris"
        assert raw.parse().model == "swarm/m1"
        assert raw.headers["x-swarm-backend"] == "swarm"
        providers = {n.keys.public_key for n in ns}
        agreeing = raw.headers["x-swarm-agreeing"].split(",")
        assert len(agreeing) == 2 and set(agreeing) <= providers
        assert len(raw.headers["x-swarm-job-id"]) == 64
        assert raw.headers["x-swarm-cost-sats"] == "0"  # these providers are free
        # quorum per request, as an extra body field
        raw = await c.chat.completions.with_raw_response.create(
            model="swarm/m1", messages=user("Capital of France?"), extra_body={"quorum": 3}
        )
        assert set(raw.headers["x-swarm-agreeing"].split(",")) == providers
        # text completions and streams go to the swarm too (one chunk: the agreed text)
        text = await c.completions.create(model="swarm/m1", prompt="Capital of France?")
        assert text.choices[0].text == "Paris"
        stream = await c.chat.completions.create(
            model="swarm/m1",
            messages=user("Capital?"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [ch async for ch in stream]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Paris"
        assert chunks[-1].usage is not None
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(
                model="swarm/m1", messages=user("x"), extra_body={"quorum": 99}
            )
        assert e.value.param == "quorum"
        # plain m1 stays local
        local = await c.chat.completions.create(model="m1", messages=user("x"))
        assert local.choices[0].message.content == "unverified"


async def test_quorum_and_bid_from_headers_reach_the_providers(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "42") for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        async with gateway(swarm_config(relay, max_bid_sats=50)) as gw:
            raw = await client(gw).chat.completions.with_raw_response.create(
                model="swarm/m1",
                messages=user("6*7?"),
                max_tokens=20,
                extra_headers={"x-swarm-quorum": "3", "x-swarm-bid-sats": "9"},
            )
            assert raw.parse().choices[0].message.content == "42"
            assert len(raw.headers["x-swarm-agreeing"].split(",")) == 3
            seen = made[0].seen[-1]
            assert seen.bid_msats == 9000 and seen.model == "m1" and seen.max_tokens == 20
            with pytest.raises(openai.BadRequestError) as e:
                await client(gw).chat.completions.create(
                    model="swarm/m1", messages=user("x"), extra_headers={"x-swarm-bid-sats": "51"}
                )
            assert e.value.param == "bid_sats"


async def test_an_unknown_field_on_a_swarm_model_is_a_400_naming_it(relay: Relay) -> None:
    made = [ScriptedProvider([relay.url], "Paris") for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for p in made:
            await stack.enter_async_context(p)
        async with gateway(swarm_config(relay)) as gw:
            c = client(gw)
            with pytest.raises(openai.BadRequestError) as e:
                await c.chat.completions.create(
                    model="swarm/m1", messages=user("x"), extra_body={"quorom": 3}
                )
            assert e.value.param == "quorom" and "'quorom'" in e.value.message
            assert "quorum, bid_sats, comparator" in e.value.message
            usage = await c.get("/usage", cast_to=object)
            assert usage["swarm"]["swarm"]["reserved_sats"] == 0  # type: ignore[index]
            # an OpenAI field the swarm cannot carry is refused by name too
            with pytest.raises(openai.BadRequestError) as e:
                await c.chat.completions.create(
                    model="swarm/m1", messages=user("x"), extra_body={"reasoning_effort": "low"}
                )
            assert "'reasoning_effort'" in e.value.message
            assert not any(p.seen for p in made)  # no job was published
            # on a plain model a field the gateway does not know is its backend's to judge
            local = await c.chat.completions.create(
                model="m1", messages=user("x"), extra_body={"quorom": 3}
            )
            assert local.choices[0].message.content == "unverified"
            # the spelled-right term works
            ok = await c.chat.completions.create(
                model="swarm/m1", messages=user("x"), extra_body={"quorum": 2}
            )
            assert ok.choices[0].message.content == "Paris"


async def test_no_quorum_is_504_and_never_falls_back_to_an_unverified_backend(
    relay: Relay,
) -> None:
    async with nodes(relay, "Paris", "Lyon"), gateway(swarm_config(relay, job_timeout_s=0.5)) as gw:
        with pytest.raises(openai.APIStatusError) as e:
            await client(gw).chat.completions.create(model="swarm/m1", messages=user("x"))
        assert e.value.status_code == 504 and e.value.code == "quorum_not_reached"


PRICING = Pricing(msats_per_1k_prompt=1000, msats_per_1k_completion=10_000, min_msats=2000)


async def test_paid_swarm_through_nwc_with_key_budget(relay: Relay, tmp_path: Path) -> None:
    with Ledger(tmp_path / "network.db") as ledger:
        customer = ledger.create_account("gateway", msats=1_000_000)
        async with WalletService(ledger, [relay.url]) as service, contextlib.AsyncExitStack() as st:
            made = []
            for i in range(2):
                wallet = LedgerWallet(ledger, ledger.create_account(f"provider{i}").id)
                node = ProviderNode(
                    Keys.generate(),
                    [relay.url],
                    answering("4"),
                    pricing=PRICING,
                    payment="after",
                    wallet=wallet,
                )
                made.append((await st.enter_async_context(node), wallet))
            data = swarm_config(
                relay,
                nwc_uri="${NWC}",
                payment_ledger=str(tmp_path / "payments.db"),
                budget_sats=1000,
            )
            data["keys"] = [{"name": "alice", "key": "sk-alice", "budget_sats": 5}]
            data["usd_per_sat"] = 0.001
            async with gateway(data, env={"NWC": service.connection_uri(customer.id)}) as gw:
                alice = client(gw, "sk-alice")
                raw = await alice.chat.completions.with_raw_response.create(
                    model="swarm/m1", messages=user("2+2?"), max_tokens=50
                )
                assert raw.parse().choices[0].message.content == "4"
                assert raw.headers["x-swarm-cost-sats"] == "4"  # 2 providers x 2000 msats
                assert raw.headers["x-swarm-cost-usd"] == "0.00400000"
                assert ledger.balance(customer.id) == 1_000_000 - 4000
                assert [ledger.balance(w.account_id) for _, w in made] == [2000, 2000]
                assert gw.keys.accounts["alice"].spent_sats == 4
                # 1 sat left: not enough for a quorum of 2
                with pytest.raises(openai.RateLimitError) as e:
                    await alice.chat.completions.create(model="swarm/m1", messages=user("2+2?"))
                assert e.value.code == "insufficient_quota" and "alice" in e.value.message
                metrics = (await gw_get(gw, "/metrics")).splitlines()
                assert 'swarm_gateway_sats_spent_total{backend="swarm"} 4.0' in metrics
                usage = await gw_get(gw, "/v1/usage", "sk-alice")
                assert '"spent_sats": 4' in usage and '"remaining_sats": 996' in usage


async def gw_get(gw: Any, path: str, key: str | None = None) -> str:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s, s.get(gw.url + path, headers=headers) as r:
        return await r.text()


async def test_a_comparator_by_name_and_the_one_it_picked(relay: Relay) -> None:
    async with nodes(relay, "The answer is 42.", "42"), gateway(swarm_config(relay)) as gw:
        c = client(gw)
        raw = await c.chat.completions.with_raw_response.create(
            model="swarm/m1",
            messages=user("What is 6 times 7?"),
            extra_body={"comparator": "auto"},
        )
        assert raw.parse().choices[0].message.content in ("The answer is 42.", "42")
        assert raw.headers["x-swarm-comparator"]  # what auto picked, and why
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(
                model="swarm/m1", messages=user("q"), extra_body={"comparator": "bogus"}
            )
        assert "bogus" in e.value.message
        with pytest.raises(openai.BadRequestError) as e:
            await c.chat.completions.create(
                model="m1", messages=user("q"), extra_body={"comparator": "auto"}
            )
        assert e.value.param == "comparator"


async def test_a_streamed_swarm_answer_shows_text_before_the_quorum_and_a_verdict(
    relay: Relay,
) -> None:
    import asyncio

    later = asyncio.Event()
    fast = ScriptedProvider([relay.url], "Paris")
    slow = [ScriptedProvider([relay.url], "Paris", gate=later) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for p in (fast, *slow):
            await stack.enter_async_context(p)
        async with gateway(swarm_config(relay)) as gw:
            stream = await client(gw).chat.completions.create(
                model="swarm/m1", messages=user("Capital of France?"), stream=True
            )
            chunks = aiter(stream)
            text = ""
            while not text:  # the role chunk first, then the fast provider's answer
                text = (await anext(chunks)).choices[0].delta.content or ""
            assert text == "Paris" and not later.is_set()  # before any quorum could exist
            later.set()
            rest = [c async for c in chunks]
            verdicts = [
                (c.choices[0].delta.model_extra or {}).get("swarm") for c in rest if c.choices
            ]
            verdict = next(v for v in verdicts if v)
            assert verdict["verdict"] == "agreed" and len(verdict["agreeing"]) == 2


async def test_a_streamed_answer_the_quorum_rejects_ends_with_an_error(relay: Relay) -> None:
    import asyncio

    later = asyncio.Event()
    liar = ScriptedProvider([relay.url], "Lyon")
    honest = [ScriptedProvider([relay.url], "Paris", gate=later) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        for p in (liar, *honest):
            await stack.enter_async_context(p)
        async with gateway(swarm_config(relay)) as gw:
            stream = await client(gw).chat.completions.create(
                model="swarm/m1", messages=user("Capital of France?"), stream=True
            )
            chunks = aiter(stream)
            text = ""
            while not text:
                text = (await anext(chunks)).choices[0].delta.content or ""
            assert text == "Lyon"
            later.set()
            with pytest.raises(openai.APIError) as e:
                async for _ in chunks:
                    pass
            assert "another answer than the one streamed" in str(e.value)
