"""Response bodies shared by many operations: the error body and the ingest answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """One problem with the request."""

    field: str = Field(
        description="Where: a parameter name, or a path into the body such as `alerts[0].labels`."
    )
    message: str = Field(description="What is wrong there.")


class ErrorBody(BaseModel):
    """Every error the API returns has this shape."""

    # Some errors add context of their own (the limit that was passed, for example).
    model_config = ConfigDict(extra="allow")

    error: str = Field(
        description=(
            "A stable code to branch on: `validation_error`, `bad_request`, `unauthorized`, "
            "`forbidden`, `not_found`, `conflict`, `payload_too_large`, `invalid_value`, "
            "`unavailable`, `http_error`."
        ),
        examples=["validation_error"],
    )
    message: str = Field(
        description="What went wrong, for a person; it starts with the field when one is at fault.",
        examples=["status: Input should be 'open', 'resolved' or 'merged'"],
    )
    field: str | None = Field(
        default=None,
        description="The parameter or body field at fault, when there is one.",
        examples=["status"],
    )
    errors: list[FieldError] | None = Field(
        default=None,
        description="Every problem found (at most 20), on validation errors.",
    )


class IngestResult(BaseModel):
    """The answer to an ingest request, sent only once the alerts are committed."""

    status: Literal["accepted", "duplicate"] = Field(
        description=(
            "`accepted`: stored and handed to the pipeline. `duplicate`: the same delivery "
            "arrived within the duplicate window and changes nothing, so it was not applied again."
        )
    )
    alerts: int = Field(description="How many alerts the body held.", ge=0)
    fingerprints: list[str] = Field(
        description="The fingerprint of each alert, in the order of the body."
    )


_ERRORS: dict[int, str] = {
    400: "The body cannot be read: empty, not JSON, or not UTF-8. `field` is `body`.",
    401: (
        "Missing, unknown, revoked or expired key. Send `Authorization: Bearer <key>`, or "
        "basic auth with the key as the password."
    ),
    403: "The key is valid but lacks the scope this operation needs; the message names it.",
    404: "Nothing exists with that identifier; `field` names the path parameter.",
    409: "The request conflicts with what is stored.",
    413: "The body is over the configured size limit (`ingest.max_body_bytes`).",
    415: "The body's media type or encoding is not one this operation takes.",
    422: (
        "A parameter or body field is invalid, or a query parameter is unknown; `field` names "
        "it and `errors` lists every problem."
    ),
    503: (
        "Trouble on our side (the database is unreachable, or the ingest writer is "
        "overloaded). Nothing was stored; retry after `Retry-After` seconds."
    ),
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication schemes the API accepts.",
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    },
}


def error_response(status: int) -> dict[str, Any]:
    """The OpenAPI response object for one error status, with the error body and headers."""
    response: dict[str, Any] = {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status in _HEADERS:
        response["headers"] = _HEADERS[status]
    return response
