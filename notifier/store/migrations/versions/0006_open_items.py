"""The oldest unacknowledged request per platform, cheaply, for the gauges of /metrics (SPEC §10).

``/metrics`` reads, on every scrape, the ``delivered_at`` of each platform's oldest request still in
``delivered``. No index had ``delivered_at`` beside the state, so that was a scan of the whole
history. This partial index holds only the requests in ``delivered``: the lookup is one probe per
platform, and intake, which writes ``pending`` requests, never maintains it. The counts of open
requests and notices need nothing new: the (platform, state, …) indexes cover them.

Numbered 0006 to leave 0005 to the report's migration, which was being written at the same time.

Revision ID: 0006
Revises: 0004
Create Date: 2024-09-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DELIVERED = sa.text("state = 'delivered'")


def upgrade() -> None:
    op.create_index(
        "ix_requests_platform_delivered_at",
        "requests",
        ["platform", "delivered_at"],
        postgresql_where=_DELIVERED,
        sqlite_where=_DELIVERED,
    )


def downgrade() -> None:
    op.drop_index("ix_requests_platform_delivered_at", table_name="requests")
