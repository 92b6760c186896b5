"""The first schema: requests, request conflicts, dead letters and the first columns of notices.

Revision ID: 0001
Revises:
Create Date: 2024-09-03
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than taken from notifier.store.tables: a migration is a snapshot, and the
# tables module will move on. ``DateTime(timezone=True)`` is what ``UTCDateTime`` stores.
_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _ts("ingested_at", nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=True),
        _ts("delivered_at", nullable=True),
        _ts("acknowledged_at", nullable=True),
        _ts("resolved_at", nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_requests"),
    )
    op.create_index("ix_requests_notice_id", "requests", ["notice_id"])
    op.create_index("ix_requests_platform_state", "requests", ["platform", "state"])

    op.create_table(
        "request_conflicts",
        sa.Column("id", _AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_request_conflicts"),
        sa.UniqueConstraint(
            "request_id", "content_hash", name="uq_request_conflicts_request_id_content_hash"
        ),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", _AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_size", sa.BigInteger(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
    )
    op.create_index("ix_dead_letters_source_body_sha256", "dead_letters", ["source", "body_sha256"])
    op.create_index("ix_dead_letters_at", "dead_letters", ["at"])

    op.create_table(
        "notices",
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        _ts("created_at", nullable=False),
        _ts("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("notice_id", name="pk_notices"),
    )
    op.create_index("ix_notices_platform_state", "notices", ["platform", "state"])


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("dead_letters")
    op.drop_table("request_conflicts")
    op.drop_table("requests")
