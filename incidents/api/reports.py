"""Reports: the summary of incidents over a time window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from incidents.api.queries import reports as queries
from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.correlation.store import current_graph
from incidents.db import utcnow
from incidents.exceptions import ValidationFailed

from .deps import check_token, db_session
from .params import UtcDateTime, strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/reports",
    tags=["reports"],
    dependencies=[Depends(check_token), require(INCIDENTS_READ), Depends(strict_params)],
)

DEFAULT_WINDOW: Final = timedelta(days=7)

EXAMPLE: Final = {
    "from": "2026-11-29T10:00:00Z",
    "to": "2026-12-06T10:00:00Z",
    "incidents": {
        "total": 3,
        "by_severity": {"P0": 0, "P1": 1, "P2": 2, "P3": 0},
        "by_service": [{"service": "database-postgres", "count": 1}],
        "by_team": [{"team": "data-platform", "count": 1}],
    },
    "time_to_acknowledge": {"count": 1, "mean_seconds": 95.0, "p90_seconds": 95.0},
    "time_to_resolve": {"count": 2, "mean_seconds": 410.5, "p90_seconds": 725.0},
    "top_root_causes": [{"service": "database-postgres", "count": 1}],
    "noisiest_alerts": {
        "most_fired": [{"alertname": "RedisDown", "service": "cache-redis", "fired": 4}],
        "paged_without_action": [
            {"alertname": "RedisDown", "service": "cache-redis", "incidents": 1}
        ],
    },
}


class SeverityCounts(BaseModel):
    """Incidents per severity (every severity present, zero included)."""

    P0: int = Field(description="P0 incidents.")
    P1: int = Field(description="P1 incidents.")
    P2: int = Field(description="P2 incidents.")
    P3: int = Field(description="P3 incidents.")


class ServiceCount(BaseModel):
    """How many incidents a service was affected in."""

    service: str = Field(description="The service.")
    count: int = Field(description="Incidents it was affected in (or the most likely cause of).")


class TeamCount(BaseModel):
    """How many incidents touched a team's services."""

    team: str = Field(description="The team, from the service graph; `unknown` if none.")
    count: int = Field(description="Incidents affecting one of its services (each once).")


class IncidentCounts(BaseModel):
    """The incidents opened in the window."""

    total: int = Field(description="Incidents opened in [from, to), merged ones left out.")
    by_severity: SeverityCounts = Field(description="By severity.")
    by_service: list[ServiceCount] = Field(description="By affected service, most first.")
    by_team: list[TeamCount] = Field(description="By the team owning an affected service.")


class SpanStats(BaseModel):
    """A response time over the window's incidents."""

    count: int = Field(description="Incidents that have this time.")
    mean_seconds: float | None = Field(description="The mean, in seconds; null when count is 0.")
    p90_seconds: float | None = Field(
        description="The 90th percentile (nearest rank), in seconds; null when count is 0."
    )


class FiredCount(BaseModel):
    """An alert and how often it fired."""

    alertname: str = Field(description="The alertname label.")
    service: str = Field(description="The service it is about.")
    fired: int = Field(description="Firing episodes that started in the window.")


class QuietPageCount(BaseModel):
    """An alert that paged while nobody acted."""

    alertname: str = Field(description="The alertname label.")
    service: str = Field(description="The service it is about.")
    incidents: int = Field(
        description="Incidents it was in that paged and resolved with no acknowledgement and "
        "no action by a person."
    )


class NoisiestAlerts(BaseModel):
    """The alerts worth tuning."""

    most_fired: list[FiredCount] = Field(description="Those that fired most (top 10).")
    paged_without_action: list[QuietPageCount] = Field(
        description="Those that paged without anyone acting (top 10)."
    )


class SummaryReport(BaseModel):
    """The summary of incidents opened in [from, to)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="The window's start (inclusive, UTC).")
    to: datetime = Field(description="The window's end (exclusive, UTC).")
    incidents: IncidentCounts = Field(description="How many, by severity, service and team.")
    time_to_acknowledge: SpanStats = Field(description="From detection to acknowledgement.")
    time_to_resolve: SpanStats = Field(description="From detection to resolution.")
    top_root_causes: list[ServiceCount] = Field(
        description="The most frequent most-likely-cause services (top 10)."
    )
    noisiest_alerts: NoisiestAlerts = Field(description="Alerts that fired most or paged idly.")


@router.get(
    "/summary",
    response_model=SummaryReport,
    response_model_by_alias=True,
    responses={
        200: {
            "description": "The summary; README's Reports section says how each figure is counted.",
            "content": {"application/json": {"example": EXAMPLE}},
        }
    },
    summary="Summary of incidents over a window (default: the last 7 days)",
)
def summary_report(
    session: Annotated[Session, Depends(db_session)],
    start: Annotated[
        UtcDateTime | None,
        Query(
            alias="from",
            description="Start of the window, ISO 8601 (UTC if no zone); default `to` - 7 days.",
        ),
    ] = None,
    end: Annotated[
        UtcDateTime | None,
        Query(alias="to", description="End of the window (exclusive), ISO 8601; default now."),
    ] = None,
) -> SummaryReport:
    """Counts, response times, root causes and the noisiest alerts of the window."""
    end = end or utcnow()
    start = start or end - DEFAULT_WINDOW
    if start > end:
        raise ValidationFailed("from: must not be after to", field="from")
    data = queries.summary(session, current_graph(session), start=start, end=end)
    return SummaryReport.model_validate(data)
