"""The tables of SMS replies: each phone's short reply codes, and numbers that said STOP.

A code is per recipient: the smallest number not taken by another open incident for that
phone, given when an SMS about the incident is rendered for it. A code whose incident is
no longer open is free again (the next allocation for that phone deletes it).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Column, Index, Integer, String, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

from incidents.db import UTCDateTime


class SmsCode(SQLModel, table=True):
    """One phone's short code for one incident: `<code>a` acknowledges it by SMS."""

    __tablename__ = "sms_codes"
    __table_args__ = (
        UniqueConstraint("phone", "code", name="uq_sms_codes_phone_code"),
        Index("ix_sms_codes_incident", "incident_id"),
    )

    phone: str = Field(sa_column=Column(String(32), primary_key=True))
    incident_id: int = Field(
        sa_column=Column(
            Integer, sa.ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
        )
    )
    code: int = Field(sa_column=Column(Integer, nullable=False))
    # When an SMS about the incident was last rendered for this phone: a bare `a` means
    # the most recent one.
    paged_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class SmsOptOut(SQLModel, table=True):
    """A number that replied STOP: the SMS channel sends it nothing until START."""

    __tablename__ = "sms_opt_outs"

    phone: str = Field(sa_column=Column(String(32), primary_key=True))
    # The word it sent (STOP, UNSUBSCRIBE, ...).
    word: str = Field(sa_column=Column(String(16), nullable=False))
    opted_out_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


SMS_CODES: Table = SmsCode.__table__  # type: ignore[attr-defined]
SMS_OPT_OUTS: Table = SmsOptOut.__table__  # type: ignore[attr-defined]
