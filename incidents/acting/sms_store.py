"""Per-recipient SMS reply codes and opt-outs, read and written in the caller's session.

`allocate` gives a phone the smallest code not held by another of its open incidents,
when an SMS about an incident is rendered for it; the code stays the same for later texts
about that incident, and is free again once the incident is no longer open.
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime

from sqlalchemy import and_, delete, exists, insert, select, text, update
from sqlalchemy.orm import Session

from incidents.acting.models import SMS_CODES, SMS_OPT_OUTS
from incidents.models import INCIDENTS
from incidents.vocab import IncidentState, IncidentStatus

_PUNCTUATION = re.compile(r"[\s().-]")
# The first key of the two-key advisory locks on a phone's codes (PostgreSQL).
_NS = 1402


def normal(phone: str) -> str:
    """A phone number as stored: E.164 without spaces, dashes or brackets."""
    return _PUNCTUATION.sub("", phone)[:32]


def _open() -> object:
    i = INCIDENTS.c
    return and_(i.status == IncidentStatus.OPEN.value, i.state != IncidentState.RESOLVED.value)


def _free_closed(session: Session, phone: str) -> None:
    """Forget the codes of this phone's incidents that are no longer open."""
    c, i = SMS_CODES.c, INCIDENTS.c
    still_open = exists().where(i.id == c.incident_id, _open())  # type: ignore[arg-type]
    session.execute(delete(SMS_CODES).where(c.phone == phone, ~still_open))


def _lock_phone(session: Session, phone: str) -> None:
    """Serialize code allocations for one phone until the transaction ends. On SQLite
    the first write (the DELETE that frees codes) takes the database's write lock."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(phone.encode()) - 2**31
        session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": _NS, "key": key})


def allocate(session: Session, phone: str, incident_id: int, now: datetime) -> int:
    """This phone's code for the incident: the one it has, or the smallest free one."""
    phone = normal(phone)
    c = SMS_CODES.c
    _lock_phone(session, phone)
    _free_closed(session, phone)
    held = session.scalar(select(c.code).where(c.phone == phone, c.incident_id == incident_id))
    if held is not None:
        session.execute(
            update(SMS_CODES)
            .where(c.phone == phone, c.incident_id == incident_id)
            .values(paged_at=now)
        )
        return int(held)
    taken = set(session.scalars(select(c.code).where(c.phone == phone)))
    code = next(n for n in range(1, len(taken) + 2) if n not in taken)
    session.execute(
        insert(SMS_CODES).values(phone=phone, incident_id=incident_id, code=code, paged_at=now)
    )
    return code


def by_code(session: Session, phone: str, code: int) -> int | None:
    """The open incident this phone knows by `code`."""
    c, i = SMS_CODES.c, INCIDENTS.c
    return session.scalar(
        select(c.incident_id)
        .join(INCIDENTS, i.id == c.incident_id)
        .where(c.phone == normal(phone), c.code == code, _open())  # type: ignore[arg-type]
    )


def last_paged(session: Session, phone: str) -> int | None:
    """The open incident most recently texted to this phone."""
    c, i = SMS_CODES.c, INCIDENTS.c
    return session.scalar(
        select(c.incident_id)
        .join(INCIDENTS, i.id == c.incident_id)
        .where(c.phone == normal(phone), _open())  # type: ignore[arg-type]
        .order_by(c.paged_at.desc(), c.incident_id.desc())
        .limit(1)
    )


def open_incidents(session: Session, phone: str) -> list[int]:
    """Every open incident texted to this phone, oldest first."""
    c, i = SMS_CODES.c, INCIDENTS.c
    return list(
        session.scalars(
            select(c.incident_id)
            .join(INCIDENTS, i.id == c.incident_id)
            .where(c.phone == normal(phone), _open())  # type: ignore[arg-type]
            .order_by(c.incident_id)
        )
    )


def opted_out(session: Session, phone: str) -> bool:
    """Has this number said STOP (and not START since)?"""
    o = SMS_OPT_OUTS.c
    return session.scalar(select(o.phone).where(o.phone == normal(phone))) is not None


def opt_out(session: Session, phone: str, word: str, now: datetime) -> None:
    """Send this number nothing more by SMS."""
    phone = normal(phone)
    o = SMS_OPT_OUTS.c
    session.execute(delete(SMS_OPT_OUTS).where(o.phone == phone))
    session.execute(
        insert(SMS_OPT_OUTS).values(phone=phone, word=word.upper()[:16], opted_out_at=now)
    )


def opt_in(session: Session, phone: str) -> bool:
    """Text this number again; True if it had opted out."""
    o = SMS_OPT_OUTS.c
    gone = session.execute(delete(SMS_OPT_OUTS).where(o.phone == normal(phone)))
    return bool(getattr(gone, "rowcount", 0))
