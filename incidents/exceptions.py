"""One exception hierarchy for the service; the HTTP layer maps it to status codes."""

from __future__ import annotations

from typing import Any


class IncidentsError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """Render the error as the JSON body the API returns."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class ConfigError(IncidentsError):
    """The configuration (environment or YAML file) is invalid; raised at start-up."""

    code = "config_error"


class BadRequest(IncidentsError):
    """The client sent something we cannot parse."""

    status_code = 400
    code = "bad_request"


class ValidationFailed(IncidentsError):
    """The client sent well-formed data that breaks a rule; names the field."""

    status_code = 422
    code = "validation_error"


class PayloadTooLarge(IncidentsError):
    """The request body is over the configured limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(IncidentsError):
    """The body is in a form (such as a Content-Encoding) that we do not read."""

    status_code = 415
    code = "unsupported_media_type"


class ClientGone(IncidentsError):
    """The client closed the connection before its request ended; nobody gets the answer.

    Its status is nginx's 499, so that the access log and metrics do not count it as a
    server error.
    """

    status_code = 499
    code = "client_closed_request"


class Unauthorized(IncidentsError):
    """Missing or wrong credentials."""

    status_code = 401
    code = "unauthorized"


class NotFound(IncidentsError):
    """The named resource does not exist."""

    status_code = 404
    code = "not_found"


class Conflict(IncidentsError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class PreconditionFailed(IncidentsError):
    """The resource changed since the version the client named (If-Match)."""

    status_code = 412
    code = "precondition_failed"


class Unavailable(IncidentsError):
    """Trouble on our side (database down, overloaded): the sender should retry."""

    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after
