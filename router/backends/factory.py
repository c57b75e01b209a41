"""The one factory for configured backends: a :mod:`router.backends.config` entry becomes the
backend and the router options to add it with. ``swarm serve`` (router/gateway/build.py) and
``swarm provider run`` (provider/assemble.py) both build their backends here.

The swarm is not built here: its client, wallet and spend accounts belong to the gateway.
"""

from __future__ import annotations

from typing import TypedDict

from ..options import BackendOptions
from .base import LmBackend
from .config import (
    AnyBackend,
    EmbeddedBackendConfig,
    MockBackendConfig,
    OllamaBackendConfig,
    OpenAIBackendConfig,
)


class _HttpTimeout(TypedDict, total=False):
    """An HTTP backend's timeout, when one is set (else the backend keeps its own default)."""

    timeout_s: float


def build_backend(
    cfg: AnyBackend, *, default_timeout_s: float | None = None
) -> tuple[LmBackend, BackendOptions]:
    """The backend ``cfg`` describes and its router options. ``default_timeout_s`` applies when
    the entry sets no ``timeout_s`` (unset too: the backend's own default)."""
    name = cfg.name or cfg.type
    timeout_s = cfg.timeout_s if cfg.timeout_s is not None else default_timeout_s
    # An empty list is the same as none: the models are asked of the server.
    models = list(cfg.models) if cfg.models else None
    backend: LmBackend
    options = cfg.options()
    if isinstance(cfg, OpenAIBackendConfig | OllamaBackendConfig):
        http_timeout: _HttpTimeout = {} if timeout_s is None else {"timeout_s": timeout_s}
        if isinstance(cfg, OpenAIBackendConfig):
            from .openai_compat import OpenAICompatBackend

            backend = OpenAICompatBackend(
                cfg.url,
                auth=cfg.auth,
                name=name,
                models=models,
                headers=dict(cfg.headers),
                drop_params=cfg.drop_params,
                transport=cfg.transport,
                **http_timeout,
            )
        else:
            from .ollama import OllamaBackend

            headers = dict(cfg.headers)
            if cfg.auth is not None:
                headers.update(cfg.auth.headers())
            backend = OllamaBackend(
                cfg.url, name=name, models=models, headers=headers, **http_timeout
            )
        # HTTP backends enforce the timeout on their own requests; a router timer on top would
        # only cost time per request.
        return backend, options.model_copy(update={"timeout_s": None})
    if isinstance(cfg, EmbeddedBackendConfig):
        from .llamacpp import LlamaCppBackend

        # Loads on first use (or load()): a missing llama-cpp-python is reported then, not here.
        backend = LlamaCppBackend(cfg.path, name=name, model_name=models[0] if models else None)
    elif isinstance(cfg, MockBackendConfig):
        from .mock import MockBackend

        mock = MockBackend(name).with_response(cfg.response)
        if models:
            mock.with_models(*models)
        if cfg.usage is not None:
            mock.with_usage(*cfg.usage)
        if cfg.cost_sats is not None:
            mock.with_cost(sats=cfg.cost_sats)
        if cfg.latency_ms:
            mock.with_latency(cfg.latency_ms)
        backend = mock
    else:
        raise ValueError(f"backend {name}: type {cfg.type!r} is built by the gateway, not here")
    if options.timeout_s is None and timeout_s is not None:
        options = options.model_copy(update={"timeout_s": timeout_s})
    return backend, options
