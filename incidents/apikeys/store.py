"""Making, listing, finding and revoking API keys: plain functions over a session."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from incidents.exceptions import Conflict, NotFound, ValidationFailed

from .models import API_KEYS, ApiKey
from .scopes import check_scopes
from .tokens import hash_key, new_key

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")
# last_used_at is written when it is older than this: about once a minute per key.
TOUCH_INTERVAL = timedelta(seconds=60)

_C = API_KEYS.c

KeyState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True)
class KeyInfo:
    """What may be shown about a key: everything but its hash (and the key, never kept)."""

    id: int
    name: str
    owner: str | None
    scopes: list[str]
    prefix: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> KeyState:
        """Revoked, expired or active at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class CreatedKey:
    """A new key: its record, and the key itself, shown this once."""

    info: KeyInfo
    key: str


def info_of(row: ApiKey) -> KeyInfo:
    """The displayable record of a row."""
    assert row.id is not None
    return KeyInfo(
        id=row.id,
        name=row.name,
        owner=row.owner,
        scopes=list(row.scopes),
        prefix=row.key_prefix,
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def check_name(name: str, field: str = "name") -> str:
    """A key name: 1 to 64 letters, digits and `._:@-`, starting with a letter or digit."""
    if not NAME.fullmatch(name):
        raise ValidationFailed(
            f"{field}: {name[:80]!r} is not a key name: use 1 to 64 letters, digits and "
            "._:@- starting with a letter or digit",
            field=field,
        )
    return name


def create_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    now: datetime,
    server_secret: str | None,
    owner: str | None = None,
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> CreatedKey:
    """Make a key; 409 when a live key has the name. The caller commits."""
    check_name(name)
    if owner is not None and (not owner.strip() or not owner.isprintable()):
        raise ValidationFailed(
            "owner: must be printable text, without control characters", field="owner"
        )
    granted = check_scopes(scopes)
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("expires_at: must be in the future", field="expires_at")
    if live_by_name(session, name) is not None:
        raise Conflict(
            f"name: a key named {name!r} exists; revoke it first or choose another name",
            field="name",
        )
    key, key_id = new_key()
    while session.scalar(select(_C.id).where(_C.key_prefix == key_id)) is not None:
        key, key_id = new_key()  # 36**8 ids: a repeat is a curiosity, but not an error
    row = ApiKey(
        name=name,
        owner=owner or None,
        scopes=granted,
        key_prefix=key_id,
        key_hash=hash_key(key, server_secret),
        created_at=now,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return CreatedKey(info_of(row), key)


def live_by_name(session: Session, name: str) -> ApiKey | None:
    """The key (not revoked) with this name, if any."""
    return session.scalar(select(ApiKey).where(_C.name == name, _C.revoked_at.is_(None)))


def list_keys(session: Session) -> list[KeyInfo]:
    """Every key ever made, newest first."""
    rows = session.scalars(select(ApiKey).order_by(_C.id.desc()))
    return [info_of(row) for row in rows]


def key_by_id(session: Session, key_id: int) -> ApiKey:
    """The key with this id; NotFound otherwise."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id}", field="key_id")
    return row


def find_key(session: Session, ref: str) -> ApiKey:
    """A key by id (digits), by live name, or by public prefix; NotFound otherwise."""
    row: ApiKey | None = None
    if ref.isdigit() and len(ref) < 19:
        row = session.get(ApiKey, int(ref))
    if row is None:
        row = live_by_name(session, ref)
    if row is None:
        row = session.scalar(select(ApiKey).where(_C.key_prefix == ref))
    if row is None:  # the latest revoked one: revoking it again says it was revoked
        row = session.scalar(select(ApiKey).where(_C.name == ref).order_by(_C.id.desc()).limit(1))
    if row is None:
        raise NotFound(f"no API key {ref[:80]!r} (give its id, name or prefix)", field="key")
    return row


def revoke_key(session: Session, row: ApiKey, now: datetime) -> KeyInfo:
    """Revoke the key from now on; 409 when it already is. The caller commits."""
    if row.revoked_at is not None:
        raise Conflict(f"the key {row.name!r} (id {row.id}) was revoked already", field="key")
    row.revoked_at = now
    session.flush()
    return info_of(row)


def by_key_id(session: Session, key_id: str) -> ApiKey | None:
    """The key whose public id this is."""
    return session.scalar(select(ApiKey).where(_C.key_prefix == key_id))


def touch(session: Session, row_id: int, now: datetime) -> None:
    """Record a use, unless one was recorded within TOUCH_INTERVAL. The caller commits."""
    stale = now - TOUCH_INTERVAL
    session.execute(
        update(API_KEYS)
        .where(_C.id == row_id, or_(_C.last_used_at.is_(None), _C.last_used_at < stale))
        .values(last_used_at=now)
    )
