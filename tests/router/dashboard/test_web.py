"""The dashboard over real HTTP on 127.0.0.1: the page and its files, the event stream, login,
actions; and mounted in a real gateway at /dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict

from router.dashboard import Action, ActionError, DashboardAccess, DashboardApp, DashboardHub
from router.dashboard.events import JobAsked, ProviderStateChanged
from router.dashboard.web import serve_dashboard
from tests.support.gateway import client, gateway, user

KEY = "dashboard-admin-key-0123456789"
A = "a" * 64


class EchoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


async def echo(body: EchoBody) -> dict[str, Any]:
    if body.text == "no":
        raise ActionError(409, "the action says no")
    return {"echo": body.text}


@contextlib.asynccontextmanager
async def served(
    *, require_key: bool = False, **app_kw: Any
) -> AsyncIterator[tuple[DashboardHub, DashboardApp, str]]:
    hub = DashboardHub(title="test", panels=("jobs", "money"))
    app = DashboardApp(
        hub,
        DashboardAccess(KEY, require_key=require_key),
        actions={"echo": Action(EchoBody, echo, "Echo")},
        **app_kw,
    )
    server, url = await serve_dashboard(app, "127.0.0.1", 0)
    try:
        yield hub, app, url.removesuffix("/dashboard/")
    finally:
        await app.close()
        await server.close()
        server.abort_all()


class Events:
    """Reads an event stream: each ``data:`` line is a JSON list of messages."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def next(self) -> list[dict[str, Any]]:
        async with asyncio.timeout(10):
            while True:
                line = (await self.resp.content.readline()).decode()
                if not line:
                    raise EOFError("the stream ended")
                if line.startswith("data: "):
                    return json.loads(line[len("data: ") :])


async def test_page_and_files_are_served_from_the_package() -> None:
    async with served() as (_, _, base), aiohttp.ClientSession() as s:
        async with s.get(base + "/", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["Location"] == "/dashboard/"
        async with s.get(base + "/dashboard", allow_redirects=False) as r:
            assert r.status == 308 and r.headers["Location"] == "/dashboard/"
        async with s.get(base + "/dashboard/") as r:
            page = await r.text()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "static/vendor/uPlot.iife.min.js" in page and "<main" in page
        async with s.get(base + "/dashboard/static/dashboard.js") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
            etag = r.headers["ETag"]
        async with s.get(
            base + "/dashboard/static/dashboard.js", headers={"If-None-Match": etag}
        ) as r:
            assert r.status == 304
        for path in ("/dashboard/static/nope.js", "/dashboard/static/../web.py", "/dashboard/x"):
            async with s.get(base + path) as r:
                assert r.status == 404, path
        async with s.post(base + "/dashboard/") as r:
            assert r.status == 405 and r.headers["Allow"] == "GET"
        async with s.head(base + "/dashboard/events") as r:
            assert r.status == 405


async def test_the_event_stream_starts_with_a_snapshot_then_sends_changes() -> None:
    async with (
        served(heartbeat_s=0.2, min_interval_s=0) as (hub, app, base),
        aiohttp.ClientSession() as s,
    ):
        async with s.get(base + "/dashboard/events") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            stream = Events(r)
            (snap,) = await stream.next()
            assert snap["type"] == "snapshot" and snap["title"] == "test"
            assert snap["panels"] == ["jobs", "money"]
            assert hub.live and hub.viewers == 1
            streams = app.streams
            assert len(streams) == 1
            hub.publish(JobAsked("job1", "m1", 2, (A,), "2+2?"))
            hub.publish(ProviderStateChanged("job1", A, "processing"))
            batch = await stream.next()
            job = next(m["job"] for m in batch if m["type"] == "job")
            assert job["id"] == "job1" and job["providers"][0]["state"] == "processing"
        # The client left: the next heartbeat finds out and the viewer is let go.
        async with asyncio.timeout(5):
            await asyncio.gather(*streams, return_exceptions=True)
        assert hub.viewers == 0 and app.streams == []


async def test_viewers_over_the_cap_are_refused() -> None:
    async with served() as (hub, _, base), aiohttp.ClientSession() as s:
        hub.max_viewers = 1
        async with s.get(base + "/dashboard/events") as first:
            await Events(first).next()
            async with s.get(base + "/dashboard/events") as second:
                assert second.status == 503
                assert (await second.json())["error"]["code"] == "too_many_viewers"


async def test_closing_the_app_ends_open_streams() -> None:
    async with served() as (_, app, base), aiohttp.ClientSession() as s:
        async with s.get(base + "/dashboard/events") as r:
            stream = Events(r)
            await stream.next()
            async with asyncio.timeout(5):
                await app.close()
            with pytest.raises(EOFError):
                await stream.next()


async def test_login_session_and_csrf_guard_the_admin_only_dashboard() -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP address host (127.0.0.1)
    async with (
        served(require_key=True) as (_, _, base),
        aiohttp.ClientSession(cookie_jar=jar) as s,
    ):
        d = base + "/dashboard"
        async with s.get(d + "/session") as r:
            info = await r.json()
            assert info["read"] is False and info["login"] is True and info["required"] is True
        for path in ("/snapshot", "/events"):
            async with s.get(d + path) as r:
                assert r.status == 401, path
        async with s.get(d + "/snapshot", headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 200 and (await r.json())["type"] == "snapshot"
        async with s.get(d + "/snapshot", headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
        async with s.post(d + "/login", data={"key": "not-it"}) as r:
            assert r.status == 401 and "Set-Cookie" not in r.headers
        async with s.post(d + "/login", data={"key": KEY}, headers={"Origin": "http://evil"}) as r:
            assert r.status == 403  # login CSRF
        async with s.post(d + "/login", data={"key": KEY}) as r:
            assert r.status == 200
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            csrf = (await r.json())["csrf"]
        async with s.get(d + "/session") as r:  # the cookie jar sends the session now
            info = await r.json()
            assert info["read"] and info["act"] and info["via"] == "session"
            assert info["csrf"] == csrf
        async with s.get(d + "/snapshot") as r:
            assert r.status == 200
        body = {"text": "hi"}
        async with s.post(d + "/actions/echo", json=body) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "csrf"
        async with s.post(d + "/actions/echo", json=body, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and await r.json() == {"echo": "hi"}
        async with s.post(d + "/logout", headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and "Max-Age=0" in r.headers["Set-Cookie"]
        async with s.get(d + "/snapshot") as r:
            assert r.status == 401


async def test_actions_are_admin_only_posts_with_checked_bodies() -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with served() as (_, _, base), aiohttp.ClientSession() as s:
        d = base + "/dashboard/actions"
        async with s.post(d + "/echo", json={"text": "x"}) as r:
            assert r.status == 401  # reading is open here, acting is not
        async with s.get(d + "/echo", headers=bearer) as r:
            assert r.status == 405
        async with s.post(d + "/nope", json={}, headers=bearer) as r:
            assert r.status == 404
        async with s.post(d + "/echo", json={"text": "x", "extra": 1}, headers=bearer) as r:
            assert r.status == 400 and "extra" in (await r.json())["error"]["message"]
        async with s.post(d + "/echo", data=b"{not json", headers=bearer) as r:
            assert r.status == 400
        async with s.post(d + "/echo", json={"text": "no"}, headers=bearer) as r:
            assert r.status == 409 and (await r.json())["error"]["message"] == "the action says no"
        async with s.post(d + "/echo", json={"text": "yes"}, headers=bearer) as r:
            assert r.status == 200 and await r.json() == {"echo": "yes"}


# --- in the gateway -----------------------------------------------------------------------


def gateway_cfg(tmp_path: Path, *, keys: bool, admin: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "backends": [{"name": "mock1", "type": "mock", "models": ["m"], "cost_sats": 2}],
        "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite'}"},
    }
    if keys:
        cfg["keys"] = [{"name": "alice", "key": "sk-alice-key", "budget_sats": 100}]
    if admin:
        cfg["admin"] = {"key_env": "GATEWAY_ADMIN_KEY"}
    return cfg


async def test_gateway_dashboard_is_admin_only_once_keys_exist(tmp_path: Path) -> None:
    env = {"GATEWAY_ADMIN_KEY": KEY}
    cfg = gateway_cfg(tmp_path, keys=True, admin=True)
    async with gateway(cfg, env=env) as gw, aiohttp.ClientSession() as s:
        alice = client(gw, "sk-alice-key")
        await alice.chat.completions.create(model="m", messages=user("hello"))
        d = gw.url + "/dashboard"
        async with s.get(d + "/") as r:
            assert r.status == 200  # the page itself holds no data
        async with s.get(d + "/snapshot") as r:
            assert r.status == 401
        async with s.get(d + "/snapshot", headers={"Authorization": "Bearer sk-alice-key"}) as r:
            assert r.status == 401  # an API key is not the admin key
        async with s.get(d + "/snapshot", headers={"Authorization": f"Bearer {KEY}"}) as r:
            snap = await r.json()
        assert snap["title"] == "swarm serve"
        assert snap["traffic"] == [
            {"backend": "mock1", "model": "m", "requests": 1, "errors": None, "msats": 2000}
        ]
        assert [b["backend"] for b in snap["breakers"]] == ["mock1"]
        assert snap["breakers"][0]["state"] == "closed"
        keys = {k["account"]: k for k in snap["keys"]}
        assert keys["key:alice"]["budget_msats"] == 100_000
        assert keys["key:alice"]["spent_msats"] == 2000


async def test_gateway_with_keys_and_no_admin_key_keeps_the_dashboard_closed(
    tmp_path: Path,
) -> None:
    async with (
        gateway(gateway_cfg(tmp_path, keys=True, admin=False)) as gw,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(gw.url + "/dashboard/snapshot") as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "no_admin_key"
        async with s.get(gw.url + "/dashboard/session") as r:
            info = await r.json()
            assert info["read"] is False and info["login"] is False


async def test_open_gateway_shows_its_dashboard_and_stops_with_a_viewer(tmp_path: Path) -> None:
    gw_cm = gateway(gateway_cfg(tmp_path, keys=False, admin=False))
    gw = await gw_cm.__aenter__()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(gw.url + "/dashboard/snapshot") as r:
                assert r.status == 200
            async with s.get(gw.url + "/dashboard/events") as r:
                stream = Events(r)
                (snap,) = await stream.next()
                assert "traffic" in snap["panels"]
                async with asyncio.timeout(10):  # a watched dashboard does not hold up a stop
                    await gw.stop(grace_s=5)
                with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                    await stream.next()
    finally:
        with contextlib.suppress(Exception):
            await gw_cm.__aexit__(None, None, None)
