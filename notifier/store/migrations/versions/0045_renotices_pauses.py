"""Re-notices of content back after a verified removal, and every clarification pause counted.

``notice_members`` puts a request already in a delivered notice into a later notice of its own:
a re-notice (SPEC §13) lists the request again, with only the URLs found live again, under a new
notice id. The request keeps its first notice (``requests.notice_id``), whose times are its SLA
figures; the membership row is what links it to the re-notice. ``notices.earlier_paused_s`` keeps
the seconds of the clarification pauses already answered before the one in
``clarification_requested_at`` / ``clarified_at``, so a second clarification adds to the first
rather than replacing it (SPEC §14).

Revision ID: 0045
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0045"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notice_members",
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("urls", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("notice_id", "request_id", name="pk_notice_members"),
    )
    op.create_index("ix_notice_members_request_id", "notice_members", ["request_id"])
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("earlier_paused_s", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("earlier_paused_s")
    op.drop_index("ix_notice_members_request_id", table_name="notice_members")
    op.drop_table("notice_members")
