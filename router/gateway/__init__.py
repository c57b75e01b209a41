"""The OpenAI-compatible HTTP gateway in front of the router and the swarm (`swarm serve`).

    from router.gateway import Gateway, load_config

    async with Gateway(load_config("config.yaml")) as gw:
        ...  # OpenAI clients use gw.url + "/v1"

``Gateway`` is imported on first use, so reading a config does not load the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import GatewayConfig, load_config, parse_config
from .errors import ApiError, ConfigError

if TYPE_CHECKING:
    from .app import Gateway

__all__ = ["ApiError", "ConfigError", "Gateway", "GatewayConfig", "load_config", "parse_config"]


def __getattr__(name: str) -> Any:
    if name == "Gateway":
        from .app import Gateway

        return Gateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
