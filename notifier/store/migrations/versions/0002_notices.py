"""Notices as the dispatcher keeps them: claims, attempts, sequences and rate buckets.

``notices`` gains what a notice carries from forming to delivery (its sequence, deadlines, the
lease of the process sending it, the Message-ID, ticket and receipt, the alert owed when it fails);
``notice_attempts`` keeps every attempt; ``platform_sequences`` hands out the per-platform numbers
of notice ids; ``rate_buckets`` holds the per-platform rate limit shared by every process.
Requests learn their position in their notice, and batching gets an index that reads a
platform's pending requests urgent first, then oldest; it replaces the (platform, state) index,
which is its prefix, so intake keeps the same number of indexes to maintain.

Revision ID: 0002
Revises: 0001
Create Date: 2024-09-10
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than taken from notifier.store.tables (a migration is a snapshot).
_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    # Revision 0001 created ``notices`` but no release of notifier wrote to it, so the table is
    # empty here and the required columns are added as NOT NULL at once. A row put there by hand
    # makes the migration fail and roll back, rather than be given a made-up sequence number.
    # SQLite cannot ADD a NOT NULL column without a default in place: it rebuilds the table.
    recreate: Literal["always", "auto"] = "always" if op.get_context().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("notices", recreate=recreate) as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=False))
        batch.add_column(sa.Column("request_count", sa.Integer(), nullable=False))
        batch.add_column(sa.Column("primary_channel", sa.String(32), nullable=False))
        batch.add_column(sa.Column("fallback_used", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(_ts("deliver_by", nullable=False))
        batch.add_column(_ts("next_attempt_at", nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Double(), nullable=True))
        batch.add_column(sa.Column("message_id", sa.Text(), nullable=True))
        batch.add_column(sa.Column("ticket", sa.Text(), nullable=True))
        batch.add_column(_ts("delivered_at", nullable=True))
        batch.add_column(_ts("receipt_at", nullable=True))
        batch.add_column(_ts("acknowledged_at", nullable=True))
        batch.add_column(_ts("resolved_at", nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(_ts("alerted_at", nullable=True))
    op.create_index("ix_notices_state_next_attempt_at", "notices", ["state", "next_attempt_at"])
    op.create_index("ix_notices_state_lease_until", "notices", ["state", "lease_until"])

    op.create_table(
        "notice_attempts",
        sa.Column("id", _AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=False),
        _ts("at", nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notice_attempts"),
        sa.ForeignKeyConstraint(
            ["notice_id"], ["notices.notice_id"], name="fk_notice_attempts_notice_id_notices"
        ),
    )
    op.create_index("ix_notice_attempts_notice_id", "notice_attempts", ["notice_id"])

    op.create_table(
        "platform_sequences",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("platform", name="pk_platform_sequences"),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("tokens", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("platform", name="pk_rate_buckets"),
    )

    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("notice_position", sa.Integer(), nullable=True))
    op.create_index(
        "ix_requests_platform_state_priority_ingested_at_request_id",
        "requests",
        ["platform", "state", "priority", "ingested_at", "request_id"],
    )
    op.drop_index("ix_requests_platform_state", table_name="requests")


def downgrade() -> None:
    op.create_index("ix_requests_platform_state", "requests", ["platform", "state"])
    op.drop_index("ix_requests_platform_state_priority_ingested_at_request_id", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("notice_position")
    op.drop_table("rate_buckets")
    op.drop_table("platform_sequences")
    op.drop_table("notice_attempts")
    op.drop_index("ix_notices_state_lease_until", table_name="notices")
    op.drop_index("ix_notices_state_next_attempt_at", table_name="notices")
    with op.batch_alter_table("notices") as batch:
        for name in (
            "alerted_at",
            "last_error",
            "resolved_at",
            "acknowledged_at",
            "receipt_at",
            "delivered_at",
            "ticket",
            "message_id",
            "lease_until",
            "lease_owner",
            "next_attempt_at",
            "deliver_by",
            "fallback_used",
            "primary_channel",
            "request_count",
            "sequence",
        ):
            batch.drop_column(name)
