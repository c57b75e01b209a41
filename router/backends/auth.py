"""How an HTTP backend authenticates upstream: bearer token, HTTP basic, or a custom header. The
one set of auth models: ``config.yaml``'s and ``provider.toml``'s backend ``auth`` entries are
these, and so is what ``OpenAICompatBackend(auth=...)`` takes::

    auth: {type: bearer, token: "sk-..."}          # or token_env: VAR
    auth: {type: basic, username: "u", password: "p"}   # or password_env: VAR
    auth: {type: header, name: "X-API-Key", value: "k"} # or value_env: VAR

A secret comes from its field or from the environment variable its ``*_env`` twin names (read at
validation: :mod:`router.config_env`). Secrets are ``SecretStr``: they never show in reprs, logs
or dumps.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

from ..config_env import resolve_secret


class _Auth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _resolved(model: BaseModel, field: str, info: ValidationInfo) -> None:
    """Set ``field`` from itself or from the variable ``field_env`` names (required)."""
    current: SecretStr | None = getattr(model, field)
    value = resolve_secret(
        current.get_secret_value() if current is not None else None,
        getattr(model, f"{field}_env"),
        field,
        info,
    )
    object.__setattr__(model, field, SecretStr(value or ""))


class BearerAuth(_Auth):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"] = "bearer"
    token: SecretStr | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> BearerAuth:
        _resolved(self, "token", info)
        return self

    def headers(self) -> dict[str, str]:
        assert self.token is not None  # set by the validator
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}


class BasicAuth(_Auth):
    """HTTP Basic authentication."""

    type: Literal["basic"] = "basic"
    username: str
    password: SecretStr | None = None
    password_env: str | None = None

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> BasicAuth:
        _resolved(self, "password", info)
        return self

    def headers(self) -> dict[str, str]:
        assert self.password is not None  # set by the validator
        raw = f"{self.username}:{self.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


class HeaderAuth(_Auth):
    """A custom header, e.g. ``X-API-Key: <value>``."""

    type: Literal["header"] = "header"
    name: str = Field(min_length=1)
    value: SecretStr | None = None
    value_env: str | None = None

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> HeaderAuth:
        _resolved(self, "value", info)
        return self

    def headers(self) -> dict[str, str]:
        assert self.value is not None  # set by the validator
        return {self.name: self.value.get_secret_value()}


BackendAuth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]
_adapter: TypeAdapter[BearerAuth | BasicAuth | HeaderAuth] = TypeAdapter(BackendAuth)


def parse_auth(value: Any) -> BearerAuth | BasicAuth | HeaderAuth | None:
    """An auth object from a model instance, a dict like the YAML above, or ``None``."""
    if value is None or isinstance(value, (BearerAuth, BasicAuth, HeaderAuth)):
        return value
    return _adapter.validate_python(value)
