"""The gateway's own errors.

:class:`ConfigError` is raised at start when ``config.yaml`` is wrong; its message names the bad
field. :class:`ApiError` is one HTTP error answer in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``) with its status code.
"""

from __future__ import annotations

from router.errors import RouterError


class ConfigError(RouterError, ValueError):
    """``config.yaml`` cannot be used. ``field`` is the dotted path of the bad field (``""`` when
    the problem is the file itself); ``message`` says what is wrong with it."""

    def __init__(self, field: str, message: str, *, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")
        self.field = field
        self.message = message
        self.source = source


class ApiError(RouterError):
    """An error answer: HTTP ``status`` and OpenAI's ``type``/``code``/``param``.

    ``headers`` are extra response headers (``Retry-After`` on 429/503).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)
