"""The one place where errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from incidents.api.auth import CHALLENGES
from incidents.api.responses import JsonResponse
from incidents.exceptions import (
    BadRequest,
    ClientGone,
    Conflict,
    Forbidden,
    IncidentsError,
    InvalidValue,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    ValidationFailed,
)

log = logging.getLogger(__name__)

# The status of each exception class; a subclass answers as its nearest listed ancestor.
STATUS: dict[type[IncidentsError], int] = {
    IncidentsError: 500,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    ValidationFailed: 422,
    # nginx's "client closed request": neither the client's fault nor a server error.
    ClientGone: 499,
    Unavailable: 503,
}


def status_of(exc: IncidentsError) -> int:
    """The HTTP status that answers this exception."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "request"


def validation_details(exc: RequestValidationError) -> list[dict[str, str]]:
    """Each of the first 20 problems as a field and a message."""
    return [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()[:20]]


def error_response(exc: IncidentsError) -> JsonResponse:
    """Render one of our exceptions."""
    headers = {}
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    status = status_of(exc)
    response = JsonResponse(exc.to_dict(), status_code=status, headers=headers)
    if status == 401:
        for challenge in CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception type to a status code, here and nowhere else."""

    @app.exception_handler(IncidentsError)
    async def _ours(_: Request, exc: IncidentsError) -> JsonResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JsonResponse:
        details = validation_details(exc)
        first = details[0] if details else {"field": "request", "message": "invalid"}
        body = {
            "error": "validation_error",
            "message": f"{first['field']}: {first['message']}",
            "field": first["field"],
            "errors": details,
        }
        return JsonResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JsonResponse:
        return JsonResponse(
            {"error": "http_error", "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def _database(_: Request, exc: Exception) -> JsonResponse:
        return error_response(database_error(exc))

    app.add_exception_handler(StatementError, _database)
    app.add_exception_handler(PoolTimeout, _database)
    app.add_exception_handler(DisconnectionError, _database)


# Bind-time conversion errors: a value in the request that the column type cannot hold.
_BIND_ERRORS = (OverflowError, ValueError)


def database_error(exc: Exception) -> IncidentsError:
    """Sort a database exception: the request's data (4xx), unavailability (503), or a bug.

    Only real unavailability is a 503: a bad value retried forever would page "database
    down" while the database is fine.
    """
    if isinstance(exc, DataError) or (
        type(exc) is StatementError and isinstance(exc.orig, _BIND_ERRORS)
    ):
        reason = _first_line(exc.orig)
        log.warning("request data refused by the database: %s", reason)
        return InvalidValue(
            f"a value in the request is out of range or invalid for storage: {reason}"
        )
    if isinstance(exc, IntegrityError):
        log.warning("write conflicts with stored data: %s", _first_line(getattr(exc, "orig", None)))
        return Conflict("the request conflicts with what is stored")
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | DisconnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return Unavailable("the database is unavailable; retry shortly")
    # A programming error or a fault inside the database: ours, not the client's, and not
    # an outage either.
    log.error("database error", exc_info=exc)
    return IncidentsError("internal error while querying the database")


def _first_line(exc: BaseException | None) -> str:
    text = str(exc or "").strip().splitlines()
    return text[0][:200] if text else "invalid value"
