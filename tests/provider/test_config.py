"""provider.toml: the template round-trips, the environment overrides, errors name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from client.nostr.keys import Keys
from provider.assemble import build_backends, build_node, build_wallet
from provider.config import PaymentConfig, load_config, parse_config, render_template
from provider.errors import ConfigError
from router.backends import MockBackend, OllamaBackend, OpenAICompatBackend
from router.backends.auth import BearerAuth
from router.backends.config import (
    MockBackendConfig,
    OllamaBackendConfig,
    OpenAIBackendConfig,
)
from router.backends.factory import build_backend
from router.errors import RateLimited
from router.router import LmRouter


def template(**kw: object) -> str:
    base: dict[str, object] = {"relays": ["ws://127.0.0.1:7777"], "backend": "ollama"}
    base.update(kw)
    return render_template(Keys.generate(), **base)  # type: ignore[arg-type]


def test_template_is_valid_commented_toml(tmp_path: Path) -> None:
    keys = Keys.generate()
    text = render_template(keys, relays=["wss://a", "wss://b"], backend="openai", models=["m"])
    assert text.count("#") > 30  # explained, not just values
    path = tmp_path / "provider.toml"
    path.write_text(text)
    cfg = load_config(path, env={})
    assert cfg.node.keys.public_key == keys.public_key
    assert cfg.node.relays == ["wss://a", "wss://b"]
    assert cfg.node.store == str(tmp_path / "provider.sqlite")  # relative to the file
    assert cfg.payment.policy == "free"
    assert cfg.backends == [
        OpenAIBackendConfig(name="openai", url="http://127.0.0.1:8080/v1", models=["m"])
    ]
    assert cfg.limits.max_concurrent == 2 and cfg.pricing.min_msats == 1000


def test_the_templates_fleet_table_is_valid_once_uncommented(tmp_path: Path) -> None:
    lines = template().splitlines()
    start = lines.index("# [state]")
    for i in range(start, start + 3):  # the table, url and lease_s
        lines[i] = lines[i].removeprefix("# ")
    path = tmp_path / "provider.toml"
    path.write_text("\n".join(lines))
    cfg = load_config(path, env={})
    assert cfg.state.url == "postgresql://swarm@db.internal:5432/provider"
    assert cfg.state.lease_s == 30 and cfg.store_target == cfg.state.url


def test_environment_overrides_the_file() -> None:
    data = tomllib.loads(template())
    env = {
        "SWARM_PROVIDER_RELAYS": "wss://x, wss://y",
        "SWARM_PROVIDER_NAME": "from env",
        "SWARM_PROVIDER_ANNOUNCE": "false",
        "SWARM_PROVIDER_MODELS": '["a", "b"]',
        "SWARM_PROVIDER_LIMITS_MAX_CONCURRENT": "8",
        "SWARM_PROVIDER_PRICING_MIN_MSATS": "42",
        "SWARM_PROVIDER_PAYMENT_POLICY": "after",
        "SWARM_PROVIDER_PAYMENT_NWC": "nostr+walletconnect://x",
        "SWARM_PROVIDER_BACKENDS": '[{"type": "mock", "models": ["m"]}]',
        "UNRELATED": "1",
    }
    cfg = parse_config(data, env=env)
    assert cfg.node.relays == ["wss://x", "wss://y"]
    assert cfg.node.name == "from env" and cfg.node.announce is False
    assert cfg.node.models == ["a", "b"]
    assert cfg.limits.max_concurrent == 8 and cfg.pricing.min_msats == 42
    assert cfg.payment.policy == "after" and cfg.payment.nwc == "nostr+walletconnect://x"
    assert cfg.backends[0].type == "mock"


def test_secret_key_from_environment_only() -> None:
    data = tomllib.loads(template())
    del data["node"]["secret_key"]
    with pytest.raises(ConfigError, match=r"node\.secret_key"):
        parse_config(data, env={})
    keys = Keys.generate()
    cfg = parse_config(data, env={"SWARM_PROVIDER_SECRET_KEY": keys.secret_hex})
    assert cfg.node.keys.public_key == keys.public_key


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"node": {"secret_key": "nsec1bad"}}, "node.secret_key"),
        ({"node": {"relays": ["http://x"]}}, "ws:// or wss://"),
        ({"limits": {"max_concurrent": 0}}, "limits.max_concurrent"),
        ({"pricing": {"min_msats": -1}}, "pricing.min_msats"),
        ({"payment": {"policy": "later"}}, "payment.policy"),
        ({"payment": {"policy": "before"}}, "needs a wallet"),
        ({"bogus": {}}, "bogus"),
        ({"backends": [{"type": "swarm", "relays": ["ws://r"]}]}, "backends.0.type: type must"),
        ({"backends": [{"type": "ollama", "colour": "red"}]}, "backends.0.colour"),
        ({"backends": [{"type": "openai", "url": "ftp://x"}]}, "backends.0.url"),
        ({"backends": [{"type": "openai", "api_key_env": "UNSET"}]}, "variable UNSET"),
        (
            {"backends": [{"type": "ollama", "auth": {"type": "bearer", "token_env": "UNSET"}}]},
            "backends.0.auth: environment variable UNSET",
        ),
    ],
)
def test_bad_config_names_the_problem(change: dict[str, object], words: str) -> None:
    data = tomllib.loads(template())
    for section, values in change.items():
        if isinstance(values, list):
            data[section] = values
        else:
            data.setdefault(section, {}).update(values)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        parse_config(data, env={})


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    env_bad = tmp_path / "ok.toml"
    env_bad.write_text(template())
    with pytest.raises(ConfigError, match="environment"):
        load_config(env_bad, env={"SWARM_PROVIDER_BACKENDS": "[not json"})


def test_backends_are_built_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    openai, _ = build_backend(
        OpenAIBackendConfig(url="http://h:1/v1", api_key_env="MY_KEY", models=["m"])
    )
    assert isinstance(openai, OpenAICompatBackend) and openai.supported_models() == ["m"]
    assert openai.auth == BearerAuth(token="sk-test")
    ollama, _ = build_backend(OllamaBackendConfig(api_key="k"))  # bearer auth for both types
    assert isinstance(ollama, OllamaBackend) and ollama.root == "http://127.0.0.1:11434"
    mock, _ = build_backend(MockBackendConfig(models=["x"], response="hi"))
    assert isinstance(mock, MockBackend) and mock.supported_models() == ["x"]
    both = build_backends([MockBackendConfig(name="a"), OllamaBackendConfig()])
    assert isinstance(both, LmRouter) and set(both.backends) == {"a", "ollama1"}
    with pytest.raises(ConfigError, match="names must differ"):
        build_backends([MockBackendConfig(name="a"), MockBackendConfig(name="a")])


async def test_router_options_of_one_backend_are_honoured() -> None:
    """The router's per-backend options mean the same in provider.toml as in config.yaml: one
    backend with a rate limit runs behind an LmRouter that enforces it."""
    plain = build_backends([MockBackendConfig(timeout_s=5)])
    assert isinstance(plain, MockBackend)
    limited = build_backends([MockBackendConfig(rate_limit={"requests_per_second": 1})])
    assert isinstance(limited, LmRouter)
    await limited.complete("mock-model", "hi")
    with pytest.raises(RateLimited):
        await limited.complete("mock-model", "hi")


def test_provider_toml_and_config_yaml_load_the_same_backend_entry(tmp_path: Path) -> None:
    """One schema: the same entry in both files gives equal configs and equal backends."""
    from router.gateway.config import parse_config as parse_gateway

    entry = {
        "type": "openai",
        "name": "gpu",
        "url": "http://10.0.0.2:8000/v1",
        "auth": {"type": "header", "name": "X-Key", "value_env": "GPU_KEY"},
        "models": ["llama3"],
        "priority": 2,
        "drop_params": ["logit_bias"],
    }
    env = {"GPU_KEY": "k1"}
    data = tomllib.loads(template())
    data["backends"] = [entry]
    provider = parse_config(data, env=env).backends[0]
    gateway = parse_gateway({"backends": [entry]}, env=env).backends[0]
    assert provider == gateway
    built = [build_backend(b)[0] for b in (provider, gateway)]
    assert all(isinstance(b, OpenAICompatBackend) for b in built)
    assert [b.auth for b in built] == [provider.auth, provider.auth]  # type: ignore[attr-defined]


def test_wallet_and_node_from_config(tmp_path: Path) -> None:
    assert build_wallet(PaymentConfig()) is None
    ledger_cfg = PaymentConfig(policy="after", ledger=str(tmp_path / "ledger.sqlite"))
    first = build_wallet(ledger_cfg)
    second = build_wallet(ledger_cfg)
    # The "provider" account is made once and found again.
    assert first is not None and second is not None
    assert first.account_id == second.account_id  # type: ignore[attr-defined]
    data = tomllib.loads(template(backend="mock", models=["m"]))
    node = build_node(parse_config(data, env={}, base=tmp_path))
    assert node.payment == "free" and node.limits.max_concurrent == 2
    assert isinstance(node.backend, MockBackend)
