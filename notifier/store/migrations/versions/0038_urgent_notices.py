"""Urgent notices: ``notices.urgent`` marks a notice that jumps the sender's queue.

A notice is urgent when it holds an urgent request (``priority = "urgent"``) or its deadline
profile is urgent (SPEC §14). Claims take urgent notices before any other, and the daemon keeps
send capacity that only urgent notices may use; the partial index lets it find the due urgent
notices without reading the others.

Revision ID: 0038
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_URGENT = sa.text("urgent")


def upgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(
        "ix_notices_next_attempt_at",
        "notices",
        ["next_attempt_at"],
        postgresql_where=_URGENT,
        sqlite_where=_URGENT,
    )


def downgrade() -> None:
    op.drop_index("ix_notices_next_attempt_at", table_name="notices")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("urgent")
