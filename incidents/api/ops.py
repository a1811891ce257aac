"""Operations endpoints: liveness, readiness with per-dependency latency, Prometheus metrics."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from incidents.api.queries.escalation import overdue
from incidents.api.queries.notifications import notification_counts, oldest_due
from incidents.api.queries.operations import ping, read_figures
from incidents.api.responses import JsonResponse
from incidents.config import SEVERITIES
from incidents.db import session_scope, utcnow
from incidents.heartbeats import clock
from incidents.heartbeats.status import figures as heartbeat_figures
from incidents.metrics import (
    ALERTS_MUTED,
    BROKER_QUEUE,
    ESCALATION_OLDEST_OVERDUE,
    ESCALATIONS_OVERDUE,
    HEARTBEAT_FIGURES,
    INCIDENT_TOTALS,
    INGEST_WAITING,
    NOTIFICATIONS,
    NOTIFY_LAG,
    OLDEST_OPEN_INCIDENT,
    OPEN_INCIDENTS,
    PIPELINE_LAG,
    PIPELINE_PENDING,
)
from incidents.notify.routing import CHANNELS
from incidents.pipeline.runner import pending_count
from incidents.tasks import QUEUE

from .credentials import may_read
from .deps import ServiceState, service

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


def _check_database(state: ServiceState) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        ping(state.engine)
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:
        return {
            "status": "down",
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }


def _redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def _check_broker(state: ServiceState) -> dict[str, Any]:
    url = state.settings.broker_url
    if not url:
        return {"status": "ok", "kind": "embedded", "latency_ms": 0.0}
    started = time.perf_counter()
    try:
        client = _redis_client(url)
        try:
            client.ping()
        finally:
            client.close()
        return {
            "status": "ok",
            "kind": "redis",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    except Exception as exc:
        return {
            "status": "down",
            "kind": "redis",
            "error": f"{type(exc).__name__}: {exc}"[:200],
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }


@router.get("/healthz", summary="The process is alive")
async def healthz() -> JsonResponse:
    """Always 200 while the process serves requests."""
    return JsonResponse({"status": "ok"})


@router.get("/readyz", summary="Database and broker reachable")
async def readyz(request: Request) -> JsonResponse:
    """200 when every dependency answers, else 503.

    Anonymous callers see each dependency's status only; with a key that may read
    (`incidents:read`) also its kind, latency and error text, which name internal hosts.
    """
    state = service(request)
    checks = {
        "database": await run_in_threadpool(_check_database, state),
        "broker": await run_in_threadpool(_check_broker, state),
    }
    ready = all(c["status"] == "ok" for c in checks.values())
    if not await may_read(request):
        checks = {name: {"status": check["status"]} for name, check in checks.items()}
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


def _set_database_figures(state: ServiceState) -> None:
    figures = read_figures(state.sessions)
    now = utcnow()
    for severity in SEVERITIES:
        count, first = figures.open_incidents.get(severity, (0, now))
        OPEN_INCIDENTS.labels(severity=severity).set(count)
        OLDEST_OPEN_INCIDENT.labels(severity=severity).set(max(0.0, (now - first).total_seconds()))
    oldest = figures.oldest_job
    PIPELINE_LAG.set(0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
    for reason, count in figures.muted.items():
        ALERTS_MUTED.labels(reason=reason).set(count)
    INCIDENT_TOTALS.set(figures.totals)
    with session_scope(state.sessions) as session:
        counts = notification_counts(session)
        waiting = oldest_due(session, now)
        heartbeats = heartbeat_figures(session, clock.now())
        grace = timedelta(seconds=state.settings.pipeline.escalation_sweep_seconds)
        late, age = overdue(session, now, grace)
    HEARTBEAT_FIGURES.set(heartbeats)
    ESCALATIONS_OVERDUE.set(late)
    ESCALATION_OLDEST_OVERDUE.set(max(0.0, age))
    for (channel, status), count in counts.items():
        NOTIFICATIONS.labels(channel=channel, status=status).set(count)
    for channel in CHANNELS:
        since = waiting.get(channel)
        NOTIFY_LAG.labels(channel=channel).set(
            0.0 if since is None else max(0.0, (now - since).total_seconds())
        )


def _refresh_gauges(state: ServiceState) -> None:
    INGEST_WAITING.set(state.committer.pending)
    try:
        PIPELINE_PENDING.set(pending_count(state.sessions))
    except Exception:
        log.warning("could not count pending pipeline jobs", exc_info=True)
    try:
        _set_database_figures(state)
    except Exception:
        log.warning("could not read the incident figures for /metrics", exc_info=True)
    if state.settings.broker_url.startswith(("redis://", "rediss://")):
        try:
            client = _redis_client(state.settings.broker_url)
            try:
                BROKER_QUEUE.set(client.llen(QUEUE))
            finally:
                client.close()
        except Exception:
            log.warning("could not read the broker queue length", exc_info=True)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    """Metrics in the Prometheus text format."""
    await run_in_threadpool(_refresh_gauges, service(request))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
