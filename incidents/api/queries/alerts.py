"""Reads behind /api/v1/alerts: pages of alerts, one alert, and what the pipeline made of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from sqlmodel import col

from incidents.models import Alert, AlertState
from incidents.routing.matchers import Matcher, Op, matches_all

# Rows read per round while label matchers that SQL cannot check filter the page.
SCAN_CHUNK = 500


@dataclass
class AlertPage:
    """Alerts of one page, newest first, with the id to continue after when there are more."""

    alerts: list[Alert]
    next_after: int | None


def _filtered(
    status: str | None, severities: Sequence[str], service: str | None, matchers: list[Matcher]
) -> Select[Alert]:
    query = select(Alert).order_by(col(Alert.id).desc())
    if status:
        query = query.where(col(Alert.status) == status)
    if severities:
        query = query.where(col(Alert.severity).in_(severities))
    if service:
        query = query.where(col(Alert.service) == service)
    for m in matchers:
        # Equality on a non-empty value narrows in SQL; every matcher is checked in Python.
        if m.op is Op.EQ and m.value:
            query = query.where(col(Alert.labels)[m.name].as_string() == m.value)
    return query


def list_alerts(
    session: Session,
    *,
    status: str | None,
    severities: Sequence[str],
    service: str | None,
    matchers: list[Matcher],
    limit: int,
    after: int | None,
) -> AlertPage:
    """Up to `limit` alerts with ids below `after`, matching every filter, newest first."""
    query = _filtered(status, severities, service, matchers)
    chunk = max(limit + 1, SCAN_CHUNK) if matchers else limit + 1
    found: list[Alert] = []
    last_id: int | None = None
    more = False
    while not more:
        page = query if after is None else query.where(col(Alert.id) < after)
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
    return AlertPage(alerts=found, next_after=last_id if more else None)


def find_alert(session: Session, *, fingerprint: str) -> Alert | None:
    """The alert with this fingerprint, if stored."""
    return session.scalars(select(Alert).where(col(Alert.fingerprint) == fingerprint)).first()


def alert_states(session: Session, *, fingerprints: Sequence[str]) -> dict[str, AlertState]:
    """What the pipeline made of these alerts (muting, flapping), by fingerprint."""
    if not fingerprints:
        return {}
    rows = session.scalars(select(AlertState).where(col(AlertState.fingerprint).in_(fingerprints)))
    return {r.fingerprint: r for r in rows}


def alert_state(session: Session, *, fingerprint: str) -> AlertState | None:
    """What the pipeline made of one alert, if it has handled it."""
    return session.get(AlertState, fingerprint)
