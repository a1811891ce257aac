"""Shared request dependencies: the service state, sessions and authentication."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from incidents.config import Settings
from incidents.exceptions import Unauthorized, ValidationFailed
from incidents.ingest.committer import IngestCommitter
from incidents.pipeline.dispatch import Dispatcher

from .body import read_limited


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
    """Accept `Authorization: Bearer <token>` or basic auth whose password is the token."""
    expected = service(request).settings.api_token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    presented = ""
    if scheme == "bearer":
        presented = credentials.strip()
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed basic credentials") from None
        presented = decoded.partition(":")[2]
    if not header:
        raise Unauthorized("missing Authorization header (Bearer token or basic auth)")
    if not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("invalid credentials")


async def read_body(request: Request, *, allow_gzip: bool = False) -> bytes:
    """The request body, refused with 413 once it passes the configured limit."""
    limit = service(request).settings.ingest.max_body_bytes
    return await read_limited(request, limit, allow_gzip=allow_gzip)


def parse_cursor(value: str | None) -> int | None:
    """A pagination cursor as this API hands them out: a row id."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise ValidationFailed("cursor: not a cursor this API returned", field="cursor")
    return int(value)


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp given without a zone is taken as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
