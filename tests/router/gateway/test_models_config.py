"""Per-model prices and limits in a backend's ``models`` list (the TS seed's shape), and the
bundled price table for well-known model names, through the official openai client against a
real HTTP upstream."""

from __future__ import annotations

import openai
import pytest

from router.gateway.config import parse_config
from router.prices import table_price
from tests.support.gateway import client, gateway, user
from tests.support.upstreams import FakeOpenAI


async def test_model_entries_set_prices_and_limits() -> None:
    async with FakeOpenAI(models=["gpt-x", "gpt-x-mini", "gpt-4o-mini"], reply="a b c") as up:
        cfg = {
            "backends": [
                {
                    "name": "openai",
                    "url": up.base_url,
                    "models": [
                        {
                            "name": "gpt-x",
                            "input_per_1k_usd": 0.003,
                            "output_per_1k_usd": 0.006,
                            "max_tokens": 64,
                        },
                        "gpt-x-mini",
                        "gpt-4o-mini",
                    ],
                }
            ]
        }
        async with gateway(cfg) as gw:
            c = client(gw)
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-x", messages=user("one two"), max_tokens=64
            )
            r = raw.parse()
            assert r.usage is not None
            want = (r.usage.prompt_tokens * 0.003 + r.usage.completion_tokens * 0.006) / 1000
            assert float(raw.headers["x-swarm-cost-usd"]) == pytest.approx(want, abs=1e-8)
            with pytest.raises(openai.BadRequestError) as e:
                await c.chat.completions.create(model="gpt-x", messages=user("q"), max_tokens=65)
            assert "limit 64" in e.value.message
            # a model without its own price, and not in the table: not priced
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-x-mini", messages=user("q"), max_tokens=65
            )
            assert "x-swarm-cost-usd" not in raw.headers
            # a well-known name: priced from the bundled table
            raw = await c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=user("q")
            )
            r = raw.parse()
            assert r.usage is not None
            pin, pout = 0.00015, 0.0006
            want = (r.usage.prompt_tokens * pin + r.usage.completion_tokens * pout) / 1000
            assert float(raw.headers["x-swarm-cost-usd"]) == pytest.approx(want, abs=1e-8)


def test_the_price_table_matches_dated_names_only() -> None:
    assert table_price("gpt-4o") == (0.0025, 0.01)
    assert table_price("gpt-4o-2024-08-06") == (0.0025, 0.01)
    assert table_price("openai/gpt-4o-mini") == (0.00015, 0.0006)  # the longer name wins
    assert table_price("gpt-4o-mini-2024-07-18") == (0.00015, 0.0006)
    assert table_price("gpt-4o-custom") is None  # not a version of it
    assert table_price("llama3.2:1b") is None


def test_model_entries_are_checked() -> None:
    base = {"name": "b", "url": "http://127.0.0.1:1"}
    with pytest.raises(Exception, match="listed twice"):
        parse_config({"backends": [{**base, "models": [{"name": "m"}, {"name": "m"}]}]})
    with pytest.raises(Exception, match="max_tokens"):
        parse_config({"backends": [{**base, "models": [{"name": "m", "max_tokens": 0}]}]})
    with pytest.raises(Exception, match="input_per_1k"):
        parse_config({"backends": [{**base, "models": [{"name": "m", "input_per_1k": 1}]}]})
