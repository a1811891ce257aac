"""The one place where errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from incidents.api.auth import CHALLENGES
from incidents.api.responses import JsonResponse
from incidents.exceptions import IncidentsError, Unavailable

log = logging.getLogger(__name__)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "request"


def error_response(exc: IncidentsError) -> JsonResponse:
    """Render one of our exceptions."""
    headers = {}
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    response = JsonResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)
    if exc.status_code == 401:
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
        details = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()[:20]
        ]
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
        log.warning("database unavailable: %s", exc.__class__.__name__)
        return error_response(Unavailable("the database is unavailable; retry shortly"))

    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(PoolTimeout, _database)
    app.add_exception_handler(DBAPIError, _database)
