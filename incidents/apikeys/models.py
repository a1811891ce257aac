"""The api_keys table: one row per key ever made; the key itself is never stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String, Table, text
from sqlmodel import Field, SQLModel

from incidents.db import JSONType, UTCDateTime

# A revoked key keeps its row (and its name stays on record); only live names are unique.
_LIVE = text("revoked_at IS NULL")


class ApiKey(SQLModel, table=True):
    """A named key with scopes; found by its public prefix, proven by its hash."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_prefix", "key_prefix", unique=True),
        Index(
            "ix_api_keys_live_name",
            "name",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), nullable=False))
    owner: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    # The key's public id (`inc_<id>_...`): how a presented key finds its row.
    key_prefix: str = Field(sa_column=Column(String(16), nullable=False))
    # `scheme$...` (see incidents.apikeys.tokens): an HMAC or a salted scrypt digest.
    key_hash: str = Field(sa_column=Column(String(255), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    created_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    # Written at most about once a minute per key, never once per request.
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime, nullable=True)
    )
    expires_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


API_KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
