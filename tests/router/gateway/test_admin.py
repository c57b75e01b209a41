"""The admin API: make, list, rotate and revoke keys, read spend; keys made here persist
across a restart. Raw HTTP for the admin calls, the official openai client for the keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.gateway import client, gateway, user

ADMIN = "admin-secret-0123456789"


def cfg(tmp_path: Path) -> dict[str, Any]:
    return {
        "backends": [
            {"name": "paid", "type": "mock", "models": ["m", "n"], "cost_sats": 2},
        ],
        "keys": [{"name": "cfg", "key": "sk-from-config-file"}],
        "admin": {"key_env": "GATEWAY_ADMIN_KEY"},
        "state": {"url": f"sqlite:///{tmp_path / 'state.sqlite'}"},
    }


async def call(
    s: aiohttp.ClientSession, method: str, url: str, key: str = ADMIN, **kw: Any
) -> tuple[int, Any]:
    async with s.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kw) as r:
        return r.status, await r.json()


async def test_keys_made_rotated_and_revoked(tmp_path: Path) -> None:
    env = {"GATEWAY_ADMIN_KEY": ADMIN}
    async with gateway(cfg(tmp_path), env=env) as gw, aiohttp.ClientSession() as s:
        base = gw.url + "/admin"
        assert (await call(s, "GET", base + "/keys", key="wrong"))[0] == 401
        assert (await call(s, "GET", base + "/keys", key="sk-from-config-file"))[0] == 401
        status, made = await call(
            s, "POST", base + "/keys", json={"name": "alice", "models": ["m"], "budget_sats": 5}
        )
        assert status == 201 and made["name"] == "alice" and made["key"].startswith("sk-swarm-")
        alice = client(gw, made["key"])
        assert (await alice.chat.completions.create(model="m", messages=user("q"))).choices
        with pytest.raises(openai.PermissionDeniedError):
            await alice.chat.completions.create(model="n", messages=user("q"))
        # the same name again, a bad field, an unknown field
        assert (await call(s, "POST", base + "/keys", json={"name": "alice"}))[0] == 409
        status, err = await call(s, "POST", base + "/keys", json={"name": "b", "rpm": 0})
        assert status == 400 and "rpm" in err["error"]["message"]
        status, err = await call(s, "POST", base + "/keys", json={"name": "b", "budget": 1})
        assert status == 400 and err["error"]["param"] == "budget"
        # listed without secrets, with spend
        status, listing = await call(s, "GET", base + "/keys")
        rows = {r["name"]: r for r in listing["data"]}
        assert rows["alice"]["source"] == "admin" and rows["cfg"]["source"] == "config"
        assert rows["alice"]["spent_sats"] == 2 and "key" not in rows["alice"]
        assert made["key"] not in str(listing)
        # rotate: the old key stops working at once, the new one works
        status, rotated = await call(s, "POST", base + "/keys/alice/rotate")
        assert status == 200 and rotated["key"] != made["key"]
        with pytest.raises(openai.AuthenticationError):
            await alice.chat.completions.create(model="m", messages=user("q"))
        fresh = client(gw, rotated["key"])
        await fresh.chat.completions.create(model="m", messages=user("q"))
        # spend per key and model
        status, spend = await call(s, "GET", base + "/spend")
        assert spend["by_key"]["alice"]["m"]["spent_msats"] == 4000
        assert spend["accounts"]["key:alice"]["budget_msats"] == 5000
        # config keys are the file's
        assert (await call(s, "DELETE", base + "/keys/cfg"))[0] == 409
        assert (await call(s, "DELETE", base + "/keys/alice"))[0] == 200
        with pytest.raises(openai.AuthenticationError):
            await fresh.chat.completions.create(model="m", messages=user("q"))
        assert (await call(s, "DELETE", base + "/keys/alice"))[0] == 404


async def test_admin_made_keys_and_their_spend_survive_a_restart(tmp_path: Path) -> None:
    env = {"GATEWAY_ADMIN_KEY": ADMIN}
    async with gateway(cfg(tmp_path), env=env) as gw, aiohttp.ClientSession() as s:
        _, made = await call(s, "POST", gw.url + "/admin/keys", json={"name": "bob"})
        await client(gw, made["key"]).chat.completions.create(model="m", messages=user("q"))
    async with gateway(cfg(tmp_path), env=env) as gw:
        r = await client(gw, made["key"]).chat.completions.create(model="m", messages=user("q"))
        assert r.choices
        assert gw.keys.accounts["bob"].spent_sats == 4


async def test_without_admin_config_there_is_no_admin_api(tmp_path: Path) -> None:
    data = cfg(tmp_path)
    del data["admin"]
    async with gateway(data) as gw, aiohttp.ClientSession() as s:
        assert (await call(s, "GET", gw.url + "/admin/keys"))[0] == 404
