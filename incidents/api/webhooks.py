"""Ingestion endpoints: Alertmanager's webhook and a generic JSON list of alerts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from incidents.api.responses import JsonResponse
from incidents.apikeys.scopes import ALERTS_WRITE
from incidents.config import IngestSettings
from incidents.db import utcnow
from incidents.exceptions import BadRequest, ClientGone, IncidentsError
from incidents.ingest.adapters import Parsed, parse_alertmanager, parse_generic
from incidents.ingest.store import Incoming
from incidents.metrics import INGEST_REJECTED

from .deps import read_body, service
from .errors import status_of
from .principal import declares, demand

# Authentication and the scope are checked in the handler rather than declared as
# dependencies: on the hottest path FastAPI's per-request dependency resolution is
# measurable. `declares` tells the scope test (and the docs) what `demand` checks.
router = APIRouter(prefix="/api/v1/alerts", tags=["ingest"])

Parser = Callable[[bytes, IngestSettings, datetime], Parsed]

# Bodies above this size are parsed in a worker thread: a storm of tens of megabytes
# takes seconds to validate, and other requests must not wait on the event loop for it.
_INLINE_PARSE_BYTES = 256 * 1024


async def _ingest(request: Request, parser: Parser, source: str) -> JsonResponse:
    state = service(request)
    await demand(request, ALERTS_WRITE)
    settings = state.settings.ingest
    try:
        body = await read_body(request, allow_gzip=True)
        if not body or body.isspace():
            raise BadRequest("request body is empty; expected JSON", field="body")
        if len(body) > _INLINE_PARSE_BYTES:
            parsed = await run_in_threadpool(parser, body, settings, utcnow())
        else:
            parsed = parser(body, settings, utcnow())
    except ClientGone:
        raise  # logged where it happened; not a rejection, nobody hears the answer
    except IncidentsError as exc:
        INGEST_REJECTED.labels(source, str(status_of(exc))).inc()
        raise
    result = await state.committer.submit(
        Incoming(parsed=parsed, body=body, request_id=request.scope["state"].get("request_id"))
    )
    return JsonResponse(
        {
            "status": "duplicate" if result.duplicate else "accepted",
            "alerts": result.alerts,
            "fingerprints": [a.fingerprint for a in parsed.alerts],
        },
        status_code=200,
    )


@declares(ALERTS_WRITE)
@router.post("/alertmanager", summary="Prometheus Alertmanager webhook (payload version 4)")
async def alertmanager_webhook(request: Request) -> JsonResponse:
    """Store an Alertmanager webhook delivery; 2xx only once it is committed."""
    return await _ingest(request, parse_alertmanager, "alertmanager")


@declares(ALERTS_WRITE)
@router.post("", summary="Generic JSON list of alerts")
async def generic_alerts(request: Request) -> JsonResponse:
    """Store alerts from any other source."""
    return await _ingest(request, parse_generic, "generic")
