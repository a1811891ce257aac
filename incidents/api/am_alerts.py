"""Firing alerts in the shape of Alertmanager's v2 API (`GET /api/v2/alerts`), read-only.

`amtool alert query` and other clients of Alertmanager's API read the alerts this service
holds, with the silences and inhibitions the pipeline applied. As in Alertmanager:
- only firing alerts are listed (a resolved alert is gone);
- `state` is `suppressed` when a silence or an inhibiting alert mutes it, `active` once
  the pipeline has handled it, and `unprocessed` before that;
- `filter` takes matchers (every one must match the alert's labels), and `active`,
  `silenced`, `inhibited` and `unprocessed` say which states to include (all by default);
- `receiver` is a regular expression (RE2, fully anchored) on the receiver's name. This
  service is the one receiver its alerts went to, named `incidents`: its routing tree
  works on incidents, not on single alerts.
Bad input is a 400 whose body is the message as a JSON string, as for the v2 silences.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.models import Alert, AlertState
from incidents.routing.matchers import Matcher, Op, matches_all, parse_matcher
from incidents.vocab import AlertStatus

from .am_silences import AlertmanagerRoute, _time
from .deps import check_token, db_session
from .principal import require

RECEIVER = "incidents"
# Alerts read per statement while the filters that SQL cannot check are applied.
CHUNK = 2000

router = APIRouter(
    prefix="/api/v2",
    tags=["alerts (Alertmanager v2 API)"],
    dependencies=[Depends(check_token)],
    route_class=AlertmanagerRoute,
    responses={400: {"description": "Bad input: the message, naming the field, as a JSON string"}},
)


class AmReceiver(BaseModel):
    """A receiver the alert was sent to."""

    name: str = Field(description="Always `incidents`: this service")


class AmAlertStatus(BaseModel):
    """Whether the alert is muted, and by what."""

    state: str = Field(
        description="`active`, `suppressed` (silenced or inhibited) or `unprocessed`"
    )
    silencedBy: list[str] = Field(description="Ids of the silences that mute it")
    inhibitedBy: list[str] = Field(description="Fingerprints of the alerts that inhibit it")
    mutedBy: list[str] = Field(description="Always empty: no time intervals mute alerts here")


class GettableAlert(BaseModel):
    """A firing alert as Alertmanager's API shows it."""

    labels: dict[str, str] = Field(description="The alert's labels")
    annotations: dict[str, str] = Field(description="The alert's annotations")
    startsAt: str = Field(description="When it started firing (RFC 3339, UTC)")
    endsAt: str = Field(description="When it ends unless re-sent (RFC 3339, UTC); may be unset")
    updatedAt: str = Field(description="When this service last received it (RFC 3339, UTC)")
    generatorURL: str = Field(description="Where it came from, when the source said")
    fingerprint: str = Field(description="Its identity")
    receivers: list[AmReceiver] = Field(description="Where it went: this service")
    status: AmAlertStatus = Field(description="Muting, as the pipeline last decided it")


def _status(state: AlertState | None) -> AmAlertStatus:
    if state is None:
        return AmAlertStatus(state="unprocessed", silencedBy=[], inhibitedBy=[], mutedBy=[])
    silenced, inhibited = list(state.silenced_by), list(state.inhibited_by)
    muted = bool(silenced or inhibited)
    return AmAlertStatus(
        state="suppressed" if muted else "active",
        silencedBy=silenced,
        inhibitedBy=inhibited,
        mutedBy=[],
    )


def _out(alert: Alert, state: AlertState | None) -> GettableAlert:
    return GettableAlert(
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        startsAt=_time(alert.starts_at),
        endsAt=_time(alert.ends_at) if alert.ends_at is not None else "",
        updatedAt=_time(alert.last_received),
        generatorURL=alert.generator_url or "",
        fingerprint=alert.fingerprint,
        receivers=[AmReceiver(name=RECEIVER)],
        status=_status(state),
    )


def _wanted(
    status: AmAlertStatus, *, active: bool, silenced: bool, inhibited: bool, unprocessed: bool
) -> bool:
    if status.state == "unprocessed":
        return unprocessed
    if status.state == "active":
        return active
    return (silenced and bool(status.silencedBy)) or (inhibited and bool(status.inhibitedBy))


def _firing(session: Session, matchers: list[Matcher]) -> list[tuple[Alert, AlertState | None]]:
    """Firing alerts matching every matcher, oldest first, with their pipeline state."""
    query = (
        select(Alert, AlertState)
        .outerjoin(AlertState, col(AlertState.fingerprint) == col(Alert.fingerprint))
        .where(col(Alert.status) == AlertStatus.FIRING.value)
        .order_by(col(Alert.id))
    )
    for m in matchers:
        if m.op is Op.EQ and m.value:  # narrows in SQL; every matcher is checked below
            query = query.where(col(Alert.labels)[m.name].as_string() == m.value)
    found: list[tuple[Alert, AlertState | None]] = []
    after = 0
    while True:
        rows = session.execute(query.where(col(Alert.id) > after).limit(CHUNK)).tuples().all()
        found += [(a, s) for a, s in rows if matches_all(matchers, a.labels)]
        if len(rows) < CHUNK:
            return found
        after = int(rows[-1][0].id or 0)


@router.get(
    "/alerts",
    response_model=list[GettableAlert],
    summary="List firing alerts (Alertmanager v2)",
    dependencies=[require(INCIDENTS_READ)],
)
def list_alerts(
    session: Annotated[Session, Depends(db_session)],
    filter: Annotated[
        list[str] | None,
        Query(description='Matchers the labels must match, e.g. filter=severity="critical"'),
    ] = None,
    active: Annotated[bool, Query(description="Include alerts nothing mutes")] = True,
    silenced: Annotated[bool, Query(description="Include silenced alerts")] = True,
    inhibited: Annotated[bool, Query(description="Include inhibited alerts")] = True,
    unprocessed: Annotated[
        bool, Query(description="Include alerts the pipeline has not handled yet")
    ] = True,
    receiver: Annotated[
        str | None, Query(description="RE2 regex on the receiver's name (always `incidents`)")
    ] = None,
) -> list[GettableAlert]:
    """Firing alerts, oldest first, as amtool and Alertmanager's other clients read them."""
    matchers = [
        parse_matcher(text, where=f"filter[{index}]") for index, text in enumerate(filter or [])
    ]
    if receiver is not None:
        wanted = Matcher.create("receiver", Op.RE, receiver, where="receiver")
        if not wanted.matches({"receiver": RECEIVER}):
            return []
    out = []
    for alert, state in _firing(session, matchers):
        item = _out(alert, state)
        if _wanted(
            item.status,
            active=active,
            silenced=silenced,
            inhibited=inhibited,
            unprocessed=unprocessed,
        ):
            out.append(item)
    return out
