"""Verification of removals (SPEC §13): checks kept without content, their timers, and follow-ups.

``url_checks`` keeps what each check of a URL observed (status, final URL, bytes read and their
SHA-256, the rule that decided), never the body. Each request gains its verification facts and a
check timer, ``verify_due_at`` (business time, in a partial index, like ``notices.sla_due_at``).
``verify_followups`` holds the messages owed after checks (URLs still up after a claim of
removal; content back after a verified removal).

Back-fill: requests awaiting removal are due for a check at their delivery (the service moves the
timer on to the reminder point), requests the platform said removed are due at once.

Revision ID: 0020
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMED = sa.text("verify_due_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("verified_removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reappeared_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("false_claims", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("verify_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("verify_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("verify_base", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("verify_last", sa.String(16), nullable=True))
        batch.add_column(sa.Column("contradicted_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE requests SET verify_due_at = delivered_at"
        " WHERE state IN ('delivered', 'acknowledged') AND delivered_at IS NOT NULL"
    )
    op.execute(
        "UPDATE requests SET verify_due_at = resolved_at WHERE state = 'removed' AND resolved_at IS NOT NULL"
    )
    op.create_index(
        "ix_requests_verify_due_at",
        "requests",
        ["verify_due_at"],
        postgresql_where=_TIMED,
        sqlite_where=_TIMED,
    )
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "url_checks",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("final_url", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_url_checks"),
    )
    op.create_index("ix_url_checks_request_id_at", "url_checks", ["request_id", "at"])
    op.create_index("ix_url_checks_platform_outcome", "url_checks", ["platform", "outcome"])
    op.create_table(
        "verify_followups",
        sa.Column("notice_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_ids", sa.Text(), nullable=False),
        sa.Column("urls", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message_ref", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("notice_id", "seq", name="pk_verify_followups"),
    )
    op.create_index("ix_verify_followups_sent_at", "verify_followups", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_verify_followups_sent_at", table_name="verify_followups")
    op.drop_table("verify_followups")
    op.drop_index("ix_url_checks_platform_outcome", table_name="url_checks")
    op.drop_index("ix_url_checks_request_id_at", table_name="url_checks")
    op.drop_table("url_checks")
    op.drop_index("ix_requests_verify_due_at", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        for name in (
            "contradicted_at",
            "verify_last",
            "verify_base",
            "verify_checked_at",
            "verify_due_at",
            "false_claims",
            "reappeared_at",
            "verified_removed_at",
        ):
            batch.drop_column(name)
