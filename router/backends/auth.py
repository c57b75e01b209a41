"""How an HTTP backend authenticates: bearer token, HTTP basic, or a custom header.

These are also the ``auth`` entries of a ``config.yaml`` backend::

    auth: {type: bearer, token: "sk-..."}
    auth: {type: basic, username: "u", password: "p"}
    auth: {type: header, name: "X-API-Key", value: "k"}

Secrets are ``SecretStr`` so they never show in reprs or logs.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter


class BearerAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["bearer"] = "bearer"
    token: SecretStr

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token.get_secret_value()}"}


class BasicAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["basic"] = "basic"
    username: str
    password: SecretStr

    def headers(self) -> dict[str, str]:
        raw = f"{self.username}:{self.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}


class HeaderAuth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["header"] = "header"
    name: str = Field(min_length=1)
    value: SecretStr

    def headers(self) -> dict[str, str]:
        return {self.name: self.value.get_secret_value()}


BackendAuth = Annotated[BearerAuth | BasicAuth | HeaderAuth, Field(discriminator="type")]
_adapter: TypeAdapter[BearerAuth | BasicAuth | HeaderAuth] = TypeAdapter(BackendAuth)


def parse_auth(value: Any) -> BearerAuth | BasicAuth | HeaderAuth | None:
    """An auth object from a model instance, a dict like the YAML above, or ``None``."""
    if value is None or isinstance(value, (BearerAuth, BasicAuth, HeaderAuth)):
        return value
    return _adapter.validate_python(value)
