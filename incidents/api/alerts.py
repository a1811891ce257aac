"""Read API for stored alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from incidents.api.queries import alerts as queries
from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.exceptions import NotFound
from incidents.models import Alert, AlertState
from incidents.routing.matchers import Matcher, parse_matchers

from .deps import check_token, db_session
from .params import CURSOR_PATTERN, parse_cursor, strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/alerts",
    tags=["alerts"],
    dependencies=[Depends(check_token), require(INCIDENTS_READ), Depends(strict_params)],
)


class AlertOut(BaseModel):
    """An alert as the API shows it."""

    fingerprint: str = Field(
        description="The alert's identity: the sender's fingerprint, or a hash of its labels."
    )
    source: str = Field(
        description="Which endpoint it came in through: `alertmanager` or `generic`; "
        "`heartbeat` for the alert of a missed heartbeat."
    )
    status: Literal["firing", "resolved"] = Field(description="Its latest state.")
    severity: Literal["P0", "P1", "P2", "P3"] = Field(
        description="Derived from its labels (`ingest.severity_labels`, `ingest.severity_map`)."
    )
    service: str | None = Field(
        description="The service it is about, from `ingest.service_labels`; null if none matched."
    )
    labels: dict[str, str] = Field(description="Its labels, as sent.")
    annotations: dict[str, str] = Field(description="Its annotations, as sent.")
    starts_at: datetime = Field(description="When it started firing (UTC).")
    ends_at: datetime | None = Field(
        description="When it resolved, or when the sender expects it to (UTC); may be null."
    )
    generator_url: str | None = Field(description="Link to what produced it (a Prometheus graph).")
    group_key: str | None = Field(
        description="Alertmanager's group key of the latest delivery; null for generic alerts."
    )
    first_received: datetime = Field(description="When we first received it (UTC).")
    last_received: datetime = Field(description="When we last received it (UTC).")
    receive_count: int = Field(description="How many deliveries of it we received.")
    extra: dict[str, Any] = Field(description="Fields the sender added that we do not interpret.")
    silenced_by: list[str] = Field(
        default=[], description="Ids of the silences that mute it; empty if none."
    )
    inhibited_by: list[str] = Field(
        default=[], description="Fingerprints of the firing alerts that inhibit it; empty if none."
    )
    flapping: bool = Field(default=False, description="Whether it keeps firing and resolving.")
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


class AlertPage(BaseModel):
    """One page of alerts; pass `next_cursor` as `cursor` for the next one."""

    items: list[AlertOut] = Field(description="The alerts of this page, newest first.")
    next_cursor: str | None = Field(
        description="The `cursor` for the next page; null on the last page."
    )


@router.get("", response_model=AlertPage, summary="List alerts, newest first")
def list_alerts(
    session: Annotated[Session, Depends(db_session)],
    status: Annotated[
        Literal["firing", "resolved"] | None, Query(description="Only this state.")
    ] = None,
    severity: Annotated[
        list[Literal["P0", "P1", "P2", "P3"]] | None,
        Query(description="Only these severities (repeatable)."),
    ] = None,
    service: Annotated[str | None, Query(description="Only alerts about this service.")] = None,
    filter: Annotated[
        list[str] | None,
        Query(
            description=(
                'Label matchers in Alertmanager\'s syntax, e.g. `alertname="DiskFull"` or '
                '`{instance=~"db-.*"}` (repeatable; an alert must match all).'
            )
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` from the previous page."),
    ] = None,
) -> AlertPage:
    """Alerts filtered by status, severity, service and label matchers, paginated by cursor."""
    matchers: list[Matcher] = []
    for index, text in enumerate(filter or []):
        matchers.extend(parse_matchers(text, where=f"filter[{index}]"))
    page = queries.list_alerts(
        session,
        status=status,
        severities=severity or [],
        service=service,
        matchers=matchers,
        limit=limit,
        after=parse_cursor(cursor),
    )
    states = queries.alert_states(session, fingerprints=[a.fingerprint for a in page.alerts])
    items = [AlertOut.of(a, states.get(a.fingerprint)) for a in page.alerts]
    next_cursor = None if page.next_after is None else str(page.next_after)
    return AlertPage(items=items, next_cursor=next_cursor)


@router.get("/{fingerprint}", response_model=AlertOut, summary="One alert by fingerprint")
def get_alert(
    fingerprint: Annotated[
        str, Path(description="The alert's fingerprint.", examples=["b1a2c3d4e5f60718"])
    ],
    session: Annotated[Session, Depends(db_session)],
) -> AlertOut:
    """The alert with this fingerprint."""
    alert = queries.find_alert(session, fingerprint=fingerprint)
    if alert is None:
        raise NotFound(f"no alert with fingerprint {fingerprint!r}", field="fingerprint")
    return AlertOut.of(alert, queries.alert_state(session, fingerprint=fingerprint))
