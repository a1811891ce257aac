"""Ingestion endpoints: Alertmanager's webhook and a generic JSON list of alerts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from incidents.api.responses import JsonResponse
from incidents.config import IngestSettings
from incidents.db import utcnow
from incidents.exceptions import BadRequest, IncidentsError, ValidationFailed
from incidents.ingest.adapters import Parsed, parse_alertmanager, parse_generic
from incidents.ingest.store import Incoming
from incidents.metrics import INGEST_REJECTED

from .deps import check_token, read_body, service

# Authentication is called in the handler rather than declared as a dependency: on the
# hottest path FastAPI's per-request dependency resolution is measurable.
router = APIRouter(prefix="/api/v1/alerts", tags=["ingest"])

Parser = Callable[[bytes, IngestSettings, datetime], Parsed]


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"{path}.{key!r}"
            found = _find_nul(item, f"{path}.{key}" if path else key)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_nul(item, f"{path}[{index}]")
            if found:
                return found
    return None


async def _ingest(request: Request, parser: Parser, source: str) -> JsonResponse:
    state = service(request)
    await check_token(request)
    try:
        body = await read_body(request)
        if not body.strip():
            raise BadRequest("request body is empty; expected JSON", field="body")
        parsed = parser(body, state.settings.ingest, utcnow())
        if b"\\u0000" in body:
            # PostgreSQL cannot store NUL in text; refuse it by name rather than fail later.
            import orjson

            where = _find_nul(orjson.loads(body), "")
            raise ValidationFailed(
                f"{where or 'body'}: NUL characters are not allowed", field=where or "body"
            )
        text = body.decode("utf-8")
    except IncidentsError as exc:
        INGEST_REJECTED.labels(source, str(exc.status_code)).inc()
        raise
    result = await state.committer.submit(
        Incoming(parsed=parsed, body=text, request_id=request.scope["state"].get("request_id"))
    )
    return JsonResponse(
        {
            "status": "duplicate" if result.duplicate else "accepted",
            "alerts": result.alerts,
            "fingerprints": [a.fingerprint for a in parsed.alerts],
        },
        status_code=200,
    )


@router.post("/alertmanager", summary="Prometheus Alertmanager webhook (payload version 4)")
async def alertmanager_webhook(request: Request) -> JsonResponse:
    """Store an Alertmanager webhook delivery; 2xx only once it is committed."""
    return await _ingest(request, parse_alertmanager, "alertmanager")


@router.post("", summary="Generic JSON list of alerts")
async def generic_alerts(request: Request) -> JsonResponse:
    """Store alerts from any other source."""
    return await _ingest(request, parse_generic, "generic")
