"""The deliveries of an incident's notifications: status, attempts, error and latency."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from incidents.api.queries import notifications as queries
from incidents.apikeys.scopes import INCIDENTS_READ
from incidents.exceptions import NotFound
from incidents.models import Incident
from incidents.notify import unreachable

from .deps import check_token, db_session
from .params import IncidentId, strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/incidents",
    tags=["incidents"],
    dependencies=[Depends(check_token), require(INCIDENTS_READ), Depends(strict_params)],
)


class NotificationOut(BaseModel):
    """One notification of an incident to one target."""

    id: int = Field(description="The notification's id (sent to webhooks as a de-dup key).")
    event: str = Field(description="What it tells: opened, severity_raised, reopened, resolved.")
    receiver: str = Field(description="The routing receiver that asked for it.")
    channel: str = Field(description="slack, email, sms, voice, webhook or console.")
    target: str = Field(description="The channel, address, number or URL.")
    status: Literal[
        "pending", "sending", "sent", "failed", "cancelled", "bundled", "digest", "unreachable"
    ] = Field(
        description="`pending` (waiting for its time or a retry), `sending`, `sent`, `failed` "
        "(gave up; the timeline says why), `cancelled` (folded into a merge, or into the "
        "update waiting for the target), `bundled` (sent as part of a summary or digest), "
        "`digest` (waiting for the daily digest email), `unreachable` (skipped, never sent: "
        "the target is marked unreachable or opted out)."
    )
    attempts: int = Field(description="Sends tried so far.")
    not_before: datetime = Field(description="Not sent before this time (hold or backoff).")
    created_at: datetime = Field(description="When routing asked for it (UTC).")
    sent_at: datetime | None = Field(description="When the provider accepted it (UTC).")
    latency_ms: float | None = Field(description="From due to accepted, in milliseconds.")
    provider_id: str | None = Field(description="The provider's id (Slack ts, message SID).")
    provider_status: str | None = Field(
        description="What the provider last reported of its delivery, for SMS and voice "
        "(Twilio's `delivered`, `undelivered`, `completed`, `no-answer`, ...); empty until "
        "it reports.",
    )
    error: str | None = Field(description="The last error, if any.")
    unreachable: bool = Field(
        description="The target is marked unreachable now (an invalid number, a landline, an "
        "SMS opt-out): notifications to it are skipped until the mark is cleared "
        "(`/api/v1/unreachable-targets`)."
    )


@router.get(
    "/{incident_id}/notifications",
    response_model=list[NotificationOut],
    summary="The notifications sent (or to send) about an incident",
)
def list_notifications(
    incident_id: IncidentId, session: Annotated[Session, Depends(db_session)]
) -> list[NotificationOut]:
    """Every notification routed for the incident, oldest first."""
    if session.get(Incident, incident_id) is None:
        raise NotFound(f"no incident {incident_id}", field="incident_id")
    rows = queries.notifications_of(session, incident_id=incident_id)
    marked: set[tuple[str, str]] = set()
    for channel in sorted({row["channel"] for row in rows}):
        targets = {row["target"] for row in rows if row["channel"] == channel}
        marked |= {(channel, t) for t in unreachable.marks_for(session, channel, targets)}
    return [
        NotificationOut.model_validate(
            {**row, "unreachable": (row["channel"], row["target"]) in marked}
        )
        for row in rows
    ]
