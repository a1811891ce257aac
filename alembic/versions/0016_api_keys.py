"""API keys: named, scoped, stored as a digest

Revision ID: 0016_api_keys
Revises: 0014_sms_codes
"""

from __future__ import annotations

import sqlalchemy as sa

import incidents.db
from alembic import op

revision = "0016_api_keys"
down_revision = "0015_playbooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("scopes", incidents.db.JSONType, nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", incidents.db.UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("last_used_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("expires_at", incidents.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", incidents.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["key_prefix"], unique=True)
    # A revoked key's name may be used again; two live keys may not share one.
    live = sa.text("revoked_at IS NULL")
    op.create_index(
        "ix_api_keys_live_name",
        "api_keys",
        ["name"],
        unique=True,
        postgresql_where=live,
        sqlite_where=live,
    )


def downgrade() -> None:
    op.drop_index("ix_api_keys_live_name", table_name="api_keys")
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    op.drop_table("api_keys")
