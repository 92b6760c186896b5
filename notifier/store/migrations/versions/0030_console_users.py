"""The operations console (SPEC §16): its users, their sessions, and the indexes its pages read.

``users`` holds staff accounts with Argon2 password hashes; ``user_sessions`` the console's
sessions, by the SHA-256 of the cookie's token (the token itself is never stored), so that logging
out on one daemon process ends the session on every other. The indexes let the overview count
today's receipts and acknowledgements and each platform's deadlines from index ranges, however
long the history.

Revision ID: 0030
Revises: 0020
Create Date: 2024-10-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column[datetime]:
    # Written out rather than taken from notifier.store.tables (a migration is a snapshot).
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("language", sa.String(8), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("username", name="pk_users"),
    )
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.PrimaryKeyConstraint("token_hash", name="pk_user_sessions"),
    )
    op.create_index("ix_user_sessions_username", "user_sessions", ["username"])
    op.create_index("ix_user_sessions_expires_at", "user_sessions", ["expires_at"])
    op.create_index(
        "ix_notices_platform_state_delivered_at", "notices", ["platform", "state", "delivered_at"]
    )
    op.create_index("ix_notices_receipt_at", "notices", ["receipt_at"])
    op.create_index("ix_acks_received_at", "acks", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_acks_received_at", table_name="acks")
    op.drop_index("ix_notices_receipt_at", table_name="notices")
    op.drop_index("ix_notices_platform_state_delivered_at", table_name="notices")
    op.drop_index("ix_user_sessions_expires_at", table_name="user_sessions")
    op.drop_index("ix_user_sessions_username", table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_table("users")
