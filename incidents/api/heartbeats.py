"""Heartbeats: read and replace the definitions, and ping one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from incidents.apikeys.scopes import ALERTS_WRITE, CONFIG_WRITE, INCIDENTS_READ
from incidents.db import session_scope
from incidents.heartbeats import clock, monitor
from incidents.heartbeats.spec import HeartbeatsDocument, HeartbeatSpec
from incidents.heartbeats.status import Status, statuses
from incidents.heartbeats.store import log_replacement
from incidents.heartbeats.watch import AlertPings

from .deps import check_token, db_session, service
from .params import strict_params
from .principal import require

router = APIRouter(
    prefix="/api/v1/heartbeats",
    tags=["heartbeats"],
    dependencies=[Depends(check_token), Depends(strict_params)],
)


class HeartbeatStatus(BaseModel):
    """How one heartbeat stands."""

    name: str = Field(description="The heartbeat's name.")
    state: Literal["waiting", "alive", "expired"] = Field(
        description="`waiting`: never pinged since it was defined (its clock started then); "
        "`alive`: pinged in time; `expired`: missed, its `HeartbeatMissing` alert fires "
        "until the next ping."
    )
    last_ping_at: datetime | None = Field(
        description="When it was last pinged (UTC); null if never."
    )
    expires_at: datetime | None = Field(
        description="When it is (or was) missed without a ping: the last ping, or its "
        "definition, plus interval and grace (UTC)."
    )
    seconds_since_ping: float = Field(
        description="Seconds since the last ping, or since its definition if never pinged."
    )

    @classmethod
    def of(cls, status: Status) -> HeartbeatStatus:
        """From the heartbeat's stored status."""
        return cls.model_validate(status, from_attributes=True)


class HeartbeatsOut(BaseModel):
    """The definitions as stored (the document PUT takes) and how each heartbeat stands."""

    heartbeats: list[HeartbeatSpec] = Field(
        description="The definitions, as PUT gave them, with defaults filled in."
    )
    version: int = Field(description="Counts the replacements; 0 when none was ever stored.")
    updated_at: datetime | None = Field(description="When they were last replaced (UTC).")
    status: list[HeartbeatStatus] = Field(description="Each heartbeat's state, in the same order.")


def _pings(request: Request) -> AlertPings | None:
    pings = getattr(request.app.state, "heartbeat_pings", None)
    return pings if isinstance(pings, AlertPings) else None


def _current(session: Session) -> HeartbeatsOut:
    stored, found = statuses(session, clock.now())
    return HeartbeatsOut(
        heartbeats=stored.specs,
        version=stored.version,
        updated_at=stored.updated_at,
        status=[HeartbeatStatus.of(s) for s in found],
    )


@router.get(
    "",
    response_model=HeartbeatsOut,
    summary="The heartbeats and how each stands",
    dependencies=[require(INCIDENTS_READ)],
)
def get_heartbeats(session: Annotated[Session, Depends(db_session)]) -> HeartbeatsOut:
    """Every heartbeat's definition, and its state, last ping and deadline."""
    return _current(session)


@router.put(
    "",
    response_model=HeartbeatsOut,
    summary="Replace every heartbeat",
    dependencies=[require(CONFIG_WRITE)],
)
def put_heartbeats(body: HeartbeatsDocument, request: Request) -> HeartbeatsOut:
    """Store these definitions in place of all others. A new heartbeat starts `waiting`,
    its clock started now; a removed one that was missed has its alert resolved."""
    state = service(request)
    with session_scope(state.sessions) as session:
        defined = monitor.define(session, body.heartbeats, clock.now(), state.settings, via="api")
    client = request.client.host if request.client else None
    log_replacement(defined.replacement, client=client)
    if defined.job_id is not None:
        state.dispatcher.dispatch(defined.job_id)
    pings = _pings(request)
    if pings is not None:
        pings.invalidate()
    with state.sessions() as session:
        return _current(session)


@router.post(
    "/{name}/ping",
    response_model=HeartbeatStatus,
    summary="Ping a heartbeat (it is alive)",
    dependencies=[require(ALERTS_WRITE)],
)
def ping_heartbeat(
    name: Annotated[str, Path(description="The heartbeat's name.", examples=["backup"])],
    request: Request,
) -> HeartbeatStatus:
    """Record a ping now. A heartbeat that was missed is alive again, and the alert of its
    miss resolves (and with it, through the pipeline, its incident)."""
    state = service(request)
    now = clock.now()
    with session_scope(state.sessions) as session:
        heartbeat, job_id = monitor.ping_named(session, name, now, state.settings)
    if job_id is not None:
        state.dispatcher.dispatch(job_id)
    return HeartbeatStatus(
        name=name,
        state="alive",
        last_ping_at=now,
        expires_at=now + heartbeat.period,
        seconds_since_ping=0.0,
    )
