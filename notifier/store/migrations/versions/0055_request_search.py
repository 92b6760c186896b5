"""The searched text of each request in a table of its own, with the trigram index moved onto it.

Migration 0036 indexed an expression over ``requests.body``; PostgreSQL wrote a new entry for every
trigram of every URL each time a request's state changed (an update that moves a row's indexed
state cannot be HOT), which cost more than the update itself. ``request_search`` holds the text,
written once with the request by a trigger (whatever inserts the request, and at PostgreSQL's
cost, not the intake process's); the index over it is never touched again. SQLite keeps reading
the bodies (it has no trigram index); its table exists and stays empty.

Revision ID: 0055
Revises: 0050
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import structlog
from alembic import op

revision: str = "0055"
down_revision: str | None = "0050"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = structlog.get_logger("notifier.store")

OLD_INDEX = "ix_requests_search_trgm"
INDEX = "ix_request_search_trgm"
# 0036's expression, for a downgrade.
OLD_SEARCHED = (
    "(((body::jsonb ->> 'urls'::text) || ' '::text) || COALESCE(body::jsonb ->> 'case_ref'::text, ''::text))"
)

# The searched text of a request (its URLs, then its case reference, by spaces), from its body: for
# the requests stored before, and by the trigger for every one inserted after.
BACKFILL = """
INSERT INTO request_search (request_id, text)
SELECT request_id,
       array_to_string(ARRAY(SELECT jsonb_array_elements_text(body::jsonb -> 'urls')), ' ')
       || ' ' || COALESCE(body::jsonb ->> 'case_ref', '')
FROM requests
"""
TRIGGER_FUNCTION = """
CREATE FUNCTION request_search_text() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
INSERT INTO request_search (request_id, text) VALUES (
    NEW.request_id,
    array_to_string(ARRAY(SELECT jsonb_array_elements_text(NEW.body::jsonb -> 'urls')), ' ')
    || ' ' || COALESCE(NEW.body::jsonb ->> 'case_ref', ''));
RETURN NULL;
END $$
"""
TRIGGER = (
    "CREATE TRIGGER request_search_follows AFTER INSERT ON requests "
    "FOR EACH ROW EXECUTE FUNCTION request_search_text()"
)


def _has_trigrams() -> bool:
    bind = op.get_bind()
    return bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).first() is not None


def upgrade() -> None:
    op.create_table(
        "request_search",
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_request_search"),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["requests.request_id"],
            name="fk_request_search_request_id_requests",
            ondelete="CASCADE",
        ),
    )
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(INDEX, "request_search", ["text"])  # never used: the table stays empty
        return
    op.execute(BACKFILL)
    op.execute(TRIGGER_FUNCTION)
    op.execute(TRIGGER)
    if _has_trigrams():  # 0036 created the extension where it could
        op.execute(f"DROP INDEX IF EXISTS {OLD_INDEX}")
        op.execute(f"CREATE INDEX {INDEX} ON request_search USING gin (text gin_trgm_ops)")
    else:
        log.warning("store.no_trigram_index", reason="the pg_trgm extension is not installed")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS request_search_follows ON requests")
        op.execute("DROP FUNCTION IF EXISTS request_search_text()")
        if _has_trigrams():
            op.execute(
                f"CREATE INDEX IF NOT EXISTS {OLD_INDEX} ON requests USING gin ({OLD_SEARCHED} gin_trgm_ops)"
            )
    op.drop_table("request_search")
