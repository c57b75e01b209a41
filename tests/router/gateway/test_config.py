"""config.yaml: the seed's format unchanged, our additions, secrets from the environment, and
errors that name the bad field."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from router.backends.auth import BasicAuth, BearerAuth, HeaderAuth
from router.backends.config import (
    EmbeddedBackendConfig,
    MockBackendConfig,
    OllamaBackendConfig,
    OpenAIBackendConfig,
    SwarmBackendConfig,
)
from router.gateway.config import load_config, parse_config, substitute_env
from router.gateway.errors import ConfigError
from router.strategy import Hybrid

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

SEED_FORMAT = """
# Refresh interval for model updates
refresh_interval: 300
# Backend configurations
backends:
  - name: "backend-name"
    url: "http://backend-url"
    auth: # Optional authentication configuration
      type: "bearer"
      token: "your-token" # For bearer auth
  - name: "basic-auth-backend"
    url: "http://backend-url"
    auth:
      type: "basic"
      username: "user"
      password: "pass"
  - name: "custom-header-auth"
    url: "http://backend-url"
    auth:
      type: "header"
      name: "X-API-Key"
      value: "your-api-key"
"""


def test_seed_format_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_FORMAT)
    cfg = load_config(path, env={})
    assert cfg.refresh_interval == 300
    assert [b.name for b in cfg.backends] == [
        "backend-name",
        "basic-auth-backend",
        "custom-header-auth",
    ]
    bearer, basic, header = cfg.backends
    assert isinstance(bearer, OpenAIBackendConfig) and bearer.type == "openai"
    assert isinstance(bearer.auth, BearerAuth)
    assert bearer.auth.headers() == {"Authorization": "Bearer your-token"}
    assert isinstance(basic, OpenAIBackendConfig) and isinstance(basic.auth, BasicAuth)
    expected = "Basic " + base64.b64encode(b"user:pass").decode()
    assert basic.auth.headers() == {"Authorization": expected}
    assert isinstance(header, OpenAIBackendConfig) and isinstance(header.auth, HeaderAuth)
    assert header.auth.headers() == {"X-API-Key": "your-api-key"}
    assert bearer.url == "http://backend-url"


@pytest.mark.parametrize("name", ["gateway.yaml", "gateway-seed-format.yaml"])
def test_examples_load(name: str) -> None:
    env = {
        "LOCAL_TOKEN": "t",
        "GATEWAY_KEY_ALICE": "sk-alice",
        "GATEWAY_KEY_BOB": "sk-bob",
        "VLLM_KEY": "v",
        "SWARM_NSEC": "",
        "OPENAI_API_KEY": "sk-up",
    }
    cfg = load_config(EXAMPLES / name, env=env)
    assert cfg.backends or cfg.swarm


def test_every_addition() -> None:
    cfg = parse_config(
        {
            "refresh_interval": 10,
            "backends": [
                {
                    "name": "vllm",
                    "url": "http://127.0.0.1:8000/",
                    "priority": 1,
                    "cost_per_1k_input_usd": 0.1,
                    "timeout_s": 5,
                    "rate_limit": {"requests_per_second": 10, "max_concurrent": 4},
                    "circuit_breaker": {"failure_threshold": 2},
                    "retry": {"max_attempts": 1},
                },
                {
                    "name": "ollama",
                    "type": "ollama",
                    "url": "http://127.0.0.1:11434",
                    "models": ["llama3"],
                },
                {
                    "name": "canned",
                    "type": "mock",
                    "models": ["m"],
                    "response": "hi",
                    "usage": [1, 2],
                },
            ],
            "swarm": {
                "relays": ["ws://127.0.0.1:7777"],
                "quorum": 3,
                "bid_sats": 5,
                "budget_sats": 100,
                "models": ["llama3"],
            },
            "routes": {"gpt-4*": ["vllm", "ollama"], "exact": "canned"},
            "aliases": {"fast": "llama3"},
            "default_backend": "vllm",
            "fallbacks": ["canned"],
            "strategy": {"name": "hybrid", "cost_weight": 1, "latency_weight": 1},
            "resilience": {"timeout_s": 9, "retry": {"max_attempts": 2}},
            "server": {"port": 0, "max_body_bytes": 4096},
            "keys": [{"name": "alice", "key": "sk-a", "budget_sats": 10, "budget_usd": 0.5}],
        },
        env={},
    )
    vllm, ollama, canned = cfg.backends
    assert isinstance(vllm, OpenAIBackendConfig) and vllm.url == "http://127.0.0.1:8000"
    opts = vllm.options()
    assert opts.priority == 1 and opts.timeout_s == 5 and opts.rate_limit is not None
    assert opts.rate_limit.max_concurrent == 4
    assert isinstance(ollama, OllamaBackendConfig) and ollama.models == ["llama3"]
    assert isinstance(canned, MockBackendConfig) and canned.usage == (1, 2)
    swarm = cfg.all_backends()[-1]
    assert isinstance(swarm, SwarmBackendConfig) and swarm.name == "swarm"
    assert swarm.quorum == 3 and swarm.budget_sats == 100
    assert cfg.route_targets() == {"gpt-4*": ["vllm", "ollama"], "exact": ["canned"]}
    assert isinstance(cfg.strategy.build(), Hybrid)
    assert cfg.keys[0].key == "sk-a"


def test_strategy_as_plain_name() -> None:
    cfg = parse_config({"backends": [{"name": "a", "url": "http://x"}], "strategy": "cost"})
    assert cfg.strategy.build().name == "cost"


def test_env_substitution_and_env_fields() -> None:
    env = {"HOST": "127.0.0.1:9", "TOKEN": "s3cret", "PW": "pw", "KEY": "sk-env"}
    cfg = parse_config(
        {
            "backends": [
                {
                    "name": "a",
                    "url": "http://${HOST}/v1",
                    "auth": {"type": "bearer", "token_env": "TOKEN"},
                },
                {
                    "name": "b",
                    "url": "http://${MISSING:-localhost:1}",
                    "auth": {"type": "basic", "username": "u", "password": "${PW}"},
                },
                {
                    "name": "c",
                    "url": "http://x",
                    "auth": {"type": "header", "name": "K", "value": "literal $${NOT_A_VAR}"},
                },
            ],
            "keys": [{"name": "k", "key_env": "KEY"}],
        },
        env=env,
    )
    a, b, c = cfg.backends
    assert isinstance(a, OpenAIBackendConfig) and a.url == "http://127.0.0.1:9/v1"
    assert isinstance(a.auth, BearerAuth) and a.auth.headers() == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(cfg) and "s3cret" not in cfg.model_dump_json()
    assert isinstance(b, OpenAIBackendConfig) and b.url == "http://localhost:1"
    assert isinstance(b.auth, BasicAuth) and b.auth.password is not None
    assert b.auth.password.get_secret_value() == "pw"
    assert isinstance(c, OpenAIBackendConfig) and isinstance(c.auth, HeaderAuth)
    assert c.auth.headers() == {"K": "literal ${NOT_A_VAR}"}
    assert cfg.keys[0].key == "sk-env"


def test_substitute_env_names_the_field() -> None:
    with pytest.raises(ConfigError) as e:
        substitute_env({"backends": [{"url": "http://${NOPE}"}]}, {})
    assert e.value.field == "backends[0].url"
    assert "NOPE" in e.value.message


BAD = [
    ({"backends": [{"name": "a", "url": "ftp://x"}]}, "backends[0] (a).url", "http://"),
    (
        {"backends": [{"name": "a"}]},  # the default url, where the gateway itself listens
        "backends[0] (a).url",
        "this gateway's own address (server.port 8080)",
    ),
    (
        {
            "backends": [{"name": "a", "type": "ollama", "url": "http://localhost:9"}],
            "server": {"port": 9},
        },
        "backends[0] (a).url",
        "own address",
    ),
    (
        {
            "backends": [
                {
                    "name": "a",
                    "url": "http://x",
                    "auth": {"type": "bearer", "token": "t"},
                    "api_key": "k",
                }
            ]
        },
        "backends[0] (a)",
        "give auth or api_key, not both",
    ),
    (
        {"backends": [{"name": "e", "type": "embedded", "models": ["a", "b"]}]},
        "backends[0] (e).models",
        "one model",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x", "auth": {"type": "bearer"}}]},
        "backends[0] (a).auth",
        "token (or token_env) is required",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x", "auth": {"type": "magic"}}]},
        "backends[0] (a).auth.type",
        "magic",
    ),
    (
        {"backends": [{"name": "a", "type": "grpc"}]},
        "backends[0] (a).type",
        "type must be one of openai, ollama, swarm, mock, embedded",
    ),
    (
        {
            "backends": [
                {
                    "name": "a",
                    "url": "http://x",
                    "auth": {"type": "bearer", "token_env": "UNSET_VAR"},
                }
            ]
        },
        "backends[0] (a).auth",
        "UNSET_VAR",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x", "colour": "red"}]},
        "backends[0] (a).colour",
        "Extra inputs",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x", "rate_limit": {"requests_per_second": 0}}]},
        "backends[0] (a).rate_limit.requests_per_second",
        "greater than 0",
    ),
    (
        {"backends": [{"name": "s", "type": "swarm", "relays": ["http://r"]}]},
        "backends[0] (s).relays",
        "ws://",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x"}], "routes": {"gpt": "b"}},
        "routes.gpt",
        "unknown backend 'b'",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x"}], "default_backend": "zz"},
        "default_backend",
        "unknown backend",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x"}], "strategy": "fastest"},
        "strategy",
        "unknown strategy",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]},
        "backends[1].name",
        "two backends",
    ),
    (
        {"backends": [{"name": "a", "url": "http://x"}], "keys": [{"name": "k"}]},
        "keys[0]",
        "key (or key_env) is required",
    ),
    (
        {"refresh_interval": "soon", "backends": [{"name": "a", "url": "http://x"}]},
        "refresh_interval",
        "valid number",
    ),
    ({"backends": [{"name": "a", "url": "http://${NOPE}"}]}, "backends[0].url", "NOPE"),
    ({}, "backends", "at least one backend"),
    ({"swarm": {"relays": ["ws://r"], "quorum": 5, "max_quorum": 3}}, "swarm", "max_quorum"),
]


@pytest.mark.parametrize(("data", "field", "words"), BAD)
def test_bad_config_names_the_field(data: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data, env={}, source="config.yaml")
    assert e.value.field == field
    assert words in e.value.message
    assert str(e.value).startswith(f"config.yaml: {field}: ")


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backends:\n  - name: a\n   url: [\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "not valid YAML at line" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in str(e.value)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "mapping" in str(e.value)


def test_backends_are_the_shared_schema_with_default_names_and_urls() -> None:
    """config.yaml's entries are router/backends/config.py's, as in provider.toml: names and URLs
    default the same way, ``api_key`` is bearer auth's shorthand, an empty model list means
    "ask the server"."""
    cfg = parse_config(
        {
            "backends": [
                {"type": "ollama"},
                {"url": "http://127.0.0.1:9000/v1", "api_key_env": "UP_KEY", "models": []},
                {"type": "embedded", "models": ["smol"]},
                {"type": "mock", "name": "canned"},
            ]
        },
        env={"UP_KEY": "sk-up"},
    )
    ollama, openai, embedded, mock = cfg.backends
    assert isinstance(ollama, OllamaBackendConfig)
    assert (ollama.name, ollama.url) == ("ollama", "http://127.0.0.1:11434")
    assert isinstance(openai, OpenAIBackendConfig) and openai.name == "openai1"
    assert isinstance(openai.auth, BearerAuth)
    assert openai.auth.headers() == {"Authorization": "Bearer sk-up"}
    assert isinstance(embedded, EmbeddedBackendConfig) and embedded.name == "embedded2"
    assert isinstance(mock, MockBackendConfig) and mock.name == "canned"
    with pytest.raises(ConfigError) as e:
        parse_config({"backends": [{"url": "http://x", "api_key_env": "UNSET"}]}, env={})
    assert e.value.field == "backends[0]" and "UNSET (api_key_env) is not set" in e.value.message
