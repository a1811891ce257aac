"""Shared request dependencies: the service state, sessions and authentication."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.ingest.committer import IngestCommitter
from incidents.pipeline.dispatch import Dispatcher

from .body import read_limited
from .guard import AUTHENTICATED
from .principal import authenticated


@dataclass
class ServiceState:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    committer: IngestCommitter
    dispatcher: Dispatcher


def service(request: Request) -> ServiceState:
    """The process's ServiceState."""
    state: ServiceState = request.app.state.service
    return state


def db_session(request: Request) -> Iterator[Session]:
    """A read session for one request."""
    session = service(request).sessions()
    try:
        yield session
    finally:
        session.close()


async def check_token(request: Request) -> None:
    """Accept a key (`Authorization: Bearer <key>`, or basic auth whose password is the
    key): the bootstrap token or an API key; the scope is checked by `require`."""
    if request.scope.get("state", {}).get(AUTHENTICATED):
        return  # the guard in front of /api/ has checked this request already
    await authenticated(request)


async def read_body(request: Request, *, allow_gzip: bool = False) -> bytes:
    """The request body, refused with 413 once it passes the configured limit."""
    limit = service(request).settings.ingest.max_body_bytes
    return await read_limited(request, limit, allow_gzip=allow_gzip)


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp given without a zone is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
