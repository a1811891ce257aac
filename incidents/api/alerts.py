"""Read API for stored alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from incidents.exceptions import NotFound
from incidents.models import ALERTS, STATES, Alert, AlertState
from incidents.routing.matchers import Matcher, Op, matches_all, parse_matchers

from .deps import check_token, db_session, parse_cursor

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"], dependencies=[Depends(check_token)])

_SCAN_CHUNK = 500


class AlertOut(BaseModel):
    """An alert as the API shows it."""

    fingerprint: str
    source: str
    status: str
    severity: str
    service: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str | None
    group_key: str | None
    first_received: datetime
    last_received: datetime
    receive_count: int
    extra: dict[str, Any]
    silenced_by: list[str] = []
    inhibited_by: list[str] = []
    flapping: bool = False
    ignored_by: str | None = Field(
        default=None,
        description='Why this alert opens no incident and pages no one: `severity="none"`'
        " or the `ingest.ignore_alerts` entry it matched; null for other alerts.",
    )

    @classmethod
    def of(cls, alert: Alert, state: AlertState | None = None) -> AlertOut:
        """Build from a row and what the pipeline made of it (muted, flapping)."""
        out = cls.model_validate(alert, from_attributes=True)
        if state is not None:
            out.silenced_by = list(state.silenced_by)
            out.inhibited_by = list(state.inhibited_by)
            out.flapping = state.flapping
        return out


def _states(session: Session, fingerprints: list[str]) -> dict[str, AlertState]:
    if not fingerprints:
        return {}
    rows = session.scalars(select(AlertState).where(STATES.c.fingerprint.in_(fingerprints)))
    return {r.fingerprint: r for r in rows}


class AlertPage(BaseModel):
    """One page of alerts; pass `next_cursor` as `cursor` for the next one."""

    items: list[AlertOut]
    next_cursor: str | None


@router.get("", response_model=AlertPage, summary="List alerts, newest first")
def list_alerts(
    session: Annotated[Session, Depends(db_session)],
    status: Literal["firing", "resolved"] | None = None,
    severity: Annotated[list[Literal["P0", "P1", "P2", "P3"]] | None, Query()] = None,
    service: str | None = None,
    filter: Annotated[
        list[str] | None,
        Query(description='Label matchers, e.g. filter=alertname="DiskFull" (repeatable)'),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AlertPage:
    """Alerts filtered by status, severity, service and label matchers, paginated by cursor."""
    matchers: list[Matcher] = []
    for index, text in enumerate(filter or []):
        matchers.extend(parse_matchers(text, where=f"filter[{index}]"))
    query = select(Alert).order_by(ALERTS.c.id.desc())
    if status:
        query = query.where(ALERTS.c.status == status)
    if severity:
        query = query.where(ALERTS.c.severity.in_(severity))
    if service:
        query = query.where(ALERTS.c.service == service)
    for m in matchers:
        # Equality on a non-empty value narrows in SQL; every matcher is checked below.
        if m.op is Op.EQ and m.value:
            query = query.where(ALERTS.c.labels[m.name].as_string() == m.value)
    after = parse_cursor(cursor)
    chunk = max(limit + 1, _SCAN_CHUNK) if matchers else limit + 1
    found: list[Alert] = []
    last_id: int | None = None
    more = False
    while not more:
        page = query if after is None else query.where(ALERTS.c.id < after)
        rows = list(session.scalars(page.limit(chunk)))
        for row in rows:
            if not matches_all(matchers, row.labels):
                continue
            if len(found) == limit:
                more = True
                break
            found.append(row)
            last_id = row.id
        if len(rows) < chunk:
            break
        after = rows[-1].id
    states = _states(session, [a.fingerprint for a in found])
    items = [AlertOut.of(a, states.get(a.fingerprint)) for a in found]
    return AlertPage(items=items, next_cursor=str(last_id) if more else None)


@router.get("/{fingerprint}", response_model=AlertOut, summary="One alert by fingerprint")
def get_alert(fingerprint: str, session: Annotated[Session, Depends(db_session)]) -> AlertOut:
    """The alert with this fingerprint."""
    alert = session.scalars(select(Alert).where(ALERTS.c.fingerprint == fingerprint)).first()
    if alert is None:
        raise NotFound(f"no alert with fingerprint {fingerprint!r}", field="fingerprint")
    return AlertOut.of(alert, session.get(AlertState, fingerprint))
