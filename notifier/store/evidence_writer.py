"""Appending to the evidence ledger inside the transaction of the change it records.

:meth:`EvidenceWriter.record` is called by the store's methods at the end of their transaction:
it reads the new state and times of the notices and requests the transaction moved (one
``SELECT`` each), stores the payloads (encrypted, deduplicated by the SHA-256 of their plaintext),
then locks the head row, chains the entries after it and moves the head: a constant number of
statements per transaction, however many entries. The head is locked last, so transactions hold
it only for the two statements that need it and never wait for another lock while holding it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain.evidence import (
    EvidenceKind,
    EvidenceRecord,
    Head,
    LedgerEntry,
    Snapshot,
    canonical_meta,
    chain,
    payload_hash,
    state_record,
)
from notifier.errors import ConfigError
from notifier.store.evidence_tables import evidence_payloads, ledger, ledger_head, ledger_pending
from notifier.store.ingest import as_utc
from notifier.store.tables import notices, requests

DEFAULT_RETENTION = timedelta(days=180)
_NONCE = 12
_CHUNK = 500


def parse_key(text: str, *, name: str = "evidence.key_env") -> bytes:
    """An AES key (16, 24 or 32 bytes) written as 64/48/32 hex digits or in base64."""
    text = text.strip()
    candidates: list[bytes] = []
    with contextlib.suppress(ValueError):
        candidates.append(bytes.fromhex(text))
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(decode(text + "=" * (-len(text) % 4)))
    for key in candidates:
        if len(key) in (16, 24, 32):
            return key
    raise ConfigError(
        f"{name}: the key must be 16, 24 or 32 bytes, written in hex or base64 "
        "(e.g. `python -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())'`)"
    )


class PayloadCorrupt(Exception):
    """A kept payload that does not decrypt, or whose plaintext does not hash to its name."""


@dataclass(frozen=True, slots=True)
class EvidenceOptions:
    """Whether the ledger is written, the payloads' key (None: payloads are hashed, not kept) and
    how long payloads are kept."""

    enabled: bool = True
    key: bytes | None = None
    retention: timedelta = DEFAULT_RETENTION
    # A daemon's, on PostgreSQL: entries wait in ``ledger_pending`` for the next process that takes
    # the head (its chainer), instead of taking its lock in the transaction of their change.
    deferred: bool = False


def seal(key: bytes, sha256: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, sha256.encode("ascii"))


def unseal(key: bytes, sha256: str, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(ciphertext[:_NONCE], ciphertext[_NONCE:], sha256.encode("ascii"))
    except InvalidTag:
        raise PayloadCorrupt(f"payload {sha256} does not decrypt: it was changed (or another key)") from None


class EvidenceWriter:
    def __init__(self, options: EvidenceOptions, insert: Any, *, shared: bool = False) -> None:
        """``shared``: a store other processes write too (PostgreSQL), where an urgent lane's
        entries may be waiting in ``ledger_pending``."""
        self.options = options
        self._insert = insert
        self._shared = shared

    @property
    def enabled(self) -> bool:
        return self.options.enabled

    @property
    def shared(self) -> bool:
        """Whether entries may be waiting in ``ledger_pending`` (a store other processes write)."""
        return self._shared

    async def record(
        self,
        conn: AsyncConnection,
        at: datetime,
        records: Sequence[EvidenceRecord] = (),
        *,
        notices_moved: Iterable[str] = (),
        requests_moved: Iterable[str] = (),
        with_requests: bool = True,
    ) -> None:
        """Append ``records`` and a ``state`` entry for each notice in ``notices_moved`` (with its
        requests, unless ``with_requests`` is False) and for ``requests_moved`` outside them."""
        if not self.options.enabled:
            return
        at = as_utc(at)
        states = await self._states(
            conn, list(dict.fromkeys(notices_moved)), list(dict.fromkeys(requests_moved)), with_requests
        )
        await self.append(conn, at, [*records, *states])

    async def append(self, conn: AsyncConnection, at: datetime, records: Sequence[EvidenceRecord]) -> None:
        if not self.options.enabled or not records:
            return
        at = as_utc(at)
        payloads: dict[str, dict[str, Any]] = {}
        hashes = [None if r.payload is None else payload_hash(r.payload) for r in records]
        for record, sha in zip(records, hashes, strict=True):
            if record.payload is not None and sha is not None:
                key = self.options.key
                payloads[sha] = {
                    "sha256": sha,
                    "ciphertext": None if key is None else seal(key, sha, record.payload),
                    "size": len(record.payload),
                    "stored_at": at,
                    "kept_until": at + self.options.retention,
                }
        if payloads:
            stmt = self._insert(evidence_payloads)
            stmt = stmt.on_conflict_do_update(
                index_elements=["sha256"],
                set_={"kept_until": stmt.excluded.kept_until},
                where=evidence_payloads.c.kept_until < stmt.excluded.kept_until,
            )
            rows = sorted(payloads.values(), key=lambda row: row["sha256"])
            for start in range(0, len(rows), _CHUNK):
                await conn.execute(stmt, rows[start : start + _CHUNK])
        if self.options.deferred and self._shared:
            await conn.execute(
                ledger_pending.insert(),
                [_pending_row(at, r, sha) for r, sha in zip(records, hashes, strict=True)],
            )
            return
        await self._chain(conn, at, records, hashes)

    async def chain_pending(self, conn: AsyncConnection) -> int:
        """Chain the entries waiting in ``ledger_pending``; how many there were."""
        return await self._chain(conn, None, (), [])

    async def _chain(
        self,
        conn: AsyncConnection,
        at: datetime | None,
        records: Sequence[EvidenceRecord],
        hashes: Sequence[str | None],
    ) -> int:
        # The head last: held from here to the commit, two statements later.
        row = (
            await conn.execute(
                select(ledger_head.c.seq, ledger_head.c.hash).where(ledger_head.c.id == 1).with_for_update()
            )
        ).one()
        head = Head(row.seq, row.hash)
        entries: list[LedgerEntry] = []
        waiting = 0
        if self._shared:
            # What the urgent lane committed before this took the head goes first: a change it
            # recorded there came before any change of the same notice recorded here.
            taken = await conn.execute(delete(ledger_pending).returning(*ledger_pending.c))
            for pending in sorted(taken, key=lambda p: p.id):
                record = EvidenceRecord(
                    kind=pending.kind,
                    notice_id=pending.notice_id,
                    request_ids=tuple(json.loads(pending.request_ids)),
                    meta=json.loads(pending.meta),
                )
                entries += chain(head, as_utc(pending.at), [record], [pending.payload_sha256])
                head = Head(entries[-1].seq, entries[-1].entry_hash)
                waiting += 1
        if records and at is not None:
            entries += chain(head, at, records, hashes)
        if entries:
            # The head follows by a trigger on the insert (migration 0040).
            await conn.execute(ledger.insert(), [_row(entry) for entry in entries])
        return waiting

    async def _states(
        self,
        conn: AsyncConnection,
        notice_ids: list[str],
        request_ids: list[str],
        with_requests: bool,
    ) -> list[EvidenceRecord]:
        records: list[EvidenceRecord] = []
        by_notice: dict[str, dict[str, Snapshot]] = {n: {} for n in notice_ids}
        loose: dict[str | None, dict[str, Snapshot]] = {}
        notice_rows: dict[str, Snapshot] = {}
        for start in range(0, len(notice_ids), _CHUNK):
            chunk = notice_ids[start : start + _CHUNK]
            # The notices and their requests in one statement: one round trip per transaction.
            stmt: Any = select(
                literal("n").label("what"),
                notices.c.notice_id.label("id"),
                notices.c.notice_id.label("owner"),
                notices.c.state,
                notices.c.delivered_at,
                notices.c.acknowledged_at,
                notices.c.resolved_at,
            ).where(notices.c.notice_id.in_(chunk))
            if with_requests:
                members = select(
                    literal("r"),
                    requests.c.request_id,
                    requests.c.notice_id,
                    requests.c.state,
                    requests.c.delivered_at,
                    requests.c.acknowledged_at,
                    requests.c.resolved_at,
                ).where(requests.c.notice_id.in_(chunk))
                stmt = union_all(stmt, members)
            for r in await conn.execute(stmt):
                snapshot = Snapshot.of(r.state, r.delivered_at, r.acknowledged_at, r.resolved_at)
                if r.what == "n":
                    notice_rows[r.id] = snapshot
                else:
                    by_notice[r.owner][r.id] = snapshot
        seen = {r for group in by_notice.values() for r in group}
        wanted = [r for r in request_ids if r not in seen]
        for start in range(0, len(wanted), _CHUNK):
            result = await conn.execute(
                _request_columns().where(requests.c.request_id.in_(wanted[start : start + _CHUNK]))
            )
            for r in result:
                if r.notice_id in by_notice and with_requests:
                    by_notice[r.notice_id][r.request_id] = _request_snapshot(r)
                else:
                    loose.setdefault(r.notice_id, {})[r.request_id] = _request_snapshot(r)
        for notice_id in notice_ids:
            if notice_id in notice_rows:
                records.append(
                    state_record(
                        notice_id=notice_id, notice=notice_rows[notice_id], requests=by_notice[notice_id]
                    )
                )
        for owner, group in loose.items():
            records.append(state_record(notice_id=owner, notice=None, requests=group))
        return records


def intake_record(request_ids: Iterable[str]) -> EvidenceRecord:
    """The ``state`` entry of requests just taken in: ``pending``, no times yet."""
    pending = Snapshot("pending")
    return state_record(notice_id=None, notice=None, requests={r: pending for r in request_ids})


def dead_letter_record(row: Mapping[str, Any]) -> EvidenceRecord:
    """The entry of a message kept as a dead letter (a request or acknowledgement that could not be
    read, an unmatched mail): the body as the dead letters keep it (cut to their limit), with the
    size and SHA-256 of the whole message and the reason."""
    hint = row["request_id"]
    return EvidenceRecord(
        kind=EvidenceKind.DEAD_LETTER,
        request_ids=(hint,) if hint else (),
        payload=row["body"],
        meta={
            "source": row["source"],
            "reason": row["reason"],
            "size": row["body_size"],
            "sha256": row["body_sha256"],
        },
    )


def conflict_record(request_id: str, body: str, source: str) -> EvidenceRecord:
    """The entry of a message bearing a stored request's id with other content (kept, not acted
    on): the conflicting request as the conflicts keep it, its canonical JSON."""
    return EvidenceRecord(
        kind=EvidenceKind.INTAKE_CONFLICT,
        request_ids=(request_id,),
        payload=body.encode(),
        meta={"source": source},
    )


def _request_columns() -> Any:
    return select(
        requests.c.request_id,
        requests.c.notice_id,
        requests.c.state,
        requests.c.delivered_at,
        requests.c.acknowledged_at,
        requests.c.resolved_at,
    )


def _request_snapshot(row: Any) -> Snapshot:
    return Snapshot.of(row.state, row.delivered_at, row.acknowledged_at, row.resolved_at)


def _pending_row(at: datetime, record: EvidenceRecord, sha: str | None) -> dict[str, Any]:
    return {
        "at": at,
        "kind": record.kind,
        "notice_id": record.notice_id,
        "request_ids": json.dumps(list(record.request_ids), separators=(",", ":")),
        "payload_sha256": sha,
        "meta": canonical_meta(record.meta),
    }


def pending_entry(row: Any) -> LedgerEntry:
    """An entry still waiting in ``ledger_pending``, as the chain will hold it (no place yet)."""
    return LedgerEntry(
        seq=0,
        at=as_utc(row.at),
        kind=row.kind,
        notice_id=row.notice_id,
        request_ids=tuple(json.loads(row.request_ids)),
        payload_sha256=row.payload_sha256,
        meta=row.meta,
        prev_hash="",
        entry_hash="",
    )


def _row(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "kind": entry.kind,
        "notice_id": entry.notice_id,
        "request_ids": json.dumps(list(entry.request_ids), separators=(",", ":")),
        "payload_sha256": entry.payload_sha256,
        "meta": entry.meta,
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
    }


def entry_from_row(row: Any) -> LedgerEntry:
    return LedgerEntry(
        seq=row.seq,
        at=row.at,
        kind=row.kind,
        notice_id=row.notice_id,
        request_ids=tuple(json.loads(row.request_ids)),
        payload_sha256=row.payload_sha256,
        meta=row.meta,
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )
