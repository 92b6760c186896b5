"""Manual records (migration 0035, SPEC §15): who entered an acknowledgement, retry, submission,
clarification or withdrawal by hand, when it was entered, apart from the time it claims.

``acks`` gains ``by`` (NULL for the platform's own acknowledgements: every manual one has it),
``entered_at`` (when it was typed in, from the clock; ``received_at`` stays the time it claims,
the time that counts) and ``dkim`` (an email reply's DKIM results as the receiving server's
``Authentication-Results`` gave them). ``manual_records`` holds the other manual actions, one row
each (a withdrawal one row per request). Imported by :mod:`notifier.store.tables`, whose
``metadata`` it adds to.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from notifier.store.tables import AutoId, UTCDateTime, acks, metadata

for _column in (
    Column("by", String(128), nullable=True),
    Column("entered_at", UTCDateTime, nullable=True),
    Column("dkim", Text, nullable=True),
):
    acks.append_column(_column)

manual_records = Table(
    "manual_records",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("action", String(32), nullable=False),  # ManualAction: submitted, retry, clarify, withdraw
    Column("notice_id", String(64), nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("at", UTCDateTime, nullable=False),  # the time it claims
    Column("entered_at", UTCDateTime, nullable=False),  # when it was entered, from the clock
    Column("by", String(128), nullable=False),
    Column("source", String(16), nullable=False),  # cli or console
)
Index(None, manual_records.c.notice_id, manual_records.c.id)
Index(None, manual_records.c.request_id)
