"""Manual records (SPEC §15): who entered an acknowledgement, retry, portal submission,
clarification or withdrawal by hand, and when, apart from the time it claims; and the DKIM results
of an email reply.

``acks`` gains ``by``, ``entered_at`` and ``dkim`` (all NULL for rows written before: nobody knows
who entered those); ``manual_records`` holds the manual actions that are not acknowledgements.

Revision ID: 0035
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("acks") as batch:
        batch.add_column(sa.Column("by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("entered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("dkim", sa.Text(), nullable=True))
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "manual_records",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_manual_records"),
    )
    op.create_index("ix_manual_records_notice_id_id", "manual_records", ["notice_id", "id"])
    op.create_index("ix_manual_records_request_id", "manual_records", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_manual_records_request_id", table_name="manual_records")
    op.drop_index("ix_manual_records_notice_id_id", table_name="manual_records")
    op.drop_table("manual_records")
    with op.batch_alter_table("acks") as batch:
        for name in ("dkim", "entered_at", "by"):
            batch.drop_column(name)
