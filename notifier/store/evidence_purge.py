"""Purging what is past ``evidence.retention`` (SPEC §15): ``notifier purge``.

Payloads whose ``kept_until`` has passed lose their ciphertext (the row, its SHA-256 and size stay,
and so does every ledger entry naming it); requests settled (removed, rejected, failed or
withdrawn) longer ago than the retention lose their explanation (in the stored request and in any
conflicting version) and their withdrawal reason; acknowledgements received longer ago lose the
operator's note. Hashes, states and times stay, so the record still verifies and the report's
figures do not change. A real purge is recorded in the ledger (counts only) in its transaction.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.ports.evidence import PurgeCounts
from notifier.store.evidence_tables import evidence_payloads
from notifier.store.tables import acks, request_conflicts, requests

SETTLED = ("removed", "rejected", "failed", "withdrawn")
_CHUNK = 500


def _last_activity() -> Any:
    return func.coalesce(
        requests.c.resolved_at, requests.c.acknowledged_at, requests.c.delivered_at, requests.c.ingested_at
    )


def _without_explanation(body: str) -> str | None:
    """The request body with its explanation cleared; None when it has none."""
    document = json.loads(body)
    if document.get("explanation") is None:
        return None
    document["explanation"] = None
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def purge(conn: AsyncConnection, *, now: datetime, retention: timedelta, dry_run: bool) -> PurgeCounts:
    cutoff = now - retention
    payload_where = (evidence_payloads.c.kept_until < now, evidence_payloads.c.ciphertext.is_not(None))
    payloads, payloads_oldest = (
        await conn.execute(
            select(func.count(), func.min(evidence_payloads.c.kept_until)).where(*payload_where)
        )
    ).one()
    last = _last_activity()
    rows = (
        await conn.execute(
            select(requests.c.request_id, requests.c.body, requests.c.withdrawal_reason, last.label("last"))
            .where(requests.c.state.in_(SETTLED), last < cutoff)
            .order_by(requests.c.request_id)
        )
    ).all()
    changed: list[tuple[str, str | None]] = []
    oldest: datetime | None = None
    for row in rows:
        body = _without_explanation(row.body)
        if body is None and row.withdrawal_reason is None:
            continue
        changed.append((row.request_id, body))
        oldest = row.last if oldest is None or row.last < oldest else oldest
    note_where = (acks.c.note.is_not(None), acks.c.received_at < cutoff)
    notes, notes_oldest = (
        await conn.execute(select(func.count(), func.min(acks.c.received_at)).where(*note_where))
    ).one()
    counts = PurgeCounts(
        payloads=payloads,
        payloads_oldest=payloads_oldest,
        requests=len(changed),
        requests_oldest=oldest,
        notes=notes,
        notes_oldest=notes_oldest,
    )
    if dry_run:
        return counts
    await conn.execute(update(evidence_payloads).where(*payload_where).values(ciphertext=None))
    await conn.execute(update(acks).where(*note_where).values(note=None))
    for request_id, body in changed:
        values: dict[str, Any] = {"withdrawal_reason": None}
        if body is not None:
            values["body"] = body
        await conn.execute(update(requests).where(requests.c.request_id == request_id).values(**values))
    ids = [request_id for request_id, _ in changed]
    for start in range(0, len(ids), _CHUNK):
        conflicts = await conn.execute(
            select(request_conflicts.c.id, request_conflicts.c.body).where(
                request_conflicts.c.request_id.in_(ids[start : start + _CHUNK])
            )
        )
        for conflict_id, conflict_body in conflicts.all():
            cleared = _without_explanation(conflict_body)
            if cleared is not None:
                await conn.execute(
                    update(request_conflicts)
                    .where(request_conflicts.c.id == conflict_id)
                    .values(body=cleared)
                )
    return counts
