"""SLA timers: the monitor's work in due order, whatever the backlog (SPEC §7).

The monitor used to read "the oldest open notices" on every round, so acknowledged notices waiting
for their removal bound filled its page and a new notice's reminder came late. Now each notice
carries ``sla_due_at``: when to look at its SLA next (business time; NULL when nothing is left to
decide), in a partial index, so the next due notice is one index probe and the monitor claims
notices in due order. ``rendered_at`` keeps when a portal notice began to wait for staff to file it
(``sla.file_within``), and ``sla_decisions.dropped_at`` marks a reminder overtaken before it went
out (the acknowledgement came first), so it is never claimed again.

Back-fill: open notices (delivered, acknowledged) are due at their delivery time, so the monitor
looks at each once and moves its timer on; a notice waiting to be filed was rendered when it last
changed (``updated_at``, which its rendering set) and is due then.

Revision ID: 0007
Revises: 0006
Create Date: 2024-10-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIMED = sa.text("sla_due_at IS NOT NULL")


def upgrade() -> None:
    # Nullable columns: SQLite adds them in place (batch mode would rebuild only if it had to).
    with op.batch_alter_table("notices") as batch:
        batch.add_column(sa.Column("rendered_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sla_decisions") as batch:
        batch.add_column(sa.Column("dropped_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE notices SET sla_due_at = delivered_at"
        " WHERE state IN ('delivered', 'acknowledged') AND delivered_at IS NOT NULL"
    )
    op.execute(
        "UPDATE notices SET rendered_at = updated_at, sla_due_at = updated_at"
        " WHERE state = 'awaiting_submission'"
    )
    op.create_index(
        "ix_notices_sla_due_at", "notices", ["sla_due_at"], postgresql_where=_TIMED, sqlite_where=_TIMED
    )


def downgrade() -> None:
    op.drop_index("ix_notices_sla_due_at", table_name="notices")
    with op.batch_alter_table("sla_decisions") as batch:
        batch.drop_column("dropped_at")
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("sla_due_at")
        batch.drop_column("rendered_at")
