"""SLA decisions: each reminder and breach decided once, then sent at least once (SPEC §7).

``sla_decisions`` is keyed by (notice_id, kind): the decision is an ``INSERT … ON CONFLICT DO
NOTHING``, so of two processes (or a process and its restarted self) exactly one decides. The row is
committed before anything is sent; ``sent_at`` stays NULL until the message went out, and the
index on ``sent_at`` lets the monitor find what it still owes cheaply.

Revision ID: 0004
Revises: 0003
Create Date: 2024-09-20
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sla_decisions",
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        _ts("decided_at", nullable=False),
        _ts("due_at", nullable=False),
        _ts("sent_at", nullable=True),
        sa.Column("message_ref", sa.Text(), nullable=True),
        # Who is sending it now, and until when (the store's clock, epoch seconds): two monitors
        # never send the same decision at the same time.
        sa.Column("send_owner", sa.String(200), nullable=True),
        sa.Column("send_until", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("notice_id", "kind", name="pk_sla_decisions"),
    )
    op.create_index("ix_sla_decisions_sent_at", "sla_decisions", ["sent_at"])
    # Candidates are open notices by delivery time.
    op.create_index("ix_notices_state_delivered_at", "notices", ["state", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_notices_state_delivered_at", table_name="notices")
    op.drop_index("ix_sla_decisions_sent_at", table_name="sla_decisions")
    op.drop_table("sla_decisions")
