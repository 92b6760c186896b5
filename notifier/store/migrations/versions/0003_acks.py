"""Acknowledgements: their history, the callbacks and mails already seen, notices found by ticket.

``acks`` keeps every acknowledgement notifier received, whether it changed anything (``outcome``
is ``applied``) or not (``outcome`` says why). It has no foreign key to ``notices``: an
acknowledgement naming a notice notifier does not know is still worth keeping.
``seen_webhooks`` and ``seen_mail`` remember which signed callbacks (``webhook-id`` per platform)
and which IMAP messages (mailbox, UIDVALIDITY, UID) were taken in, so a replay or a second
reader is recognised by the primary key, across processes. Replies are matched to notices by
the platform's ticket too, hence the index on ``notices.ticket``.

Revision ID: 0003
Revises: 0002
Create Date: 2024-09-17
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than taken from notifier.store.tables (a migration is a snapshot).
_AUTO_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "acks",
        sa.Column("id", _AUTO_ID, autoincrement=True, nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("ticket", sa.Text(), nullable=True),
        _ts("platform_at", nullable=True),
        _ts("received_at", nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_acks"),
    )
    op.create_index("ix_acks_notice_id", "acks", ["notice_id"])

    op.create_table(
        "seen_webhooks",
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("webhook_id", sa.Text(), nullable=False),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("platform", "webhook_id", name="pk_seen_webhooks"),
    )
    op.create_table(
        "seen_mail",
        sa.Column("mailbox", sa.Text(), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("mailbox", "uidvalidity", "uid", name="pk_seen_mail"),
    )

    op.create_index("ix_notices_ticket", "notices", ["ticket"])


def downgrade() -> None:
    op.drop_index("ix_notices_ticket", table_name="notices")
    op.drop_table("seen_mail")
    op.drop_table("seen_webhooks")
    op.drop_index("ix_acks_notice_id", table_name="acks")
    op.drop_table("acks")
