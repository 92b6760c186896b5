"""The store on SQLite or PostgreSQL, through SQLAlchemy Core (async).

Intake is the hot path (thousands of requests a second, in batches of a few hundred), so
:meth:`SqlStore.ingest` does a batch in one transaction and a constant number of statements:
a multi-row ``INSERT … ON CONFLICT DO NOTHING RETURNING`` of the new requests, one ``SELECT``
of the stored hashes of the ids that were already there, one insert of conflicts and one of dead
letters. Idempotency rests on the primary key, not on a read before the write, so two daemons
ingesting the same message at once store it once and both answer correctly.

Batching and dispatch (:class:`notifier.ports.NoticeStore`) live in :mod:`notifier.store.notices_sql`,
acknowledgements, receipts and bounces (:class:`notifier.ports.AckStore`) in :mod:`notifier.store.acks_sql`,
the open items behind the gauges of ``/metrics`` (:class:`notifier.ports.MonitoringStore`) in
:mod:`notifier.store.open_items_sql`, the console's accounts and reads in :mod:`notifier.store.users_sql` and
:mod:`notifier.store.console_sql`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Row, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from notifier.domain.models import (
    Conflict,
    DeadLetter,
    IntakeOutcome,
    RequestState,
    StoredRequest,
    TakedownRequest,
)
from notifier.errors import ConfigError, StoreUnavailable
from notifier.ports import Incoming, StatusCounts
from notifier.store import migrate
from notifier.store.acks_sql import AckSqlMixin
from notifier.store.console_sql import ConsoleSqlMixin
from notifier.store.engine import READ_ONLY, build_engine, describe_failure, is_unavailable, parse_store_url
from notifier.store.evidence_sql import EvidenceSqlMixin
from notifier.store.evidence_writer import (
    EvidenceOptions,
    EvidenceWriter,
    conflict_record,
    dead_letter_record,
    intake_record,
)
from notifier.store.ingest import Item, as_utc, dead_letter_row, plan_batch
from notifier.store.manual_sql import ManualSqlMixin
from notifier.store.notices_sql import NoticeSqlMixin
from notifier.store.notices_staff_sql import NoticeStaffSqlMixin
from notifier.store.open_items_sql import OpenItemsSqlMixin
from notifier.store.rate_sql import RateSqlMixin
from notifier.store.report_acks_sql import ReportAcksSqlMixin
from notifier.store.report_sql import ReportSqlMixin
from notifier.store.report_verify_sql import VerificationReportSqlMixin
from notifier.store.sla_sql import SlaSqlMixin
from notifier.store.tables import dead_letters, notices, request_conflicts, requests
from notifier.store.users_sql import UserSqlMixin
from notifier.store.verify_sql import VerifySqlMixin
from notifier.store.withdraw_sql import WithdrawSqlMixin

# Rows per INSERT and ids per IN (…): well under SQLite's and asyncpg's limits on bound parameters.
# Inserts are executed as "executemany" of one cached statement, which SQLAlchemy sends as multi-row
# VALUES ("insertmanyvalues"); building ``insert().values(rows)`` instead compiles the statement
# afresh for every batch and made intake five times slower.
_CHUNK = 500

_T = TypeVar("_T")


class SqlStore(
    NoticeSqlMixin,
    NoticeStaffSqlMixin,
    RateSqlMixin,
    AckSqlMixin,
    ReportSqlMixin,
    SlaSqlMixin,
    OpenItemsSqlMixin,
    UserSqlMixin,
    ConsoleSqlMixin,
    VerifySqlMixin,
    VerificationReportSqlMixin,
    WithdrawSqlMixin,
    ManualSqlMixin,
    ReportAcksSqlMixin,
    EvidenceSqlMixin,
):
    """:class:`notifier.ports.Store` (intake, notices, acknowledgements) on SQLite or PostgreSQL.

    Build it with ``await create_store(url)``, which also applies the migrations; or construct it
    and ``await store.open()``. ``close()`` releases every pooled connection.
    """

    def __init__(self, url: str, *, evidence: EvidenceOptions | None = None) -> None:
        self._url = parse_store_url(url)
        self._engine: AsyncEngine = build_engine(self._url)
        self._reader: AsyncEngine = self._engine.execution_options(**{READ_ONLY: True})
        self._insert = postgresql.insert if self._url.dialect == "postgresql" else sqlite.insert
        self._evidence = EvidenceWriter(
            evidence or EvidenceOptions(), self._insert, shared=self._url.dialect == "postgresql"
        )

    @property
    def name(self) -> str:
        """How messages name this store, e.g. ``PostgreSQL store postgresql://app:***@db/notifier``."""
        return self._url.display

    @property
    def dialect(self) -> str:
        return self._url.dialect

    @property
    def engine(self) -> AsyncEngine:
        """The engine, for other adapters of the same database (tests, reports)."""
        return self._engine

    async def open(self) -> None:
        """Apply pending migrations (waiting for another process doing the same)."""
        async with self._guard("migrate"):
            await migrate.upgrade(self._engine, read_only_engine=self._reader)

    async def check_schema(self) -> None:
        """Refuse a database notifier has not made (or not migrated to this version): a command that
        only reads or edits what is stored must not create, nor migrate, a store."""
        async with self._guard("check_schema"), self._reader.connect() as connection:
            current = await migrate.current_revision(connection)
        if current is None:
            raise ConfigError(
                f"store.url: {self.name} holds no notifier store (nothing has run with this "
                "configuration yet: check the URL, or start `notifier run` once)"
            )
        if current != migrate.head_revision():
            raise ConfigError(
                f"store.url: {self.name} is at schema {current}, not this notifier's "
                f"{migrate.head_revision()}: start `notifier run` once to migrate it"
            )

    async def close(self) -> None:
        await self._engine.dispose()

    # -- intake ---------------------------------------------------------------------------------

    async def ingest(
        self, incoming: Sequence[Incoming], dead_letters: Sequence[DeadLetter], *, now: datetime
    ) -> list[IntakeOutcome]:
        # Everything that can be prepared (and refused) is done before the write lock is taken.
        now = as_utc(now)
        plan = plan_batch(incoming)
        letters = [(dead_letter_row(letter), letter.redelivered) for letter in dead_letters]
        async with self._write("ingest") as conn:
            inserted = await self._insert_new(conn, plan.first_copies, now=now)
            stored = await self._stored_hashes(conn, [i for i in plan.first_ids if i not in inserted])
            outcomes, conflicts = plan.judge(inserted=inserted, stored_hashes=stored)
            new_conflicts = await self._record_conflicts(conn, conflicts, now=now) if conflicts else []
            kept = await self._record_dead_letters(conn, letters) if letters else []
            records = [intake_record(inserted)] if inserted else []
            records += [
                conflict_record(item.request_id, item.body, item.incoming.source) for item in new_conflicts
            ]
            records += [dead_letter_record(row) for row in kept]
            await self._evidence.append(conn, now, records)
        return outcomes

    async def _insert_new(
        self, conn: AsyncConnection, first_copies: Sequence[Item], *, now: datetime
    ) -> set[str]:
        """Insert every request id not stored yet; the ids actually inserted."""
        rows: list[dict[str, Any]] = [
            {
                "request_id": item.request_id,
                "platform": item.incoming.request.platform,
                "state": RequestState.PENDING.value,
                "priority": item.incoming.request.priority.value,
                "deadline": item.incoming.request.deadline,
                "content_hash": item.content_hash,
                "body": item.body,
                "source": item.incoming.source,
                "ingested_at": now,
            }
            for item in first_copies
        ]
        # Sorted, so that two PostgreSQL transactions inserting overlapping batches take the
        # unique-index locks in the same order and wait for each other instead of deadlocking.
        rows.sort(key=lambda row: row["request_id"])
        stmt = (
            self._insert(requests)
            .on_conflict_do_nothing(index_elements=["request_id"])
            .returning(requests.c.request_id)
        )
        inserted: set[str] = set()
        for chunk in _chunks(rows):
            result = await conn.execute(stmt, chunk)
            inserted.update(result.scalars())
        return inserted

    async def _stored_hashes(self, conn: AsyncConnection, request_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in _chunks(request_ids):
            result = await conn.execute(
                select(requests.c.request_id, requests.c.content_hash).where(requests.c.request_id.in_(chunk))
            )
            found.update({row.request_id: row.content_hash for row in result})
        return found

    async def _record_conflicts(
        self, conn: AsyncConnection, conflicts: Sequence[Item], *, now: datetime
    ) -> list[Item]:
        """Keep each conflicting copy once per (request id, content); the copies kept just now."""
        rows = [
            {
                "request_id": item.request_id,
                "content_hash": item.content_hash,
                "body": item.body,
                "source": item.incoming.source,
                "at": now,
            }
            for item in conflicts
        ]
        rows.sort(key=lambda row: (row["request_id"], row["content_hash"]))
        stmt = (
            self._insert(request_conflicts)
            .on_conflict_do_nothing(index_elements=["request_id", "content_hash"])
            .returning(request_conflicts.c.request_id, request_conflicts.c.content_hash)
        )
        kept: set[tuple[str, str]] = set()
        for chunk in _chunks(rows):
            kept.update((row.request_id, row.content_hash) for row in await conn.execute(stmt, chunk))
        new: list[Item] = []
        for item in conflicts:
            key = (item.request_id, item.content_hash)
            if key in kept:
                kept.discard(key)  # the same copy twice in one batch is kept, and recorded, once
                new.append(item)
        return new

    async def _record_dead_letters(
        self, conn: AsyncConnection, letters: Sequence[tuple[dict[str, Any], bool]]
    ) -> list[dict[str, Any]]:
        """Insert dead letters, skipping a redelivered one whose body this source already
        dead-lettered; the rows inserted."""
        if self.dialect == "postgresql":
            # Serialise dead-lettering of the same body (in key order, so never a deadlock): a
            # message redelivered to another daemon while the first still commits is then seen.
            lock_keys = sorted({_lock_key(row["source"], row["body_sha256"]) for row, _ in letters})
            for lock_key in lock_keys:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        seen: set[tuple[str, str]] = set()
        redelivered = list({(row["source"], row["body_sha256"]) for row, again in letters if again})
        for pairs in _chunks(redelivered):
            key_columns = tuple_(dead_letters.c.source, dead_letters.c.body_sha256)
            result = await conn.execute(
                select(dead_letters.c.source, dead_letters.c.body_sha256)
                .where(key_columns.in_(pairs))
                .distinct()
            )
            seen.update((row.source, row.body_sha256) for row in result)
        keep: list[dict[str, Any]] = []
        for row, again in letters:
            key = (row["source"], row["body_sha256"])
            if again and key in seen:
                continue
            seen.add(key)
            keep.append(row)
        for chunk in _chunks(keep):
            await conn.execute(dead_letters.insert(), chunk)
        return keep

    # -- reads ----------------------------------------------------------------------------------

    async def get_requests(self, request_ids: Sequence[str]) -> list[StoredRequest]:
        wanted = list(dict.fromkeys(request_ids))
        found: dict[str, StoredRequest] = {}
        async with self._read("get_requests") as conn:
            for chunk in _chunks(wanted):
                result = await conn.execute(select(requests).where(requests.c.request_id.in_(chunk)))
                found.update({row.request_id: _stored_request(row) for row in result})
        return [found[request_id] for request_id in wanted if request_id in found]

    async def status_counts(self) -> StatusCounts:
        async with self._read("status_counts") as conn:
            request_counts = await _grouped(conn, requests.c.platform, requests.c.state)
            notice_counts = await _grouped(conn, notices.c.platform, notices.c.state)
            total = await conn.scalar(select(func.count()).select_from(dead_letters))
        return StatusCounts(requests=request_counts, notices=notice_counts, dead_letters_total=total or 0)

    async def conflicts(self, *, limit: int = 100) -> list[Conflict]:
        stmt = (
            select(request_conflicts.c.request_id, request_conflicts.c.at, request_conflicts.c.source)
            .order_by(request_conflicts.c.at.desc(), request_conflicts.c.id.desc())
            .limit(limit)
        )
        async with self._read("conflicts") as conn:
            result = await conn.execute(stmt)
            return [Conflict(request_id=row.request_id, at=row.at, source=row.source) for row in result]

    async def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        stmt = select(dead_letters).order_by(dead_letters.c.at.desc(), dead_letters.c.id.desc()).limit(limit)
        async with self._read("dead_letters") as conn:
            result = await conn.execute(stmt)
            return [
                DeadLetter(
                    source=row.source,
                    reason=row.reason,
                    at=row.at,
                    body=bytes(row.body),
                    request_id=row.request_id,
                )
                for row in result
            ]

    async def ping(self) -> None:
        async with self._read("ping") as conn:
            await conn.execute(text("SELECT 1"))

    # -- transactions and failures ----------------------------------------------------------------

    @asynccontextmanager
    async def _write(self, action: str) -> AsyncIterator[AsyncConnection]:
        async with self._guard(action), self._engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self, action: str) -> AsyncIterator[AsyncConnection]:
        async with self._guard(action), self._reader.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _guard(self, action: str) -> AsyncIterator[None]:
        """Turn connection trouble into :class:`StoreUnavailable`, naming the store, never its password."""
        try:
            yield
        except Exception as error:
            if not is_unavailable(error):
                raise
            message = f"{self.name} is unavailable ({action}): {describe_failure(error)}"
            if self._url.password:
                message = message.replace(self._url.password, "***")
            raise StoreUnavailable(message) from error


async def open_existing_store(url: str, *, evidence: EvidenceOptions | None = None) -> SqlStore:
    """Open the store at ``url`` only if notifier made it and its schema is this version's (raises
    :class:`notifier.errors.ConfigError` naming ``store.url`` otherwise); nothing is created."""
    store = SqlStore(url, evidence=evidence)
    try:
        await store.check_schema()
    except BaseException:
        await store.close()
        raise
    return store


async def create_store(url: str, *, evidence: EvidenceOptions | None = None) -> SqlStore:
    """Open the store at ``url`` with its schema migrated to the latest version.

    Raises :class:`notifier.errors.StoreUnavailable` when the database cannot be reached and
    :class:`notifier.errors.ConfigError` when the URL is not one notifier supports.
    """
    store = SqlStore(url, evidence=evidence)
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    return store


async def _grouped(conn: AsyncConnection, platform: Any, state: Any) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    result = await conn.execute(select(platform, state, func.count()).group_by(platform, state))
    for row_platform, row_state, count in result:
        counts.setdefault(row_platform, {})[row_state] = count
    return counts


def _stored_request(row: Row[Any]) -> StoredRequest:
    return StoredRequest(
        request=TakedownRequest.from_canonical(json.loads(row.body)),
        state=RequestState(row.state),
        ingested_at=row.ingested_at,
        notice_id=row.notice_id,
        delivered_at=row.delivered_at,
        acknowledged_at=row.acknowledged_at,
        resolved_at=row.resolved_at,
    )


def _lock_key(source: str, body_sha256: str) -> int:
    digest = hashlib.sha256(f"dead-letter\0{source}\0{body_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterable[list[_T]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
