"""The operations console: search from an index, logins counted by every daemon process, and the
record of staff-account changes.

* On PostgreSQL, a trigram index (``pg_trgm``, GIN) over each request's URLs and case reference,
  the text a search for "part of a URL or case reference" reads: the console answers it from the
  index instead of reading a million bodies. Creating the extension needs a role allowed to (a
  superuser, or since PostgreSQL 13 the database's owner, ``pg_trgm`` being a trusted extension);
  where it is not allowed or not installed, the migration goes on without the index and the search
  still works, by reading the bodies. SQLite has no such index.
* ``login_failures`` and ``login_lockouts``: wrong passwords per user and per address, and the
  lockouts they caused, in the store, so that every daemon process behind a load balancer counts
  the same attempts.
* ``user_events``: who added, changed, disabled, enabled or reset the password of which user, when.

Revision ID: 0036
Revises: 0030
Create Date: 2024-10-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import structlog
from alembic import op

revision: str = "0036"
down_revision: str | None = "0045"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = structlog.get_logger("notifier.store")

# The searched text, exactly as notifier.store.console_tables gives it: the planner uses the index
# only for this very expression.
SEARCHED = (
    "(((body::jsonb ->> 'urls'::text) || ' '::text) || COALESCE(body::jsonb ->> 'case_ref'::text, ''::text))"
)
TRGM_INDEX = "ix_requests_search_trgm"


def _trigram_index() -> None:
    bind = op.get_bind()
    available = bind.execute(sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
    if available is None:
        log.warning("store.no_trigram_index", reason="the pg_trgm extension is not installed")
        return
    savepoint = bind.begin_nested()
    try:
        bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as error:
        savepoint.rollback()
        log.warning("store.no_trigram_index", reason=type(error.orig).__name__)
        return
    savepoint.commit()
    op.execute(f"CREATE INDEX {TRGM_INDEX} ON requests USING gin ({SEARCHED} gin_trgm_ops)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _trigram_index()
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "login_failures",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key_failed_at", "login_failures", ["key", "failed_at"])
    op.create_table(
        "login_lockouts",
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_login_lockouts"),
    )
    op.create_table(
        "user_events",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user_events"),
    )
    op.create_index("ix_user_events_at", "user_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_user_events_at", table_name="user_events")
    op.drop_table("user_events")
    op.drop_table("login_lockouts")
    op.drop_index("ix_login_failures_key_failed_at", table_name="login_failures")
    op.drop_table("login_failures")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {TRGM_INDEX}")
