"""The gateway's dashboard, wired (router/dashboard/gateway.py, router/gateway/app.py): a swarm
request is a job on the page while somebody watches (through ``SwarmTerms.observer``), and only
then; the ``revoke_key`` action. A real gateway on 127.0.0.1 with a swarm of paid provider nodes
on a relay, paying over NWC from a real ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from router.dashboard.hub import DashboardHub
from router.dashboard.sources import ProgressTap
from router.errors import InvalidRequest
from router.gateway.app import Gateway
from router.request import SWARM_TERM_FIELDS, LmRequest, SwarmTerms
from router.types import LmResponse
from tests.support.gateway import gateway
from tests.support.market import MODEL

from .processes import World, gateway_config, paid_world
from .stage import ADMIN_KEY, ANSWER

ALICE = "sk-alice-key-0001"


class Wake:
    def __call__(self) -> None:
        pass


def spy(gw: Gateway) -> list[LmRequest]:
    """The requests the gateway hands its router (the router still answers each)."""
    seen: list[LmRequest] = []
    send = gw.router.send

    async def recording(request: LmRequest) -> LmResponse:
        seen.append(request)
        return await send(request)

    gw.router.send = recording  # type: ignore[method-assign]
    return seen


async def ask(
    gw: Gateway, key: str = ALICE, **extra: Any
) -> tuple[int, dict[str, str], dict[str, Any] | str]:
    body = {
        "model": f"swarm/{MODEL}",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 16,
        **extra,
    }
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {key}"}
        async with s.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
            text = await r.text()
            try:
                return r.status, dict(r.headers), await r.json(content_type=None)
            except ValueError:
                return r.status, dict(r.headers), text


def config(world: World) -> tuple[dict[str, Any], dict[str, str]]:
    return gateway_config(
        world,
        keys=[
            {"name": "alice", "key": ALICE, "budget_sats": 100},
            {"name": "bob", "key": "sk-bob-key-00002"},
        ],
    )


async def test_a_watched_swarm_request_is_a_job_that_reaches_agreed_and_paid(
    tmp_path: Path,
) -> None:
    async with paid_world(tmp_path) as world:
        cfg, env = config(world)
        async with gateway(cfg, env=env) as gw:
            seen = spy(gw)
            hub = gw.dashboard_hub
            viewer = hub.join(Wake())
            status, headers, body = await ask(gw)
            assert status == 200, body
            (request,) = seen
            assert request.swarm is not None and isinstance(request.swarm.observer, ProgressTap)
            job_id, cost = headers["x-swarm-job-id"], int(headers["x-swarm-cost-msats"])
            job = hub.job(job_id)
            assert job is not None
            assert job["model"] == f"swarm/{MODEL}" and job["quorum"] == 2
            assert job["prompt"] == "What is the capital of France?"
            assert job["outcome"] == "reached" and job["text"] == ANSWER
            sellers = {s.pubkey for s in world.market.sellers}
            assert {p["key"]: p["state"] for p in job["providers"]} == dict.fromkeys(
                sellers, "paid"
            )
            assert job["paid_msats"] == cost > 0
            cards = hub.snapshot()["cards"]
            assert cards["reached"] == 1 and cards["msats_out"] == cost
            hub.leave(viewer)


async def test_a_streamed_swarm_request_is_a_job_too(tmp_path: Path) -> None:
    async with paid_world(tmp_path) as world:
        cfg, env = config(world)
        async with gateway(cfg, env=env) as gw:
            hub = gw.dashboard_hub
            hub.join(Wake())
            status, _, body = await ask(gw, stream=True)
            assert status == 200 and isinstance(body, str) and ANSWER in body
            (job,) = hub.snapshot()["jobs"]
            assert job["outcome"] == "reached" and job["text"] == ANSWER
            assert sorted(p["state"] for p in job["providers"]) == ["paid", "paid"]


async def test_with_nobody_watching_a_swarm_request_carries_no_observer(tmp_path: Path) -> None:
    async with paid_world(tmp_path) as world:
        cfg, env = config(world)
        async with gateway(cfg, env=env) as gw:
            seen = spy(gw)
            status, _, body = await ask(gw)
            assert status == 200, body
            (request,) = seen
            assert request.swarm is not None and request.swarm.observer is None
            assert gw.dashboard_hub.snapshot()["jobs"] == []


async def test_an_observer_that_fails_changes_nothing_about_the_answer(tmp_path: Path) -> None:
    class Broken:
        def __call__(self, progress: object) -> None:
            raise RuntimeError("a bug in a live view")

        def finish(self, result: object) -> None:
            raise RuntimeError("a bug in a live view")

    async with paid_world(tmp_path) as world:
        cfg, env = config(world)
        async with gateway(cfg, env=env) as gw:
            send = gw.router.send

            async def broken_view(request: LmRequest) -> LmResponse:
                assert request.swarm is not None
                terms = request.swarm
                watched = SwarmTerms(
                    quorum=terms.quorum,
                    bid_msats=terms.bid_msats,
                    max_sats=terms.max_sats,
                    hold=terms.hold,
                    observer=Broken(),
                )
                return await send(LmRequest(request.model, request.prompt, 16, swarm=watched))

            gw.router.send = broken_view  # type: ignore[method-assign]
            status, headers, body = await ask(gw)
            assert status == 200, body
            assert isinstance(body, dict) and body["choices"][0]["message"]["content"] == ANSWER
            assert int(headers["x-swarm-cost-msats"]) > 0


def test_an_observer_is_not_a_term() -> None:
    assert "observer" not in SWARM_TERM_FIELDS
    tap = ProgressTap(DashboardHub(), model="m", quorum=2)
    assert SwarmTerms(observer=tap).given() == ()
    with pytest.raises(InvalidRequest, match="observer"):
        SwarmTerms(observer=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="observer"):
        SwarmTerms(observer=lambda p: None)  # type: ignore[arg-type]  # no finish


async def post_action(
    gw: Gateway, name: str, body: Any, key: str | None = ADMIN_KEY
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + f"/dashboard/actions/{name}", json=body, headers=headers) as r:
            return r.status, await r.json()


async def admin_key_rows(gw: Gateway) -> dict[str, str | None]:
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with s.get(gw.url + "/dashboard/snapshot", headers=headers) as r:
            assert r.status == 200
            return {k["account"]: k["key_name"] for k in (await r.json())["keys"]}


async def test_the_admin_revokes_a_key_from_the_dashboard(tmp_path: Path) -> None:
    async with paid_world(tmp_path, providers=0) as world:
        cfg, env = config(world)
        cfg.pop("swarm")
        cfg["backends"] = [{"name": "local", "type": "mock", "models": ["llama3"]}]
        async with gateway(cfg, env=env) as gw:
            async with aiohttp.ClientSession() as s:
                headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
                async with s.post(
                    gw.url + "/admin/keys", json={"name": "carol"}, headers=headers
                ) as r:
                    assert r.status == 201
                    carol = (await r.json())["key"]
            # The page offers to revoke keys the admin API made, not those of the config file.
            rows = await admin_key_rows(gw)
            assert rows["key:carol"] == "carol" and rows["key:alice"] is None
            # Acting needs the admin key: an API key, or none, is refused.
            assert (await post_action(gw, "revoke_key", {"name": "carol"}, None))[0] == 401
            assert (await post_action(gw, "revoke_key", {"name": "carol"}, carol))[0] == 401
            status, answer = await post_action(gw, "revoke_key", {"name": "carol", "x": 1})
            assert status == 400 and "x" in answer["error"]["message"]
            status, answer = await post_action(gw, "revoke_key", {"name": "carol"})
            assert (status, answer) == (200, {"name": "carol", "revoked": True})
            assert (await ask_plain(gw, carol)) == 401  # at once
            assert (await admin_key_rows(gw))["key:carol"] is None  # spend kept, no button
            status, answer = await post_action(gw, "revoke_key", {"name": "carol"})
            assert status == 404 and answer["error"]["code"] == "key_not_found"
            status, answer = await post_action(gw, "revoke_key", {"name": "alice"})
            assert status == 409 and answer["error"]["code"] == "key_in_config"
            assert (await ask_plain(gw, ALICE)) == 200


async def ask_plain(gw: Gateway, key: str) -> int:
    body = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {key}"}
        async with s.post(gw.url + "/v1/chat/completions", json=body, headers=headers) as r:
            return r.status
