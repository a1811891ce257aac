"""One exception hierarchy for the service: what went wrong, never how to answer it.

No class carries an HTTP status; `incidents.api.errors` maps each to one, in one table.

    IncidentsError              a fault of ours (the base; an unexpected one)
    ├── ConfigError             invalid settings or YAML, found at start-up
    ├── BadRequest              input we cannot parse
    ├── ValidationFailed        well-formed input that breaks a rule; names the field
    │   └── InvalidValue        a value the database cannot store
    ├── PayloadTooLarge         a body over its limit
    ├── UnsupportedMediaType    a body in a form we do not read
    ├── ClientGone              the client left before its request ended
    ├── Unauthorized            missing or wrong credentials
    ├── Forbidden               a key without the scope, or an unproven provider signature
    ├── NotFound                no such resource
    ├── Conflict                conflicts with what is stored
    ├── PreconditionFailed      changed since the version the client named
    └── Unavailable             trouble on our side (database down, overloaded): retry
"""

from __future__ import annotations

from typing import Any


class IncidentsError(Exception):
    """Base of every error the service raises on purpose."""

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

    code = "bad_request"


class ValidationFailed(IncidentsError):
    """The client sent well-formed data that breaks a rule; names the field."""

    code = "validation_error"


class InvalidValue(ValidationFailed):
    """The database refused a value from the request (out of range, not representable)."""

    code = "invalid_value"


class PayloadTooLarge(IncidentsError):
    """The request body is over the configured limit."""

    code = "payload_too_large"


class UnsupportedMediaType(IncidentsError):
    """The body is in a form (such as a Content-Encoding) that we do not read."""

    code = "unsupported_media_type"


class ClientGone(IncidentsError):
    """The client closed the connection before its request ended; nobody gets the answer.

    Answered with nginx's 499, so that the access log and metrics do not count it as a
    server error.
    """

    code = "client_closed_request"


class Unauthorized(IncidentsError):
    """Missing or wrong credentials."""

    code = "unauthorized"


class Forbidden(IncidentsError):
    """Not allowed: a valid key without the operation's scope, or a provider's callback
    whose signature does not prove its sender."""

    code = "forbidden"


class NotFound(IncidentsError):
    """The named resource does not exist."""

    code = "not_found"


class Conflict(IncidentsError):
    """The request conflicts with the current state."""

    code = "conflict"


class PreconditionFailed(IncidentsError):
    """The resource changed since the version the client named (If-Match)."""

    code = "precondition_failed"


class Unavailable(IncidentsError):
    """Trouble on our side (database down, overloaded): the sender should retry."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, **extra)
        self.retry_after = retry_after
