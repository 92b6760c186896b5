"""Evidence entries waiting for their place in the chain.

On PostgreSQL the daemon and its urgent lane write their entries here, in the transaction of the
change they record, instead of every transaction queueing for the ledger head's lock; a chainer,
or the next process to take the head, chains them first, in ``id`` order, before its own.

Revision ID: 0050
Revises: 0040
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0050"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_pending",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=True),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=True),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_pending"),
    )


def downgrade() -> None:
    op.drop_table("ledger_pending")
