"""The local intake queue: a durable queue in a SQLite file, for the embedded default.

It usually lives in the store's own file, so that one file is the whole state of a small
installation. A ``notifier submit`` process publishes while the daemon consumes, so every write
takes the write lock up front (``BEGIN IMMEDIATE``) and waits for it (``busy_timeout``) instead of
failing with "database is locked"; WAL lets readers carry on meanwhile.

A received message is *leased*, not removed: it stays in the table with ``lease_until`` set and is
deleted when acknowledged. If the consumer dies before that, the lease runs out and the message is
handed over again, with ``redelivered`` set. Lease times are judged by the database's clock, never
the process's: the daemon may run on a simulated clock, and two processes must agree on when a lease
has expired.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from notifier.errors import QueueUnavailable
from notifier.ports import Delivery

# Unix time with sub-second precision by the database's clock. (``unixepoch('subsec')`` says the
# same but needs SQLite 3.42; Debian 12 ships 3.40.)
_DB_NOW = "((julianday('now') - 2440587.5) * 86400.0)"

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS local_queue_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        enqueued_at REAL NOT NULL,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        lease_until REAL
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_local_queue_messages_queue_id ON local_queue_messages (queue, id)",
)

_PUBLISH = f"INSERT INTO local_queue_messages (queue, body, enqueued_at) VALUES (?, ?, {_DB_NOW})"  # noqa: S608 - a constant expression, no input

# One statement claims the batch, so two consumers can never lease the same message. (UPDATE ...
# LIMIT needs a compile-time option most builds lack; the subquery says the same.) RETURNING gives
# rows in no promised order: the caller sorts them.
_CLAIM = f"""
    UPDATE local_queue_messages
    SET lease_until = {_DB_NOW} + :lease, delivery_count = delivery_count + 1
    WHERE id IN (
        SELECT id FROM local_queue_messages
        WHERE queue = :queue AND (lease_until IS NULL OR lease_until <= {_DB_NOW})
        ORDER BY id
        LIMIT :limit
    )
    RETURNING id, body, delivery_count
"""  # noqa: S608 - a constant expression, no input

# Polling an idle queue reads without the write lock (WAL readers block nobody), so an idle daemon
# does not make the store's writers queue up behind it many times a second.
_READY = f"""
    SELECT EXISTS (
        SELECT 1 FROM local_queue_messages
        WHERE queue = ? AND (lease_until IS NULL OR lease_until <= {_DB_NOW})
    )
"""  # noqa: S608 - a constant expression, no input

# Ids travel as one JSON array parameter: no limit on the batch size, one statement per batch.
_ACK = "DELETE FROM local_queue_messages WHERE id IN (SELECT value FROM json_each(?))"

# A release only clears the lease this delivery holds: if it expired and another consumer has
# claimed the message since (delivery_count moved on), that consumer's lease stands.
_RELEASE = """
    UPDATE local_queue_messages SET lease_until = NULL
    WHERE (id, delivery_count) IN (
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?)
    )
"""


@dataclass(frozen=True, slots=True)
class _LocalHandle:
    message_id: int
    delivery_count: int


class LocalQueue:
    """A durable queue in a SQLite file (see the module's docstring).

    ``lease_seconds`` is how long a received message stays invisible to other consumers before it is
    handed over again; it must outlast the time the consumer takes to store a batch.
    ``poll_interval`` is how often an empty queue is looked at again while :meth:`receive` waits.
    """

    def __init__(self, db_path: Path, *, lease_seconds: float = 60, poll_interval: float = 0.05) -> None:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self._path = Path(db_path)
        self._lease_seconds = float(lease_seconds)
        self._poll_interval = float(poll_interval)
        self._db: aiosqlite.Connection | None = None
        # One connection serves every coroutine of this instance: a transaction must not interleave
        # with another coroutine's statements.
        self._lock = asyncio.Lock()
        self._consuming = True

    async def connect(self) -> None:
        if self._db is not None:
            return
        try:
            # isolation_level=None: the sqlite3 module opens no transactions of its own; ours are
            # explicit, so that writes can say IMMEDIATE.
            db = await aiosqlite.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"cannot open the local queue in {self._path}: {exc}") from exc
        try:
            await db.execute("PRAGMA busy_timeout = 30000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = FULL")
            self._db = db
            self._consuming = True
            async with self._write() as conn:
                for statement in _SCHEMA:
                    await conn.execute(statement)
        except BaseException as exc:
            self._db = None
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise QueueUnavailable(f"cannot use the local queue in {self._path}: {exc}") from exc
            raise

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, holding SQLite's write lock from its first statement."""
        db = self._db
        if db is None:
            raise QueueUnavailable(f"the local queue in {self._path} is not connected")
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    # The transaction may already be gone (a failed COMMIT rolls back by itself).
                    with suppress(sqlite3.Error):
                        await db.execute("ROLLBACK")
                    raise
                await db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                # Locked past busy_timeout, disk full, I/O error: the same call may succeed later.
                raise QueueUnavailable(f"the local queue in {self._path} failed: {exc}") from exc

    async def publish(self, queue: str, bodies: Sequence[bytes]) -> None:
        if not bodies:
            return
        async with self._write() as db:
            await db.executemany(_PUBLISH, ((queue, bytes(body)) for body in bodies))

    async def receive(self, queue: str, *, max_messages: int, wait: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self._consuming:
            rows = await self._claim(queue, max_messages)
            if rows:
                rows.sort()
                source = f"sqlite:{queue}"
                return [
                    Delivery(
                        body=bytes(body),
                        source=source,
                        redelivered=delivery_count > 1,
                        handle=_LocalHandle(message_id, delivery_count),
                    )
                    for message_id, body, delivery_count in rows
                ]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(self._poll_interval, remaining))
        return []

    async def _claim(self, queue: str, limit: int) -> list[tuple[int, bytes, int]]:
        if limit <= 0:
            return []
        db = self._connected()
        try:
            async with self._lock:
                ready = await db.execute_fetchall(_READY, (queue,))
        except sqlite3.OperationalError as exc:
            raise QueueUnavailable(f"the local queue in {self._path} failed: {exc}") from exc
        if not next(iter(ready))[0]:
            return []
        async with self._write() as db:
            rows = await db.execute_fetchall(
                _CLAIM, {"queue": queue, "limit": limit, "lease": self._lease_seconds}
            )
        return [(int(r[0]), bytes(r[1]), int(r[2])) for r in rows]

    @staticmethod
    def _handles(deliveries: Sequence[Delivery]) -> list[_LocalHandle]:
        return [d.handle for d in deliveries if isinstance(d.handle, _LocalHandle)]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete the messages. A delivery whose lease had expired is deleted all the same: its
        consumer has committed it, and whoever holds the message now would only store a repeat."""
        handles = self._handles(deliveries)
        if not handles:
            return
        async with self._write() as db:
            await db.execute(_ACK, (json.dumps([h.message_id for h in handles]),))

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        handles = self._handles(deliveries)
        if not handles:
            return
        pairs = json.dumps([[h.message_id, h.delivery_count] for h in handles])
        async with self._write() as db:
            await db.execute(_RELEASE, (pairs,))

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Nothing to do: for the local queue, the dead letter the intake service records in the store
        is the copy kept (there is no broker-side place to keep another). The caller still
        acknowledges the delivery."""

    async def stop_consuming(self) -> None:
        """Later :meth:`receive` calls return ``[]``; deliveries already made can still be settled."""
        self._consuming = False

    async def pending(self, queue: str) -> int:
        """Messages in ``queue`` not yet acknowledged, leased or not (for status and tests)."""
        db = self._connected()
        async with self._lock:
            rows = await db.execute_fetchall(
                "SELECT count(*) FROM local_queue_messages WHERE queue = ?", (queue,)
            )
        return int(next(iter(rows))[0])

    def _connected(self) -> aiosqlite.Connection:
        if self._db is None:
            raise QueueUnavailable(f"the local queue in {self._path} is not connected")
        return self._db

    async def ping(self) -> None:
        db = self._connected()
        try:
            async with self._lock:
                await db.execute_fetchall("SELECT 1")
        except sqlite3.Error as exc:
            raise QueueUnavailable(f"the local queue in {self._path} does not answer: {exc}") from exc

    async def close(self) -> None:
        self._consuming = False
        db, self._db = self._db, None
        if db is not None:
            async with self._lock:
                await db.close()
