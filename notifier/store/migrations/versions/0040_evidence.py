"""The evidence ledger (SPEC §15): hash-chained entries, the one-row head, encrypted payloads.

A store that already holds notices and requests starts its chain with a baseline: one ``state``
entry per notice (with its requests) and per 500 requests in no notice, as the tables hold them
now, so that ``notifier evidence verify`` replays to the present from the first entry. An empty
store starts empty.

Revision ID: 0040
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from notifier.domain.evidence import GENESIS, Head, Snapshot, chain, state_record

revision: str = "0040"
down_revision: str | None = "0038"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHUNK = 500


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
    _baseline()
    # The head follows every entry appended, in the statement that appends it: one round trip less
    # per transaction than moving it apart. Deleting entries leaves it where it was.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_moves_head() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE ledger_head SET seq = NEW.seq, hash = NEW.entry_hash WHERE id = 1 AND seq < NEW.seq; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_head_follows AFTER INSERT ON ledger "
            "FOR EACH ROW EXECUTE FUNCTION ledger_moves_head()"
        )
    else:
        op.execute(
            "CREATE TRIGGER ledger_head_follows AFTER INSERT ON ledger BEGIN "
            "UPDATE ledger_head SET seq = NEW.seq, hash = NEW.entry_hash WHERE id = 1 AND seq < NEW.seq; END"
        )


def _pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _snapshot(row: Any) -> Snapshot:
    return Snapshot.of(
        row.state, _aware(row.delivered_at), _aware(row.acknowledged_at), _aware(row.resolved_at)
    )


def _baseline() -> None:
    """The chain's first entries on a store with history: what its tables hold now."""
    bind = op.get_bind()
    ts = sa.DateTime(timezone=True)

    def times() -> list[sa.ColumnClause[Any]]:
        return [sa.column(n, ts) for n in ("delivered_at", "acknowledged_at", "resolved_at")]

    notices = sa.table(
        "notices", sa.column("notice_id"), sa.column("state"), sa.column("updated_at", ts), *times()
    )
    requests = sa.table(
        "requests",
        sa.column("request_id"),
        sa.column("notice_id"),
        sa.column("state"),
        sa.column("ingested_at", ts),
        *times(),
    )
    found_notices = bind.execute(sa.select(notices).order_by(notices.c.notice_id)).all()
    members: dict[str | None, dict[str, Snapshot]] = {}
    latest: datetime | None = None
    for row in bind.execute(sa.select(requests).order_by(requests.c.request_id)):
        members.setdefault(row.notice_id, {})[row.request_id] = _snapshot(row)
        ingested = _aware(row.ingested_at)
        latest = ingested if latest is None or (ingested and ingested > latest) else latest
    if not found_notices and not members:
        return
    records = []
    for row in found_notices:
        records.append(
            state_record(
                notice_id=row.notice_id, notice=_snapshot(row), requests=members.pop(row.notice_id, {})
            )
        )
        updated = _aware(row.updated_at)
        latest = updated if latest is None or (updated and updated > latest) else latest
    for owner, group in members.items():
        ids = sorted(group)
        for start in range(0, len(ids), _CHUNK):
            chunk = {i: group[i] for i in ids[start : start + _CHUNK]}
            records.append(state_record(notice_id=owner, notice=None, requests=chunk))
    entries = chain(Head(0, GENESIS), latest or datetime.now(UTC), records)
    ledger = sa.table(
        "ledger",
        *(sa.column(n) for n in ("seq", "kind", "notice_id", "request_ids", "payload_sha256", "meta")),
        sa.column("at", ts),
        sa.column("prev_hash"),
        sa.column("entry_hash"),
    )
    rows = [
        {
            "seq": e.seq,
            "at": e.at if bind.dialect.name != "sqlite" else e.at.replace(tzinfo=None),
            "kind": e.kind,
            "notice_id": e.notice_id,
            "request_ids": json.dumps(list(e.request_ids), separators=(",", ":")),
            "payload_sha256": None,
            "meta": e.meta,
            "prev_hash": e.prev_hash,
            "entry_hash": e.entry_hash,
        }
        for e in entries
    ]
    for start in range(0, len(rows), _CHUNK):
        bind.execute(sa.insert(ledger), rows[start : start + _CHUNK])
    head = sa.table("ledger_head", sa.column("id"), sa.column("seq"), sa.column("hash"))
    bind.execute(
        sa.update(head).where(head.c.id == 1).values(seq=entries[-1].seq, hash=entries[-1].entry_hash)
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS ledger_head_follows" + (" ON ledger" if _pg() else ""))
    if _pg():
        op.execute("DROP FUNCTION IF EXISTS ledger_moves_head()")
    op.drop_index("ix_evidence_payloads_kept_until", table_name="evidence_payloads")
    op.drop_table("evidence_payloads")
    op.drop_table("ledger_head")
    op.drop_index("ix_ledger_at", table_name="ledger")
    op.drop_index("ix_ledger_notice_id_seq", table_name="ledger")
    op.drop_table("ledger")
