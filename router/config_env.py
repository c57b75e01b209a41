"""How configuration reads secrets: a field ``X`` holds the value, or its twin ``X_env`` names the
environment variable that holds it (never both).

Validators read the environment passed as validation context (``{"env": mapping}``: what
``config.yaml``'s and ``provider.toml``'s loaders pass, so a test can give its own), else the
process's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, overload

from pydantic import ValidationInfo


def environ(info: ValidationInfo | None) -> Mapping[str, str]:
    """The environment to read: the one in the validation context, else the process's."""
    ctx = info.context if info is not None else None
    env = ctx.get("env") if isinstance(ctx, dict) else None
    if isinstance(env, Mapping):
        return env
    return os.environ


@overload
def resolve_secret(
    value: str | None,
    env: str | None,
    field: str,
    info: ValidationInfo | None,
    *,
    required: Literal[True] = True,
) -> str: ...


@overload
def resolve_secret(
    value: str | None,
    env: str | None,
    field: str,
    info: ValidationInfo | None,
    *,
    required: bool,
) -> str | None: ...


def resolve_secret(
    value: str | None,
    env: str | None,
    field: str,
    info: ValidationInfo | None,
    *,
    required: bool = True,
) -> str | None:
    """``value``, or the variable ``env`` names; raises ValueError naming ``field`` when both are
    given, when the variable is not set, or when neither is given and ``required``."""
    if value is not None and env is not None:
        raise ValueError(f"give {field} or {field}_env, not both")
    if env is not None:
        found = environ(info).get(env)
        if found is None:
            raise ValueError(f"environment variable {env} ({field}_env) is not set")
        return found
    if value is None and required:
        raise ValueError(f"{field} (or {field}_env) is required")
    return value
