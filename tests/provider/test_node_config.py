"""ProviderNode's two forms: ``ProviderNode(config, backend, wallet)`` over a validated
ProviderConfig, and ``ProviderNode(keys, relays, backend, **options)``, whose every option is a
field of that config; unknown options and bad values are typed errors."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from client.dvm.nip90 import JobSpec
from client.nostr.keys import Keys
from provider.config import NODE_OPTIONS, NodeOptions, ProviderConfig, node_config, parse_config
from provider.errors import ConfigError
from provider.limits import Limits
from provider.node import ProviderNode
from provider.pricing import Pricing
from provider.store import JobStore
from relay_mock import Relay
from relay_mock.lightning.ledger import Ledger
from relay_mock.lightning.wallet import LedgerWallet
from tests.support.customer import Customer
from tests.support.nodes import mock_backend

KEYS = Keys.generate()
RELAYS = ["ws://127.0.0.1:1"]


def test_every_option_is_a_config_field() -> None:
    assert set(NODE_OPTIONS) == set(typing.get_type_hints(NodeOptions))
    options: dict[str, object] = {
        "pricing": Pricing(min_msats=7),
        "limits": Limits(max_concurrent=3),
        "payment": "after",
        "invoice_expiry_s": 120,
        "payment_poll_s": 0.5,
        "payment_poll_max_s": 4.0,
        "settle_check_s": 9.0,
        "models": ("m1", "m2"),
        "kinds": (5050, 5001),
        "default_model": "m2",
        "name": "n",
        "about": "a",
        "picture": "https://p",
        "lud16": "me@example.com",
        "d_tag": "dd",
        "announce": False,
        "heartbeat_s": 30,
        "clock_skew_s": 3,
        "retention_days": 2.0,
        "reveal_timeout_s": 5.0,
        "connect_timeout": 1.5,
        "publish_timeout": 2.5,
        "lease_s": 12.0,
    }
    assert set(options) == set(NODE_OPTIONS)
    # A lease is a fleet's: its store is PostgreSQL.
    cfg = node_config(KEYS, RELAYS, store="postgresql://u@127.0.0.1/p", **options)
    assert cfg.node.keys.public_key == KEYS.public_key and cfg.node.relays == RELAYS
    assert cfg.store_target == "postgresql://u@127.0.0.1/p"
    for option, value in options.items():
        table, name = NODE_OPTIONS[option]
        got = getattr(cfg, table) if name is None else getattr(getattr(cfg, table), name)
        assert got == (list(value) if isinstance(value, tuple) else value), option


def test_unknown_options_and_bad_values_are_typed_errors() -> None:
    with pytest.raises(TypeError, match="heartbeat"):
        ProviderNode(KEYS, RELAYS, mock_backend(), heartbeat=5)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match=r"node\.heartbeat_s"):
        ProviderNode(KEYS, RELAYS, mock_backend(), heartbeat_s=0)
    with pytest.raises(ConfigError, match=r"node\.relays"):
        ProviderNode(KEYS, [], mock_backend())
    with pytest.raises(ConfigError, match=r"payment\.policy"):
        ProviderNode(KEYS, RELAYS, mock_backend(), payment="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="needs a wallet"):
        ProviderNode(KEYS, RELAYS, mock_backend(), payment="after")
    with pytest.raises(TypeError, match="ProviderNode"):
        ProviderNode("nsec1...", RELAYS, mock_backend())  # type: ignore[call-overload]
    cfg = node_config(KEYS, RELAYS)
    with pytest.raises(TypeError):
        ProviderNode(cfg, mock_backend(), None, name="x")  # type: ignore[call-overload]


def test_a_file_needs_a_backend_a_node_object_does_not() -> None:
    data = {"node": {"secret_key": KEYS.secret_hex, "relays": RELAYS}}
    with pytest.raises(ConfigError, match=r"backends: at least one"):
        parse_config(data, env={})
    assert ProviderConfig.model_validate(data).backends == []


def test_postgres_store_option_goes_to_the_state_table() -> None:
    cfg = node_config(KEYS, RELAYS, store="postgresql://u@127.0.0.1/p")
    assert cfg.state.url == "postgresql://u@127.0.0.1/p" and cfg.store_target == cfg.state.url
    assert node_config(KEYS, RELAYS).store_target == ":memory:"


async def test_the_config_form_serves_with_its_values(relay: Relay, tmp_path: Path) -> None:
    ledger = Ledger(":memory:")
    wallet = LedgerWallet(ledger, ledger.create_account("node").id)
    cfg = node_config(
        KEYS,
        [relay.url],
        store=tmp_path / "jobs.sqlite",
        payment="after",
        pricing=Pricing(min_msats=3000),
        announce=False,
        connect_timeout=3.0,
    )
    async with ProviderNode(cfg, mock_backend(), wallet) as node, Customer([relay.url]) as c:
        assert node.keys.public_key == KEYS.public_key and node.payment == "after"
        assert node.store.path == str(tmp_path / "jobs.sqlite")
        job = await c.submit(JobSpec(prompt="hi", model="m1"))
        result = await c.result(job)
    assert result.amount is not None and result.amount.msats == 3000
    assert result.content == "Echo: hi"


async def test_a_given_store_is_used_and_left_open(relay: Relay) -> None:
    store = JobStore(":memory:")
    async with ProviderNode(
        KEYS, [relay.url], mock_backend(), store=store, announce=False, connect_timeout=3.0
    ) as node:
        assert node.store is store
    assert store.earnings().jobs_done == 0  # still open: the caller closes it
    store.close()
