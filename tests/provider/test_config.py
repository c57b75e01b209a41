"""provider.toml: the template round-trips, the environment overrides, errors name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from client.nostr.keys import Keys
from provider.assemble import build_backend, build_backends, build_node, build_wallet
from provider.config import BackendConfig, PaymentConfig, load_config, parse_config, render_template
from provider.errors import ConfigError
from router.backends import MockBackend, OllamaBackend, OpenAICompatBackend
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
        BackendConfig(type="openai", url="http://127.0.0.1:8080/v1", models=["m"])
    ]
    assert cfg.limits.max_concurrent == 2 and cfg.pricing.min_msats == 1000


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
    ],
)
def test_bad_config_names_the_problem(change: dict[str, dict[str, object]], words: str) -> None:
    data = tomllib.loads(template())
    for section, values in change.items():
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
    openai = build_backend(
        BackendConfig(type="openai", url="http://h:1/v1", api_key_env="MY_KEY", models=["m"])
    )
    assert isinstance(openai, OpenAICompatBackend) and openai.supported_models() == ["m"]
    assert isinstance(build_backend(BackendConfig(type="ollama")), OllamaBackend)
    mock = build_backend(BackendConfig(type="mock", models=["x"], response="hi"))
    assert isinstance(mock, MockBackend) and mock.supported_models() == ["x"]
    both = build_backends([BackendConfig(type="mock", name="a"), BackendConfig(type="ollama")])
    assert isinstance(both, LmRouter) and set(both.backends) == {"a", "ollama1"}
    with pytest.raises(ConfigError, match="names must differ"):
        build_backends([BackendConfig(type="mock", name="a"), BackendConfig(type="mock", name="a")])
    with pytest.raises(ConfigError, match="openai only"):
        build_backend(BackendConfig(type="ollama", api_key="k"))


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
