"""Deadline profiles (SPEC §14): the profile each request is judged by, and each notice's.

``requests.deadline`` holds the profile a request resolved to at intake (its own ``deadline`` field,
else its category's); ``notices.deadline`` the profile of the requests a notice holds (one per
notice). NULL in both: the platform's own bounds, as every request before this revision.
``notices.clarification_requested_at`` and ``clarified_at`` keep a clarification asked and answered
(the removal clock stops, then runs again for the full bound); ``acks.status`` widens to hold
``clarification_requested``. ``requests.withdrawal_reason`` keeps why staff withdrew a request.

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place.
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("deadline", sa.String(64), nullable=True))
        batch.add_column(sa.Column("withdrawal_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("deadline", sa.String(64), nullable=True))
        batch.add_column(sa.Column("clarification_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("clarified_at", sa.DateTime(timezone=True), nullable=True))
    # "clarification_requested" is longer than the 16 characters the statuses had.
    with op.batch_alter_table("acks") as batch:
        batch.alter_column(
            "status", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("acks") as batch:
        batch.alter_column(
            "status", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False
        )
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("clarified_at")
        batch.drop_column("clarification_requested_at")
        batch.drop_column("deadline")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("withdrawal_reason")
        batch.drop_column("deadline")
