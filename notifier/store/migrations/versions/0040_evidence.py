"""The evidence ledger (SPEC §15): hash-chained entries, the one-row head, encrypted payloads.

Revision ID: 0040
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "ledger",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("notice_id", sa.String(64), nullable=True),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=True),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("entry_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger"),
    )
    op.create_index("ix_ledger_notice_id_seq", "ledger", ["notice_id", "seq"])
    op.create_index("ix_ledger_at", "ledger", ["at"])
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "evidence_payloads",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kept_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_evidence_payloads"),
    )
    op.create_index("ix_evidence_payloads_kept_until", "evidence_payloads", ["kept_until"])


def downgrade() -> None:
    op.drop_index("ix_evidence_payloads_kept_until", table_name="evidence_payloads")
    op.drop_table("evidence_payloads")
    op.drop_table("ledger_head")
    op.drop_index("ix_ledger_at", table_name="ledger")
    op.drop_index("ix_ledger_notice_id_seq", table_name="ledger")
    op.drop_table("ledger")
