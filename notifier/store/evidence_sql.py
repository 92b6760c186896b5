"""The evidence ledger's reads (:class:`notifier.ports.EvidenceStore`) in SQL, and the appending of
entries that record no change of state (a message as it came in) in a transaction of their own.

Entries are appended by the store's other methods inside their own transactions
(:mod:`notifier.store.evidence_writer`); this module only reads them back: in order, by notice or
request, the head, the payloads (decrypted and checked against their hash), and the states the
tables hold now, read in one transaction with the head so that the two can be compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.domain.evidence import EvidenceRecord, Head, LedgerEntry, Snapshot, staff_record
from notifier.ports.evidence import PayloadCheck, PurgeCounts, StoredStates
from notifier.store.evidence_purge import purge
from notifier.store.evidence_tables import evidence_payloads, ledger, ledger_head, ledger_pending
from notifier.store.evidence_writer import (
    EvidenceWriter,
    PayloadCorrupt,
    entry_from_row,
    pending_entry,
    unseal,
)
from notifier.store.ingest import as_utc
from notifier.store.tables import notices, requests

_PAGE = 2000


class EvidenceSqlMixin:
    """:class:`notifier.ports.EvidenceStore` for :class:`notifier.store.sql.SqlStore`."""

    if TYPE_CHECKING:
        _evidence: EvidenceWriter
        _reader: AsyncEngine

        @property
        def dialect(self) -> str: ...

        def _write(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _read(self, action: str) -> AbstractAsyncContextManager[AsyncConnection]: ...

        def _guard(self, action: str) -> AbstractAsyncContextManager[None]: ...

    @property
    def evidence_enabled(self) -> bool:
        return self._evidence.enabled

    @property
    def evidence_key_set(self) -> bool:
        return self._evidence.options.key is not None

    async def record_evidence(self, records: Sequence[EvidenceRecord], *, at: datetime) -> None:
        if not records or not self._evidence.enabled:
            return
        async with self._write("record_evidence") as conn:
            await self._evidence.append(conn, as_utc(at), records)

    async def chain_pending_evidence(self) -> int:
        """Chain the entries daemons left waiting (none on SQLite); how many there were."""
        if not self._evidence.shared or not self._evidence.enabled:
            return 0
        async with self._read("pending_evidence") as conn:
            waiting = (await conn.execute(select(ledger_pending.c.id).limit(1))).first()
        if waiting is None:
            return 0
        async with self._write("chain_pending_evidence") as conn:
            return await self._evidence.chain_pending(conn)

    async def ledger_head(self) -> Head:
        async with self._read("ledger_head") as conn:
            return await _head(conn)

    async def ledger_entries(
        self, *, after: int = 0, upto: int | None = None, limit: int = _PAGE
    ) -> list[LedgerEntry]:
        stmt = select(ledger).where(ledger.c.seq > after)
        if upto is not None:
            stmt = stmt.where(ledger.c.seq <= upto)
        async with self._read("ledger_entries") as conn:
            rows = await conn.execute(stmt.order_by(ledger.c.seq).limit(limit))
            return [entry_from_row(row) for row in rows]

    async def iter_ledger(self, *, after: int = 0, upto: int | None = None) -> AsyncIterator[LedgerEntry]:
        """Every entry after ``after`` up to ``upto`` (None: the end), in order, a page at a time."""
        while True:
            page = await self.ledger_entries(after=after, upto=upto)
            for entry in page:
                yield entry
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    async def ledger_for_notice(self, notice_id: str) -> list[LedgerEntry]:
        stmt = select(ledger).where(ledger.c.notice_id == notice_id).order_by(ledger.c.seq)
        async with self._read("ledger_for_notice") as conn:
            return [entry_from_row(row) for row in await conn.execute(stmt)]

    async def ledger_for_request(self, request_id: str) -> list[LedgerEntry]:
        """Entries naming the request: those of its notice that name it or name no request (about
        the whole notice), and those about no notice that list it (intake, checks)."""
        async with self._read("ledger_for_request") as conn:
            notice_id = (
                await conn.execute(select(requests.c.notice_id).where(requests.c.request_id == request_id))
            ).scalar()
            listed = ledger.c.request_ids.contains(json.dumps(request_id), autoescape=True)
            clauses = [and_(ledger.c.notice_id.is_(None), listed)]
            if notice_id is not None:
                clauses.append(
                    and_(ledger.c.notice_id == notice_id, or_(listed, ledger.c.request_ids == "[]"))
                )
            rows = await conn.execute(select(ledger).where(or_(*clauses)).order_by(ledger.c.seq))
            entries = [entry_from_row(row) for row in rows]
        return [e for e in entries if not e.request_ids or request_id in e.request_ids]

    async def evidence_payload(self, sha256: str) -> bytes | None:
        """The plaintext of a kept payload; None when it is not kept (purged, never stored, or no
        key to read it). Raises :class:`PayloadCorrupt` when it was changed."""
        stmt = select(evidence_payloads.c.ciphertext).where(evidence_payloads.c.sha256 == sha256)
        async with self._read("evidence_payload") as conn:
            ciphertext = (await conn.execute(stmt)).scalar()
        key = self._evidence.options.key
        if ciphertext is None or key is None:
            return None
        return _checked(key, sha256, bytes(ciphertext))

    async def check_payloads(self) -> AsyncIterator[PayloadCheck]:
        """Every payload, a page at a time: kept ones decrypted and hashed again; those no longer
        kept (purged past retention, or recorded without a key) reported as such."""
        key = self._evidence.options.key
        after = ""
        while True:
            stmt = (
                select(evidence_payloads.c.sha256, evidence_payloads.c.ciphertext)
                .where(evidence_payloads.c.sha256 > after)
                .order_by(evidence_payloads.c.sha256)
                .limit(500)
            )
            async with self._read("check_payloads") as conn:
                rows = (await conn.execute(stmt)).all()
            for sha, ciphertext in rows:
                if ciphertext is None:
                    yield PayloadCheck(sha256=sha, checked=False, kept=False)
                    continue
                if key is None:
                    yield PayloadCheck(sha256=sha, checked=False)
                    continue
                try:
                    _checked(key, sha, bytes(ciphertext))
                except PayloadCorrupt as error:
                    yield PayloadCheck(sha256=sha, checked=True, problem=str(error))
                else:
                    yield PayloadCheck(sha256=sha, checked=True)
            if len(rows) < 500:
                return
            after = rows[-1][0]

    async def purge_evidence(
        self, *, now: datetime, retention: timedelta, dry_run: bool, by: str
    ) -> PurgeCounts:
        """Purge (or, ``dry_run``, count) what is past retention; a real purge is recorded in the
        ledger with its counts, in its transaction."""
        async with self._write("purge_evidence") as conn:
            counts = await purge(conn, now=as_utc(now), retention=retention, dry_run=dry_run)
            if not dry_run:
                record = staff_record(
                    "purge", by=by, retention_s=int(retention.total_seconds()), **counts.as_meta()
                )
                await self._evidence.append(conn, as_utc(now), [record])
        return counts

    async def stored_states(self) -> StoredStates:
        """The head and every notice's and request's state and times, read in one transaction."""
        reader = self._reader
        if self.dialect == "postgresql":
            reader = reader.execution_options(isolation_level="REPEATABLE READ")
        async with self._guard("stored_states"), reader.begin() as conn:
            head = await _head(conn)
            found_notices = {
                r.notice_id: Snapshot.of(r.state, r.delivered_at, r.acknowledged_at, r.resolved_at)
                for r in await conn.execute(
                    select(
                        notices.c.notice_id,
                        notices.c.state,
                        notices.c.delivered_at,
                        notices.c.acknowledged_at,
                        notices.c.resolved_at,
                    )
                )
            }
            found_requests = {
                r.request_id: Snapshot.of(r.state, r.delivered_at, r.acknowledged_at, r.resolved_at)
                for r in await conn.execute(
                    select(
                        requests.c.request_id,
                        requests.c.state,
                        requests.c.delivered_at,
                        requests.c.acknowledged_at,
                        requests.c.resolved_at,
                    )
                )
            }
            pending = (
                [
                    pending_entry(row)
                    for row in await conn.execute(select(ledger_pending).order_by(ledger_pending.c.id))
                ]
                if self._evidence.shared
                else []
            )
        return StoredStates(head=head, notices=found_notices, requests=found_requests, pending=pending)


async def _head(conn: AsyncConnection) -> Head:
    row = (
        await conn.execute(select(ledger_head.c.seq, ledger_head.c.hash).where(ledger_head.c.id == 1))
    ).first()
    return Head(0, "0" * 64) if row is None else Head(row.seq, row.hash)


def _checked(key: bytes, sha256: str, ciphertext: bytes) -> bytes:
    plaintext = unseal(key, sha256, ciphertext)
    if hashlib.sha256(plaintext).hexdigest() != sha256:
        raise PayloadCorrupt(f"payload {sha256} does not hash to its name")
    return plaintext
