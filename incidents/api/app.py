"""The FastAPI application factory: wires settings, database, writer and workers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from incidents import __version__
from incidents.api.responses import JsonResponse
from incidents.config import Settings, get_settings
from incidents.correlation.store import apply_graph_file, log_replacement
from incidents.db import create_db_engine, make_session_factory, session_scope
from incidents.escalation.store import apply_at_startup as apply_policies_at_startup
from incidents.heartbeats.watch import AlertPings, apply_config_section
from incidents.ingest.committer import IngestCommitter
from incidents.ingest.store import Incoming, WriteResult
from incidents.metrics import ALERTS_INGESTED, DUPLICATE_DELIVERIES
from incidents.notify.setup import make_notify_worker
from incidents.oncall.config_file import apply_at_startup
from incidents.pipeline.dispatch import make_dispatcher
from incidents.pipeline.stages import TaskRef
from incidents.playbooks.catalog import catalog_of
from incidents.playbooks.worker import EmbeddedPlaybookWorker

from . import (
    alerts,
    am_alerts,
    am_silences,
    api_keys,
    calendar_feeds,
    escalation,
    heartbeats,
    incident_actions,
    incidents,
    integrations_slack,
    integrations_twilio,
    notifications,
    ops,
    playbooks,
    postmortem,
    reports,
    schedules,
    services,
    silences,
    slack_events,
    twilio_status,
    unreachable_targets,
    users,
    webhooks,
)
from .auth import RefusalLog
from .credentials import startup_warnings
from .deps import ServiceState
from .docs import install_docs
from .errors import install_error_handlers
from .guard import install_guard
from .middleware import RequestContextMiddleware
from .openapi import install_openapi

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing connects until start-up."""
    settings = settings or get_settings()
    engine = create_db_engine(settings.database_url)
    sessions = make_session_factory(engine)
    # Embedded default: notifications go out from this process, woken by the pipeline's
    # commits; with a broker, from `incidents notify-worker`.
    # A broken playbook folder stops the start, naming every problem (file:line).
    catalog_of(settings.playbooks)
    notifier = (
        make_notify_worker(sessions, settings)
        if settings.embedded_worker and settings.notify.enabled
        else None
    )
    runner: EmbeddedPlaybookWorker | None = None

    def hand_on(tasks: list[TaskRef]) -> None:
        # What committed work hands on: notifications to send, playbook runs to run.
        if notifier is not None:
            notifier.hand_on(tasks)
        if runner is not None:
            runner.hand_on(tasks)

    if settings.embedded_worker and settings.playbooks.enabled:
        runner = EmbeddedPlaybookWorker(sessions, settings, on_commit=hand_on)
    dispatcher = make_dispatcher(sessions, settings, hand_on)

    # Alerts that keep firing (the Watchdog) ping heartbeats as they are delivered.
    pings = AlertPings(sessions, settings)

    def on_committed(items: list[Incoming], results: list[WriteResult]) -> None:
        jobs: set[int] = set()
        for item, result in zip(items, results, strict=True):
            if result.duplicate:
                DUPLICATE_DELIVERIES.labels(item.parsed.source).inc()
                continue
            for alert in item.parsed.alerts:
                ALERTS_INGESTED.labels(item.parsed.source, alert.status).inc()
            if result.job_id is not None:
                jobs.add(result.job_id)
        for job_id in sorted(jobs):
            try:
                dispatcher.dispatch(job_id)
            except Exception:
                log.warning("could not hand job %s to the workers; the sweeper will", job_id)
        try:
            # Every delivery counts, duplicates too: a re-send proves Alertmanager works.
            for job_id in pings.observe(items):
                dispatcher.dispatch(job_id)
        except Exception:
            log.exception("could not record heartbeat pings from delivered alerts")

    committer = IngestCommitter(engine, settings.ingest, on_committed)
    state = ServiceState(settings, engine, sessions, committer, dispatcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        startup_warnings(settings)
        graph_file = settings.correlation.graph_file
        if graph_file:
            try:
                with session_scope(sessions) as session:
                    applied = apply_graph_file(session, graph_file)
                if applied is not None:
                    log_replacement(applied, graph_file=graph_file)
            except SQLAlchemyError:
                log.warning("database unavailable at start-up; the graph file was not applied")
        apply_at_startup(sessions, settings.users, settings.schedules)
        # After the users and schedules: the policies name them.
        apply_policies_at_startup(sessions, settings.escalation)
        try:
            heartbeat_job = apply_config_section(sessions, settings)
        except SQLAlchemyError:
            heartbeat_job = None
            log.warning("database unavailable at start-up; the heartbeats were not applied")
        dispatcher.start()
        if heartbeat_job is not None:
            dispatcher.dispatch(heartbeat_job)
        if notifier is not None:
            notifier.start()
        if runner is not None:
            runner.start()
        await committer.start()
        # Long-lived objects from start-up leave the collector's view, and young
        # collections run less often: full collections were pausing requests ~100 ms.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        log.info(
            "service started",
            extra={
                "database": engine.url.render_as_string(hide_password=True),
                "worker": "embedded" if settings.embedded_worker else "celery",
            },
        )
        try:
            yield
        finally:
            await committer.stop()
            dispatcher.stop()
            if notifier is not None:
                notifier.stop()
            if runner is not None:
                runner.stop()
            engine.dispose()

    app = FastAPI(
        title="incidents",
        version=__version__,
        default_response_class=JsonResponse,
        lifespan=lifespan,
        # Served by install_docs from local assets instead of a CDN.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.service = state
    app.state.heartbeat_pings = pings
    install_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(webhooks.router)
    app.include_router(alerts.router)
    app.include_router(incidents.router)
    app.include_router(notifications.router)
    app.include_router(unreachable_targets.router)
    app.include_router(services.router)
    app.include_router(silences.router)
    app.include_router(heartbeats.router)
    app.include_router(am_silences.router)
    app.include_router(calendar_feeds.links)
    app.include_router(calendar_feeds.feeds)
    app.include_router(am_alerts.router)
    app.include_router(twilio_status.router)
    app.include_router(integrations_slack.router)
    app.include_router(integrations_twilio.router)
    app.include_router(slack_events.router)
    app.include_router(users.router)
    app.include_router(schedules.router)
    app.include_router(incident_actions.router)
    app.include_router(escalation.router)
    app.include_router(playbooks.router)
    app.include_router(postmortem.router)
    app.include_router(reports.router)
    app.include_router(api_keys.router)
    install_openapi(app)
    install_docs(app)
    install_guard(app, settings)  # inside the request context: its refusals get an id
    app.add_middleware(
        RequestContextMiddleware, refusals=RefusalLog(settings.http.auth_log_interval_seconds)
    )
    return app
